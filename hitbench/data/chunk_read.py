"""Frames stored one per HDF5 chunk with shuffle + deflate (hitbench's portable files), inflated on several threads.

libhdf5 decompresses a chunk under h5py's lock, one chunk at a time: reading a 350x350 int16 frame that way
costs ~0.5-1 ms of one core however many the machine has. Here the chunk's stored bytes are read as they are
(``read_direct_chunk``, fast) and inflated, unshuffled, converted and masked on a pool of threads, several frames
a task: inflate releases the GIL (ISA-L's through python-isal, about twice as fast as zlib's, the same bytes).
Only a dataset whose filter pipeline is exactly HDF5's shuffle then deflate, one whole frame per chunk, is read
this way (:func:`direct_frames`); a chunk stored with a filter skipped, or that does not inflate, is read through
h5py like any other dataset, which gives its error for a damaged one.
"""

from __future__ import annotations

from concurrent.futures import wait

import h5py
import numpy as np
from h5py._objects import phil  # h5py's lock of libhdf5 calls
from isal import isal_zlib

from hitbench.parallel import thread_pool

#: HDF5's filter pipeline the threads decode: byte shuffle, then deflate.
FILTERS = (h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE)
#: Stored types decoded here: their conversion to float32 is numpy's and libhdf5's alike (exact, or C's rounding).
DTYPES = frozenset(np.dtype(f"{order}{kind}") for order in "<>" for kind in ("i1", "u1", "i2", "u2", "i4", "u4", "f4"))
#: Frames a thread decodes per task.
DECODE_FRAMES = 8


def direct_frames(dataset: h5py.Dataset) -> bool:
    """Whether ``dataset`` is read here: chunked one frame per chunk, filters exactly shuffle then deflate.

    Parameters
    ----------
    dataset : h5py.Dataset
        A frame stack (n, ...).

    Returns
    -------
    bool
    """
    if dataset.chunks != (1, *dataset.shape[1:]) or dataset.dtype not in DTYPES or dataset.is_virtual:
        return False
    plist = dataset.id.get_create_plist()
    filters = tuple(plist.get_filter(k) for k in range(plist.get_nfilters()))
    if tuple(f[0] for f in filters) != FILTERS:
        return False
    shuffle_size = filters[0][2]
    return not shuffle_size or shuffle_size[0] == dataset.dtype.itemsize


def read_frames(dataset: h5py.Dataset, indices: np.ndarray, out: np.ndarray, weights: np.ndarray | None = None) -> None:
    """Frames ``indices`` of a dataset :func:`direct_frames` accepts, into ``out``, in that order.

    The frames are shared out among the threads :data:`DECODE_FRAMES` at a time whether they are
    consecutive or scattered (the cnn's shuffled training batches), so a batch of scattered frames
    is inflated on every core, not one frame after another.

    Parameters
    ----------
    dataset : h5py.Dataset
        The frame stack.
    indices : numpy.ndarray of int
        The frames to read, one per row of ``out``.
    out : numpy.ndarray, shape (len(indices), ...) as the dataset's frames
        Where the frames go, converted to its type (float32).
    weights : numpy.ndarray, shape (...) as a frame, optional
        Each frame is multiplied by it (float32, e.g. the mask as 0 / 1) as it is decoded, while in cache.
    """
    indices = np.asarray(indices, dtype=np.int64)
    tasks = [
        (
            first,
            thread_pool("inflate").submit(
                _decode, dataset, indices[first : first + DECODE_FRAMES], out[first : first + DECODE_FRAMES], weights
            ),
        )
        for first in range(0, len(out), DECODE_FRAMES)
    ]
    wait([task for _, task in tasks])  # every thread done with the file and ``out`` before any error is raised
    for first, task in tasks:
        for k in task.result():  # frames not decoded (a filter skipped, or damaged): h5py reads them or says why
            dataset.read_direct(out, source_sel=np.s_[int(indices[first + k])], dest_sel=np.s_[first + k])
            if weights is not None:
                out[first + k] *= weights


def _decode(dataset: h5py.Dataset, indices: np.ndarray, out: np.ndarray, weights: np.ndarray | None) -> list[int]:
    """Frames ``indices`` read as stored, inflated, unshuffled, converted and weighted into ``out``
    (the stored bytes read here, on the decoding thread: not one thread reading for all); those not decoded."""
    dtype, zeros = dataset.dtype, (0,) * (dataset.ndim - 1)
    itemsize, n_values = dtype.itemsize, out[0].size
    bits, part = (np.empty(n_values, dtype=f"u{itemsize}") for _ in range(2))
    # byte b of every value was stored together: shifted into place, in the file's byte order
    shifts = [8 * (itemsize - 1 - b if dtype.str[0] == ">" else b) for b in range(itemsize)]
    # the output's size given, one byte more: a buffer filled exactly would be grown, then copied back
    size = n_values * itemsize + 1
    failed = []
    for k in range(len(out)):
        try:
            with phil:  # h5py < 3.16 calls libhdf5 here without its lock: threads reading at once crash (h5py#2764)
                skipped, chunk = dataset.id.read_direct_chunk((int(indices[k]), *zeros))
            inflated = isal_zlib.decompress(chunk, isal_zlib.MAX_WBITS, size) if not skipped else b""
        except (OSError, RuntimeError, ValueError, KeyError, isal_zlib.error):
            inflated = b""  # not written or past the end, a filter skipped, or damaged: h5py reads it or says why
        data = np.frombuffer(inflated, dtype=np.uint8)
        if data.size != n_values * itemsize:
            failed.append(k)
            continue
        np.left_shift(data[:n_values], shifts[0], out=bits, dtype=bits.dtype)
        for b in range(1, itemsize):
            np.left_shift(data[b * n_values : (b + 1) * n_values], shifts[b], out=part, dtype=bits.dtype)
            bits |= part
        out[k] = bits.view(dtype.newbyteorder("=")).reshape(out.shape[1:])
        if weights is not None:
            out[k] *= weights
    return failed
