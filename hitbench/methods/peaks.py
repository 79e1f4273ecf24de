"""``peaks``: count Bragg peaks with peakfinder8 and compare with a minimum (OM's rule)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from hitbench.errors import HitbenchError
from hitbench.methods.base import HitMethod
from hitbench.methods.thresholds import fit_threshold
from hitbench.peaks import PeakFinder8


class PeakCount(HitMethod):
    """Number of peakfinder8 peaks above min_num_peaks_for_hit (OM's hit rule), fitted or fixed.

    The score of a frame is its number of peaks found by :class:`hitbench.peaks.PeakFinder8`
    with the peakfinder8 parameters below. As in OM, a frame is a hit when
    ``min_num_peaks_for_hit < n_peaks < max_num_peaks_for_hit``. With
    ``min_num_peaks_for_hit=None`` the minimum is fitted: the count threshold that maximises
    balanced accuracy on the training frames. Bad pixels arrive as 0 and no mask is passed to
    the peak finder: a run of zeros is never above its threshold. No randomness.

    Parameters
    ----------
    min_num_peaks_for_hit : int or None
        A hit needs more peaks than this; None fits it on the training frames.
    max_num_peaks_for_hit : int or None
        A hit needs fewer peaks than this (OM drops frames with too many, e.g. ice rings);
        None for no upper limit.
    adc_threshold, min_snr, min_pixel_count, max_pixel_count, local_bg_radius, min_res, max_res, max_num_peaks, \
n_iterations, center
        peakfinder8 parameters, passed to :class:`hitbench.peaks.PeakFinder8` (see there).

    Attributes
    ----------
    threshold_ : float
        Peak count above which a frame is a hit (the fixed minimum, or the fitted cut).
    min_num_peaks_for_hit_ : int
        The minimum in use, as OM would write it (a hit has more peaks than this).
    train_balanced_accuracy_ : float
        Balanced accuracy of the rule on the training frames.
    """

    name = "peaks"

    def __init__(
        self,
        min_num_peaks_for_hit: int | None = None,
        max_num_peaks_for_hit: int | None = None,
        adc_threshold: float = 25.0,
        min_snr: float = 5.0,
        min_pixel_count: int = 2,
        max_pixel_count: int = 200,
        local_bg_radius: int = 3,
        min_res: float = 0.0,
        max_res: float = np.inf,
        max_num_peaks: int = 2048,
        n_iterations: int = 5,
        center: tuple[float, float] | None = None,
    ):
        self.min_num_peaks_for_hit = min_num_peaks_for_hit
        self.max_num_peaks_for_hit = max_num_peaks_for_hit
        self.adc_threshold = adc_threshold
        self.min_snr = min_snr
        self.min_pixel_count = min_pixel_count
        self.max_pixel_count = max_pixel_count
        self.local_bg_radius = local_bg_radius
        self.min_res = min_res
        self.max_res = max_res
        self.max_num_peaks = max_num_peaks
        self.n_iterations = n_iterations
        self.center = center

    def peak_finder(self) -> PeakFinder8:
        """The peak finder with this method's peakfinder8 parameters.

        Returns
        -------
        PeakFinder8
            A new peak finder.
        """
        return PeakFinder8(
            adc_threshold=self.adc_threshold,
            min_snr=self.min_snr,
            min_pixel_count=self.min_pixel_count,
            max_pixel_count=self.max_pixel_count,
            local_bg_radius=self.local_bg_radius,
            min_res=self.min_res,
            max_res=self.max_res,
            max_num_peaks=self.max_num_peaks,
            n_iterations=self.n_iterations,
            center=self.center,
        )

    def _fit(self, frames: np.ndarray, labels: np.ndarray) -> None:
        counts = self._score(frames)
        if self.min_num_peaks_for_hit is None:
            self.threshold_, _ = fit_threshold(counts, labels)
        elif int(self.min_num_peaks_for_hit) < 0:
            raise HitbenchError(
                f"peaks: min_num_peaks_for_hit={self.min_num_peaks_for_hit}; give 0 or more, or None to fit it"
            )
        else:
            self.threshold_ = float(int(self.min_num_peaks_for_hit))
        # Counts are integers, so "count > threshold_" is "count > floor(threshold_)" (OM's strict rule).
        self.min_num_peaks_for_hit_ = int(np.floor(self.threshold_)) if np.isfinite(self.threshold_) else None
        self.train_balanced_accuracy_ = float(balanced_accuracy_score(labels, self._decide(counts)))

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return self.peak_finder().count(frames).astype(np.float64)

    def _decide(self, counts: np.ndarray) -> np.ndarray:
        hit = counts > self.threshold_
        if self.max_num_peaks_for_hit is not None:
            hit &= counts < self.max_num_peaks_for_hit
        return hit

    def predict(self, X: object) -> np.ndarray:
        """Hit (1) or miss (0) per frame: ``min_num_peaks_for_hit < n_peaks < max_num_peaks_for_hit``.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames to classify.

        Returns
        -------
        numpy.ndarray, shape (n_frames,)
            0/1 labels (int64).
        """
        return self._decide(self.decision_function(X)).astype(np.int64)
