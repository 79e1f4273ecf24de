"""The cnn's training input: frames decoded once into a scratch file (:class:`DecodedCopy`), and batches read from a
frame source batch by batch, shuffled and flipped anew every epoch (:func:`training_batches`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import numpy as np

from hitbench.frames import CHUNK_FRAMES, FrameSource
from hitbench.methods import tf_runtime

#: Threads preparing training batches ahead of the network.
PREFETCH_THREADS = 2
#: Free space a :class:`DecodedCopy` leaves on the scratch file's disk, as a multiple of the copy's size.
SCRATCH_HEADROOM = 2.0


class DecodedCopy(FrameSource):
    """A frame source's frames, decoded once into a scratch file and read back from it without decoding.

    The cnn reads its training frames once for the input statistics, then once every epoch in a new order, and
    the validation frames every epoch. From a run file each read inflates the frames again (0.5-0.6 ms of CPU a
    350x350 frame, :mod:`hitbench.data.chunk_read`) on the cores the network trains on. The first pass over the
    frames in order (:meth:`chunks`) also writes them, as they were read, to an unnamed temporary file (deleted
    by the system when it is closed, or when the process ends); once that pass is complete :meth:`take` reads
    them back from it (``os.preadv`` into the batch: no mapping, so the file's pages never count in the
    process's memory). A frame in the file is stored as int16 where every value of the first chunk is a whole
    number in int16's range (detector ADU or photon counts: 245 kB a 350x350 frame), else as float32; a later
    chunk that int16 cannot hold exactly, a disk with less than :data:`SCRATCH_HEADROOM` times the copy's size
    free, or a failed write drops the copy, and every read goes to the source as before. The frames read back
    equal the source's (a float32 -0.0 comes back as 0.0 from int16), so the cnn trains the same model either way.

    Parameters
    ----------
    source : FrameSource
        The frames (read through once, in order, by the first :meth:`chunks`).
    directory : str or path-like, optional
        Where the scratch file goes (default :func:`tempfile.gettempdir`, so ``TMPDIR``).
    """

    def __init__(self, source: FrameSource, directory: str | os.PathLike | None = None) -> None:
        self.source = source
        self.frame_shape = source.frame_shape
        self.directory = directory
        self._file = None
        self._dtype: np.dtype | None = None
        self._complete = False

    def __len__(self) -> int:
        return len(self.source)

    @property
    def complete(self) -> bool:
        """Whether every frame is in the scratch file (reads go there), not to the source."""
        return self._complete

    def chunks(self) -> Iterator[np.ndarray]:
        if self._complete:
            for start in range(0, len(self), CHUNK_FRAMES):
                yield self.take(np.arange(start, min(start + CHUNK_FRAMES, len(self))))
            return
        writing = self._file is None and self._open()
        written = 0
        for chunk in self.source.chunks():
            if writing:
                writing = self._write(chunk, written)
            written += len(chunk)
            yield chunk
        self._complete = writing and written == len(self)
        if not self._complete:
            self.close()

    def take(self, positions: np.ndarray) -> np.ndarray:
        if not self._complete:
            return self.source.take(positions)
        positions = np.asarray(positions, dtype=np.int64)
        stored = np.empty((positions.size, *self.frame_shape), dtype=self._dtype)
        for k, position in enumerate(positions):
            if os.preadv(self._file.fileno(), [stored[k]], int(position) * self._frame_bytes) != self._frame_bytes:
                raise OSError(f"scratch copy of the training frames: frame {position} read short")
        return stored.astype(np.float32, copy=False)

    @property
    def _frame_bytes(self) -> int:
        """Bytes of one frame in the scratch file (its type chosen)."""
        return self._dtype.itemsize * self.frame_shape[0] * self.frame_shape[1]

    def close(self) -> None:
        """Delete the scratch file (reads go to the source again)."""
        if self._file is not None:
            self._file.close()
        self._file, self._complete = None, False

    def _open(self) -> bool:
        try:
            self._file = tempfile.TemporaryFile(dir=self.directory)
        except OSError:  # no writable temporary folder: train from the source
            return False
        return True

    def _write(self, chunk: np.ndarray, first: int) -> bool:
        """Write ``chunk`` (frames ``first`` on) to the scratch file; False (and the file closed) where it cannot."""
        with np.errstate(invalid="ignore"):  # values out of int16's range: compared unequal below
            stored = np.ascontiguousarray(chunk, dtype=self._dtype or np.int16)
        exact = stored.dtype == np.float32 or np.array_equal(stored, chunk)
        if self._dtype is None:  # the first chunk: int16 if it holds its values exactly, and room on the disk
            if not exact:
                stored = np.ascontiguousarray(chunk, dtype=np.float32)
            self._dtype = stored.dtype
            free = shutil.disk_usage(self.directory or tempfile.gettempdir()).free
            if free < SCRATCH_HEADROOM * len(self) * self._frame_bytes:
                self.close()
                return False
        elif not exact:  # a value int16 cannot hold
            self.close()
            return False
        data, offset = memoryview(stored).cast("B"), first * self._frame_bytes
        try:
            while data.nbytes:
                written = os.pwrite(self._file.fileno(), data, offset)
                data, offset = data[written:], offset + written
        except OSError:  # a full disk: train from the source
            self.close()
            return False
        return True


def training_batches(
    frames: FrameSource,
    positions: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    standardise: Callable[[np.ndarray], np.ndarray],
    seed: int,
    shuffle: bool = True,
    flip: bool = False,
):
    """Training batches read from a frame source, in a new random order each epoch.

    Each batch's frames are read (:meth:`FrameSource.take`, in increasing position) and standardised a few
    batches ahead of the network (:data:`PREFETCH_THREADS`), so only those batches are in memory, whatever the
    size of the training set. With ``flip`` each frame is left as it is, flipped left-right, flipped up-down
    or rotated by 180 degrees (one of the four, uniformly, anew every epoch): the Bragg peaks of a
    hit stay peaks and their number (the label) is unchanged.

    Parameters
    ----------
    frames : FrameSource
        The frames.
    positions : numpy.ndarray
        Positions in ``frames`` of the frames to train on.
    labels : numpy.ndarray, shape (len(positions), 2)
        One-hot labels of those frames.
    batch_size : int
        Frames per batch.
    standardise : callable
        Frames (n, H, W) to network input (n, H, W, 1).
    seed : int
        Seed of the order and the flips.
    shuffle : bool
        New random order every epoch (else the given order, e.g. for validation).
    flip : bool
        Random flips.

    Returns
    -------
    keras.utils.PyDataset
        Batches ``(frames, labels)``.
    """
    keras = tf_runtime.keras()

    class TrainingBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            # two threads read and standardise the next batches while the network trains on this one (Keras
            # keeps the order, and stops them before on_epoch_end draws the next epoch's order and flips):
            # benchmarks/bench_cnn_training.py, with the network's former layers 7.4 against 8.7 ms per frame-epoch
            # in memory, 9.7 against 13.7 streamed from a CXI file. Reading a batch's scattered frames from a CXI
            # file costs 0.5-0.6 ms per frame (inflated on all cores, :mod:`hitbench.data.chunk_read`), on the
            # cores the network trains on
            super().__init__(workers=PREFETCH_THREADS, use_multiprocessing=False, max_queue_size=2 * PREFETCH_THREADS)
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(positions))
            self.flips = np.zeros(len(positions), dtype=np.int64)
            self.on_epoch_end()

        def __len__(self) -> int:
            return -(-len(positions) // batch_size)

        def on_epoch_end(self) -> None:
            if shuffle:
                self.order = self.rng.permutation(len(positions))
            if flip:
                self.flips = self.rng.integers(0, 4, len(positions))

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            # a batch's frames in increasing position, so that a frame source reads each run's share of them
            # straight into the batch (RunFrames.take); a batch's order changes only the order of the gradient's sums
            picked = np.sort(self.order[index * batch_size : (index + 1) * batch_size])
            batch = standardise(frames.take(positions[picked]))
            flips = self.flips[picked]
            batch[flips & 1 == 1] = batch[flips & 1 == 1, :, ::-1]
            batch[flips & 2 == 2] = batch[flips & 2 == 2, ::-1]
            return batch, labels[picked]

    return TrainingBatches()
