"""``peaks``: count Bragg peaks with peakfinder8 and compare with a minimum (OM's rule)."""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from hitbench.errors import HitbenchError
from hitbench.frames import FrameSource
from hitbench.methods.base import HitMethod
from hitbench.methods.thresholds import (
    DEFAULT_ADC_QUANTILES,
    count_per_candidate,
    fit_adc_and_threshold,
    quantile_candidates,
)
from hitbench.peaks import PeakFinder8

# The peakfinder8 parameters default to PeakFinder8's own defaults (one source of truth).
_PF8_DEFAULTS = {name: p.default for name, p in inspect.signature(PeakFinder8).parameters.items()}


class PeakCount(HitMethod):
    """Number of peakfinder8 peaks above min_num_peaks_for_hit (OM's hit rule), fitted or fixed.

    The score of a frame is its number of peaks found by :class:`hitbench.peaks.PeakFinder8`
    with the peakfinder8 parameters below. As in OM, a frame is a hit when
    ``min_num_peaks_for_hit < n_peaks < max_num_peaks_for_hit``. With
    ``min_num_peaks_for_hit=None`` the minimum is fitted: the count threshold that maximises
    balanced accuracy on the training frames. With ``adc_threshold=None`` the peakfinder8 ADC
    threshold is fitted as well, among the ``adc_quantiles`` of the training pixel values
    (the one whose rule has the best training balanced accuracy; ties go to the lower one),
    because a fixed number of ADU means a different number of photons on every detector.
    Bad pixels arrive as 0 and no mask is passed to the peak finder. No randomness.

    Parameters
    ----------
    min_num_peaks_for_hit : int or None
        A hit needs more peaks than this; None fits it on the training frames.
    max_num_peaks_for_hit : int or None
        A hit needs fewer peaks than this (OM drops frames with too many, e.g. ice rings);
        None for no upper limit.
    adc_threshold : float or None
        peakfinder8's ADC threshold (detector units), or None to fit it.
    adc_quantiles : tuple of float
        Quantiles (0-1) of the training pixel values tried when fitting the ADC threshold.
    min_snr, min_pixel_count, max_pixel_count, local_bg_radius, min_res, max_res, max_num_peaks, n_iterations, center
        The other peakfinder8 parameters, passed to :class:`hitbench.peaks.PeakFinder8` (see there
        for their meaning; the defaults are PeakFinder8's).

    Attributes
    ----------
    adc_threshold_ : float
        The ADC threshold in use (the fixed one or the fitted one).
    threshold_ : float
        Peak count above which a frame is a hit (the fixed minimum, or the fitted cut).
    min_num_peaks_for_hit_ : int or None
        The minimum in use, as OM would write it (a hit has more peaks than this); None when
        no count separates the training frames.
    train_balanced_accuracy_ : float
        Balanced accuracy of the rule on the training frames.
    """

    name = "peaks"

    def __init__(
        self,
        min_num_peaks_for_hit: int | None = None,
        max_num_peaks_for_hit: int | None = None,
        adc_threshold: float | None = None,
        adc_quantiles: tuple[float, ...] = DEFAULT_ADC_QUANTILES,
        min_snr: float = _PF8_DEFAULTS["min_snr"],
        min_pixel_count: int = _PF8_DEFAULTS["min_pixel_count"],
        max_pixel_count: int = _PF8_DEFAULTS["max_pixel_count"],
        local_bg_radius: int = _PF8_DEFAULTS["local_bg_radius"],
        min_res: float = _PF8_DEFAULTS["min_res"],
        max_res: float = _PF8_DEFAULTS["max_res"],
        max_num_peaks: int = _PF8_DEFAULTS["max_num_peaks"],
        n_iterations: int = _PF8_DEFAULTS["n_iterations"],
        center: tuple[float, float] | None = _PF8_DEFAULTS["center"],
    ):
        self.min_num_peaks_for_hit = min_num_peaks_for_hit
        self.max_num_peaks_for_hit = max_num_peaks_for_hit
        self.adc_threshold = adc_threshold
        self.adc_quantiles = adc_quantiles
        self.min_snr = min_snr
        self.min_pixel_count = min_pixel_count
        self.max_pixel_count = max_pixel_count
        self.local_bg_radius = local_bg_radius
        self.min_res = min_res
        self.max_res = max_res
        self.max_num_peaks = max_num_peaks
        self.n_iterations = n_iterations
        self.center = center

    def peak_finder(self, adc_threshold: float | None = None) -> PeakFinder8:
        """The peak finder with this method's peakfinder8 parameters.

        Parameters
        ----------
        adc_threshold : float, optional
            ADC threshold to use; default the fitted one (``adc_threshold_``).

        Returns
        -------
        PeakFinder8
            A new peak finder.
        """
        params = {name: getattr(self, name) for name in PeakFinder8.param_names()}
        params["adc_threshold"] = self.adc_threshold_ if adc_threshold is None else adc_threshold
        return PeakFinder8(**params)

    def check_params(self, frame_shape: tuple[int, int]) -> None:
        """Refuse a peak-count window no count fits in (see :meth:`HitMethod.check_params`).

        Parameters
        ----------
        frame_shape : tuple of int
            (height, width) of the frames.
        """
        low, high = self.min_num_peaks_for_hit, self.max_num_peaks_for_hit
        if low is not None and int(low) < 0:
            raise HitbenchError(f"peaks: min_num_peaks_for_hit={low}; give 0 or more, or None to fit it")
        if low is not None and high is not None and int(high) <= int(low) + 1:
            raise HitbenchError(
                f"peaks: min_num_peaks_for_hit={low} and max_num_peaks_for_hit={high}: no peak count lies strictly "
                "between them, every frame would be a miss; give max at least min + 2"
            )

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        fixed = self.min_num_peaks_for_hit
        if self.adc_threshold is None:
            candidates = quantile_candidates(frames, self.adc_quantiles, where="peaks: adc_quantiles")
        else:
            candidates = np.array([float(self.adc_threshold)])
        table = count_per_candidate(frames, candidates, self._count)
        self.adc_threshold_, self.threshold_, _ = fit_adc_and_threshold(
            candidates, table, labels, fixed_threshold=None if fixed is None else int(fixed)
        )
        counts = table[:, np.flatnonzero(candidates == self.adc_threshold_)[0]]
        # Counts are integers, so "count > threshold_" is "count > floor(threshold_)" (OM's strict rule).
        self.min_num_peaks_for_hit_ = int(np.floor(self.threshold_)) if np.isfinite(self.threshold_) else None
        self.train_balanced_accuracy_ = float(balanced_accuracy_score(labels, self.decide(counts)))

    def _count(self, frames: np.ndarray, adc: float) -> np.ndarray:
        return self.peak_finder(adc).count(frames).astype(np.float64)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return self._count(frames, self.adc_threshold_)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Hit (1) or miss (0) from peak counts: ``min_num_peaks_for_hit < n_peaks < max_num_peaks_for_hit``.

        Parameters
        ----------
        scores : numpy.ndarray
            Peak counts (:meth:`decision_function`).

        Returns
        -------
        numpy.ndarray
            0/1 labels (int64).
        """
        counts = np.asarray(scores)
        hit = counts > self.threshold_
        if self.max_num_peaks_for_hit is not None:
            hit &= counts < self.max_num_peaks_for_hit
        return hit.astype(np.int64)
