"""The HDF5 compression of every dataset hitbench writes (the ``--compression`` choices).

- ``gzip`` (default): deflate after byte shuffle, filters built into every libhdf5, so plain h5py, CrystFEL,
  ``h5dump`` and ``h5repack`` read the files without plugins (the filters Cheetah writes).
- ``none``: no filter.
- ``lz4``: Blosc with LZ4 after byte shuffle (hitbench's earlier format); readers need hdf5plugin or the Blosc
  HDF5 plugin.
- ``bitshuffle``: bitshuffle with LZ4 (the filter of Dectris Eiger files); readers need hdf5plugin or the
  bitshuffle HDF5 plugin.

Filters are lossless and keep the dataset's type: integer frames stay integer.
"""

from __future__ import annotations

import numpy as np

from hitbench.errors import HitbenchError

#: The compression of what hitbench writes unless told otherwise: the portable one.
DEFAULT_COMPRESSION = "gzip"
#: The choices, the default first.
COMPRESSIONS = (DEFAULT_COMPRESSION, "none", "lz4", "bitshuffle")
#: Deflate level of ``gzip`` (1-9) where libhdf5 compresses (datasets other than frames).
GZIP_LEVEL = 1
#: ISA-L's deflate level (0-3) of the frames :func:`encode_chunk` compresses.
ISAL_LEVEL = 1


def dataset_filters(compression: str) -> dict[str, object]:
    """Keyword arguments of :meth:`h5py.Group.create_dataset` for a compression choice.

    Parameters
    ----------
    compression : str
        One of :data:`COMPRESSIONS`.

    Returns
    -------
    dict
        ``compression``, ``compression_opts`` and ``shuffle`` as h5py takes them (empty for ``none``).
    """
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": True}
    if compression == "none":
        return {}
    if compression in ("lz4", "bitshuffle"):
        import hdf5plugin  # only these two need it; importing registers the filters with libhdf5

        if compression == "lz4":
            return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    raise HitbenchError(f"compression '{compression}': choose one of {', '.join(COMPRESSIONS)}")


def encode_chunk(chunk: np.ndarray, compression: str) -> bytes | None:
    """A chunk's bytes as HDF5 stores them with ``compression``, for :meth:`h5py.h5d.DatasetID.write_direct_chunk`.

    Lets the simulator's workers compress in parallel what the single writer would otherwise
    compress alone. Only ``gzip`` is encoded here: byte shuffle (byte k of every value, for each k, as HDF5's
    shuffle filter), then deflate by Intel ISA-L (python-isal) at level 1, one deflate block per byte plane
    (a full flush between planes, so each plane gets its own Huffman code: detector noise leaves deflate few
    matches to find, the entropy coding of each plane does the work). The zlib stream is what HDF5's shuffle
    and deflate filters read, as any inflate does. On the simulator's 350x350 int16 ADU frames: ~97 kB a
    frame in ~1.0 ms, against zlib's run-length strategy ``Z_RLE`` at level 1 ~93 kB in 3-5 ms, and ISA-L
    on the whole chunk (one block) ~103 kB (benchmarks/bench_hdf5.py). For the other choices the writer
    leaves the filters to HDF5 (None).

    Parameters
    ----------
    chunk : numpy.ndarray
        One chunk of the dataset (here one frame), in the dataset's dtype.
    compression : str
        One of :data:`COMPRESSIONS`.

    Returns
    -------
    bytes or None
    """
    if compression != "gzip":
        return None
    from isal import isal_zlib

    values = np.ascontiguousarray(chunk).reshape(-1)
    planes = values.view(np.uint8).reshape(values.size, values.itemsize).T
    stream = isal_zlib.compressobj(ISAL_LEVEL)
    parts = [stream.compress(np.ascontiguousarray(plane)) + stream.flush(isal_zlib.Z_FULL_FLUSH) for plane in planes]
    return b"".join(parts) + stream.flush()
