"""Fit a decision threshold on a one-number-per-frame score.

The simple methods (``intensity``, ``litpix``, ``peaks``) reduce a frame to one number and
call it a hit when the number is above a threshold. The threshold is chosen on the
training frames to maximise balanced accuracy, the mean of sensitivity and specificity,
so a rare class is not ignored. ``litpix`` and ``peaks`` can also choose the ADC
threshold that defines a lit pixel or a peak pixel, among quantiles of the training pixel
values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_curve

from hitbench.errors import HitbenchError
from hitbench.frames import FrameSource

#: Quantiles of the training pixel values tried as ADC thresholds when one is fitted.
DEFAULT_ADC_QUANTILES = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995)
#: Training frames (drawn at random, seed 0) whose pixels the quantiles are taken from: 1.2e8 pixels
#: of 350x350 frames, so even the 0.9995 quantile rests on 60,000 pixels; smaller training sets use all.
QUANTILE_FRAMES = 1000


def fit_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold ``t`` for which ``scores > t`` best separates hits from misses.

    The candidates are the cut points of the ROC curve (``sklearn.metrics.roc_curve``,
    every distinct score). The chosen cut is placed half-way between the two neighbouring
    distinct scores, so that ``scores > t`` reproduces the ROC point exactly and a new
    frame scoring between the two training values is not decided by rounding. When
    several cuts tie, the highest one (fewest predicted hits) wins.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n_frames,)
        One score per frame, higher = more hit-like.
    labels : numpy.ndarray, shape (n_frames,)
        1 = hit, 0 = miss; both classes present.

    Returns
    -------
    threshold : float
        Predict a hit when ``score > threshold`` (may be +inf or -inf when no cut helps).
    balanced_accuracy : float
        The balanced accuracy of that rule on the given frames.
    """
    fpr, tpr, cuts = roc_curve(labels, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    # roc_curve predicts a hit for score >= cuts[i]; cuts[0] is +inf and cuts decrease strictly, so
    # "score >= cuts[i]" equals "score > t" for any t in [cuts[i + 1], cuts[i]).
    # The first midpoint is +inf (no hits), the last -inf (all hits).
    midpoints = 0.5 * (cuts + np.append(cuts[1:], -np.inf))
    balanced = 0.5 * (tpr + 1.0 - fpr)
    best = int(np.argmax(balanced))
    return float(midpoints[best]), float(balanced[best])


def quantile_candidates(frames: FrameSource, quantiles: tuple[float, ...], *, where: str) -> np.ndarray:
    """Candidate ADC thresholds: the given quantiles of the training pixel values.

    Taken over the pixels of at most :data:`QUANTILE_FRAMES` training frames drawn at random.

    Parameters
    ----------
    frames : FrameSource
        Training frames.
    quantiles : tuple of float
        Quantiles between 0 and 1.
    where : str
        Parameter name used in the error message (e.g. ``"litpix: adc_quantiles"``).

    Returns
    -------
    numpy.ndarray
        The distinct candidate thresholds, ascending.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all((q >= 0) & (q <= 1)):
        raise HitbenchError(f"{where}={quantiles!r}; give one or more quantiles between 0 and 1")
    return np.unique(np.quantile(frames.sample(QUANTILE_FRAMES), q))


def count_per_candidate(
    frames: FrameSource, candidates: np.ndarray, count: Callable[[np.ndarray, float], np.ndarray]
) -> np.ndarray:
    """Per-frame counts at every candidate ADC threshold, in one pass over the frames.

    Parameters
    ----------
    frames : FrameSource
        Training frames.
    candidates : numpy.ndarray
        ADC thresholds.
    count : callable
        ``count(frames, adc)`` gives the counts (n,) of a frame stack at one ADC threshold.

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_candidates)
        Column ``i`` holds the counts at ``candidates[i]``.
    """
    return frames.map(lambda chunk: np.stack([count(chunk, float(adc)) for adc in candidates], axis=1))


def fit_adc_and_threshold(
    candidates: np.ndarray,
    counts: np.ndarray,
    labels: np.ndarray,
    fixed_threshold: float | None = None,
) -> tuple[float, float, float]:
    """Choose an ADC threshold and a count threshold together, for best balanced accuracy.

    For each candidate ADC threshold the best count threshold on its per-frame counts is fitted with
    :func:`fit_threshold` (or ``fixed_threshold`` is used); the candidate with the highest training
    balanced accuracy wins (ties: the first candidate).

    Parameters
    ----------
    candidates : numpy.ndarray
        ADC thresholds to try.
    counts : numpy.ndarray, shape (n_frames, n_candidates)
        Per-frame counts at each candidate (:func:`count_per_candidate`).
    labels : numpy.ndarray, shape (n_frames,)
        1 = hit, 0 = miss.
    fixed_threshold : float, optional
        Use this count threshold instead of fitting one.

    Returns
    -------
    adc_threshold : float
    threshold : float
        Hit when ``count > threshold``.
    balanced_accuracy : float
        On the training frames.
    """
    best = (-1.0, 0.0, 0.0)  # (balanced accuracy, adc threshold, count threshold)
    for adc, column in zip(candidates, counts.T, strict=True):
        if fixed_threshold is None:
            threshold, balanced = fit_threshold(column, labels)
        else:
            threshold = float(fixed_threshold)
            balanced = float(balanced_accuracy_score(labels, column > threshold))
        if balanced > best[0]:
            best = (balanced, float(adc), threshold)
    return best[1], best[2], best[0]
