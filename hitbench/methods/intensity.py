"""``intensity``: call a frame a hit when its total intensity is high."""

from __future__ import annotations

import numpy as np

from hitbench.frames import FrameSource, check_finite
from hitbench.methods.base import HitMethod
from hitbench.methods.thresholds import fit_threshold


class IntensityThreshold(HitMethod):
    """Total frame intensity above a threshold fitted for best balanced accuracy.

    The score of a frame is the sum of all its pixel values (bad pixels arrive as 0, so
    this is the masked total). ``fit`` picks the threshold that maximises balanced
    accuracy on the training frames (see :func:`hitbench.methods.thresholds.fit_threshold`).
    The method has no parameters and no randomness.

    Attributes
    ----------
    threshold_ : float
        Total intensity (ADU) above which a frame is a hit.
    train_balanced_accuracy_ : float
        Balanced accuracy of that threshold on the training frames.
    """

    name = "intensity"

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        self.threshold_, self.train_balanced_accuracy_ = fit_threshold(frames.map(self._score), labels)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # Inf and NaN sums are scored or refused, not warned of
            return frames.sum(axis=(1, 2)).astype(np.float64)  # float32 pairwise sum: ~1e-7 relative, 2x faster

    def _score_finite(self, frames: np.ndarray) -> np.ndarray:
        scores = self._score(frames)  # the sums that the NaN and Inf check needs: one pass over the frames
        check_finite(frames, scores)
        return scores
