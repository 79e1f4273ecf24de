"""``litpix``: count the pixels above an ADC threshold (Cheetah's hit finder 1)."""

from __future__ import annotations

import numpy as np

from hitbench.errors import HitbenchError
from hitbench.frames import FrameSource
from hitbench.methods.base import HitMethod
from hitbench.methods.thresholds import (
    DEFAULT_ADC_QUANTILES,
    count_per_candidate,
    fit_adc_and_threshold,
    quantile_candidates,
)


class LitPixels(HitMethod):
    """Number of pixels above an ADC threshold, compared with a fitted minimum count (Cheetah hit finder 1).

    The score of a frame is the number of its pixels whose value exceeds ``adc_threshold``;
    a frame is a hit when that count exceeds ``threshold_``, which ``fit`` chooses to
    maximise balanced accuracy on the training frames. With ``adc_threshold=None`` the ADC
    threshold is fitted too: each quantile in ``adc_quantiles`` of the training pixel
    values is tried and the one whose best count threshold gives the highest training
    balanced accuracy is kept (ties go to the lower ADC threshold). No randomness.

    Parameters
    ----------
    adc_threshold : float or None
        Fixed ADC threshold (detector units), or None to fit it.
    adc_quantiles : tuple of float
        Quantiles (0-1) of the training pixel values tried when fitting the ADC threshold.

    Attributes
    ----------
    adc_threshold_ : float
        The ADC threshold in use (the fixed one or the fitted one).
    threshold_ : float
        Lit-pixel count above which a frame is a hit.
    train_balanced_accuracy_ : float
        Balanced accuracy of the rule on the training frames.
    """

    name = "litpix"

    def __init__(self, adc_threshold: float | None = None, adc_quantiles: tuple[float, ...] = DEFAULT_ADC_QUANTILES):
        self.adc_threshold = adc_threshold
        self.adc_quantiles = adc_quantiles

    def check_params(self, frame_shape: tuple[int, int]) -> None:
        """Refuse an ADC threshold that is not a finite value (see :meth:`HitMethod.check_params`).

        Parameters
        ----------
        frame_shape : tuple of int
            (height, width) of the frames.
        """
        if self.adc_threshold is not None and not np.isfinite(float(self.adc_threshold)):
            raise HitbenchError(
                f"{self.name}: adc_threshold={self.adc_threshold}; give a finite ADC value, or None to fit one"
            )

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        if self.adc_threshold is None:
            candidates = quantile_candidates(frames, self.adc_quantiles, where="litpix: adc_quantiles")
        else:
            candidates = np.array([float(self.adc_threshold)])
        self.adc_threshold_, self.threshold_, self.train_balanced_accuracy_ = fit_adc_and_threshold(
            candidates, count_per_candidate(frames, candidates, self._count), labels
        )

    @staticmethod
    def _count(frames: np.ndarray, adc: float) -> np.ndarray:
        # frame by frame, into one reused mask: np.count_nonzero over axes is several times slower
        lit = np.empty(frames.shape[1:], dtype=bool)
        return np.array([np.count_nonzero(np.greater(frame, adc, out=lit)) for frame in frames], dtype=np.float64)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return self._count(frames, self.adc_threshold_)
