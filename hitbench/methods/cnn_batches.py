"""The cnn's training batches: read from a frame source batch by batch, shuffled and flipped anew every epoch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hitbench.frames import FrameSource
from hitbench.methods import tf_runtime

#: Threads preparing training batches ahead of the network.
PREFETCH_THREADS = 2


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
