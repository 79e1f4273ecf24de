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

import zlib

import numpy as np

from hitbench.errors import HitbenchError

#: The compression of what hitbench writes unless told otherwise: the portable one.
DEFAULT_COMPRESSION = "gzip"
#: The choices, the default first.
COMPRESSIONS = (DEFAULT_COMPRESSION, "none", "lz4", "bitshuffle")
#: Deflate level of ``gzip`` (1-9) where libhdf5 compresses (datasets other than frames).
GZIP_LEVEL = 1


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
    compress alone. Only ``gzip`` is encoded here, by hitbench's compiled encoder (:mod:`hitbench.data._deflate`):
    byte shuffle (byte k of every value, for each k), then per byte plane one deflate block with its own Huffman
    code, holding literals, and, where most bytes repeat the one before, runs of them (the matches of zlib's
    run-length strategy ``Z_RLE``; detector noise leaves deflate few other matches to find, so the entropy coding
    does the work), in a zlib stream: what HDF5's shuffle and deflate filters read, as any inflate does. On the
    simulator's 350x350 int16 ADU frames it takes ~0.4 ms a frame, zlib's ``Z_RLE`` at level 1 2-3 ms, for
    streams ~3 % larger (94-96 against ~92 kB in runs with few drifts, 84-86 kB in drifted ones;
    benchmarks/bench_simulate_speed.py). For the other choices the writer leaves the filters to HDF5 (None).

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
    from hitbench.data import _deflate  # numba, compiled on first use

    values = np.ascontiguousarray(chunk)
    planes = _deflate.planes(values.reshape(-1).view(f"u{values.itemsize}"))
    return _deflate.deflate(planes).tobytes() + zlib.adler32(planes).to_bytes(4, "big")
