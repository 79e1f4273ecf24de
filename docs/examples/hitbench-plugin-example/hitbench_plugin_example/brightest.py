"""``brightest``: the n-th brightest pixel above the local background."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from hitbench.errors import HitbenchError
from hitbench.frames import FrameSource
from hitbench.methods.base import HitMethod
from hitbench.methods.thresholds import fit_threshold


class BrightestSpot(HitMethod):
    """The n-th largest pixel excess over a local median background, above a fitted threshold.

    Each frame minus its ``background_size`` x ``background_size`` median filter leaves the
    sharp features; the score is the ``n_spots``-th largest remaining value, so one or two
    hot pixels do not make a hit but several Bragg spots do. The threshold maximises
    balanced accuracy on the training frames. No randomness.

    Parameters
    ----------
    n_spots : int
        Rank of the pixel excess used as the score (1 = the brightest).
    background_size : int
        Side of the median filter that estimates the local background, in pixels.
    """

    name = "brightest"

    def __init__(self, n_spots: int = 3, background_size: int = 5):
        self.n_spots = n_spots
        self.background_size = background_size

    def check_params(self, frame_shape: tuple[int, int]) -> None:
        """Refuse a rank or a filter that does not fit the frames (one line, naming the parameter)."""
        pixels, side = frame_shape[0] * frame_shape[1], min(frame_shape)
        for name, top in (("n_spots", pixels), ("background_size", side)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= top:
                raise HitbenchError(f"brightest: {name}={value!r}; give a whole number from 1 to {top}")

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        scores = frames.map(self._score)  # chunk by chunk: the training set need not fit in memory
        self.threshold_, self.train_balanced_accuracy_ = fit_threshold(scores, labels)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        excess = frames - median_filter(frames, size=(1, self.background_size, self.background_size))
        flat = excess.reshape(len(frames), -1)
        rank = flat.shape[1] - int(self.n_spots)
        return np.partition(flat, rank, axis=1)[:, rank].astype(np.float64)
