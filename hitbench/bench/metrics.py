"""Scores of a hit finder on one test run, their 95 % intervals, and paired tests between two hit finders.

- Sensitivity, specificity and accuracy are binomial proportions; their intervals are Wilson score
  intervals (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``).
- Balanced accuracy and AUC have intervals from a stratified bootstrap over frames: hits are resampled
  among the hits and misses among the misses (so every resample has both classes in the run's numbers),
  :data:`N_RESAMPLES` times from a seeded generator, and the interval is the 2.5-97.5 % percentile range.
- Two hit finders called on the same frames are compared with McNemar's exact test: a two-sided binomial
  test (p = 1/2) on the frames where exactly one of them is right. p-values of many such tests are
  corrected with Holm's step-down method.

- The calibration of a hit finder whose score is P(hit) is its expected calibration error (ECE): frames
  are put in :data:`CALIBRATION_BINS` equal-width bins of P(hit), as
  :func:`sklearn.calibration.calibration_curve` bins them, and ECE is the frame-weighted mean over the bins
  of the gap between the fraction of hits in the bin and its mean P(hit).

A rate with no frames to measure it on (sensitivity without hits, specificity without misses, balanced
accuracy and AUC without both classes) is NaN, and so is its interval.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_auc_score

#: The rates of :func:`hit_metrics`, each with an interval from :func:`metric_intervals`.
RATES = ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "auc")
#: Coverage of every interval.
CONFIDENCE = 0.95
#: Bootstrap resamples per interval.
N_RESAMPLES = 2000
#: Most frame draws held in memory at once by the bootstrap (resamples x frames).
_BOOTSTRAP_CHUNK = 2_000_000
#: Equal-width bins of P(hit) of the expected calibration error and the reliability figure.
CALIBRATION_BINS = 10


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error of P(hit) against labels.

    Parameters
    ----------
    labels : numpy.ndarray
        1 = hit, 0 = miss (ambiguous frames dropped).
    probabilities : numpy.ndarray
        P(hit) of the same frames, in [0, 1].
    n_bins : int
        Equal-width bins of P(hit) (``calibration_curve(strategy="uniform")``'s).

    Returns
    -------
    float
        ``sum_b (n_b / n) |fraction of hits in b - mean P(hit) in b|`` over the non-empty bins;
        NaN without frames. 0 is perfect calibration.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.size == 0:
        return float("nan")
    hit_fraction, mean_probability = calibration_curve(labels, probabilities, n_bins=n_bins, strategy="uniform")
    # calibration_curve's bins: bin b holds P(hit) in (b/n_bins, (b+1)/n_bins], the first one 0 too
    counts = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], probabilities), minlength=n_bins)
    weights = counts[counts > 0] / labels.size
    return float(np.sum(weights * np.abs(hit_fraction - mean_probability)))


def hit_metrics(labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> dict[str, float | int]:
    """Confusion counts and rates of hit/miss calls against labels.

    Frames labelled ambiguous (-1) must already be dropped.

    Parameters
    ----------
    labels : numpy.ndarray
        True labels, 1 = hit, 0 = miss.
    predicted : numpy.ndarray
        Predicted labels, 1 = hit, 0 = miss.
    scores : numpy.ndarray
        Hit scores (higher = more hit-like), for the AUC.

    Returns
    -------
    dict
        tp, fp, tn, fn, sensitivity (hits found / hits), specificity (misses rejected /
        misses), accuracy, balanced_accuracy (mean of sensitivity and specificity) and auc;
        a rate with no frames to measure it on is NaN (balanced accuracy and AUC need both classes).
    """
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    sensitivity = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    total = tp + fp + tn + fn
    both = np.unique(labels).size == 2
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "accuracy": (tp + tn) / total if total else float("nan"),
        "balanced_accuracy": 0.5 * (sensitivity + specificity),
        "auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
    }


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes : int
        Frames counted (e.g. hits found).
    trials : int
        Frames the proportion is taken over (e.g. hits).

    Returns
    -------
    (float, float)
        Lower and upper bound; NaN, NaN when there are no trials.
    """
    if trials == 0:
        return float("nan"), float("nan")
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def _draw_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """How often each of n frames is drawn in ``size`` resamples of n draws with replacement, shape (size, n)."""
    draws = rng.integers(0, n, (size, n)) + n * np.arange(size)[:, None]
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)


def bootstrap_intervals(
    labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """95 % intervals of balanced accuracy and AUC from a stratified bootstrap over frames.

    Each of the :data:`N_RESAMPLES` resamples draws, with replacement, as many hits from the hits
    and as many misses from the misses as the run has (as counts per frame);
    the bounds are the 2.5 % and 97.5 % percentiles of the resampled statistic. The AUC of a
    resample is the Mann-Whitney statistic over its hit x miss pairs, ties counted half.

    Parameters
    ----------
    labels, predicted : numpy.ndarray
        Labels and calls (1 hit, 0 miss) of the scored frames.
    scores : numpy.ndarray
        Hit scores of the same frames.
    rng : numpy.random.Generator
        The resampling generator (seeded by the caller, so intervals are reproducible).

    Returns
    -------
    dict
        ``balanced_accuracy_lo``, ``balanced_accuracy_hi``, ``auc_lo``, ``auc_hi``; all NaN
        unless both classes are present.
    """
    labels = np.asarray(labels)
    hits, misses = labels == 1, labels == 0
    n_hits, n_misses = int(hits.sum()), int(misses.sum())
    if not n_hits or not n_misses:
        return dict.fromkeys(("balanced_accuracy_lo", "balanced_accuracy_hi", "auc_lo", "auc_hi"), float("nan"))
    correct = np.asarray(predicted) == labels
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores[misses], kind="stable")
    sorted_misses = scores[misses][order]
    # drawn misses strictly below each hit's score, and up to and including it
    below = np.searchsorted(sorted_misses, scores[hits], side="left")
    up_to = np.searchsorted(sorted_misses, scores[hits], side="right")
    chunk = max(1, _BOOTSTRAP_CHUNK // labels.size)
    balanced, auc = [], []
    for start in range(0, N_RESAMPLES, chunk):
        size = min(chunk, N_RESAMPLES - start)
        hit_counts, miss_counts = _draw_counts(rng, n_hits, size), _draw_counts(rng, n_misses, size)
        balanced.append(0.5 * (hit_counts @ correct[hits] / n_hits + miss_counts @ correct[misses] / n_misses))
        cumulative = np.pad(np.cumsum(miss_counts[:, order], axis=1), ((0, 0), (1, 0)))
        wins = 0.5 * (cumulative[:, below] + cumulative[:, up_to])
        auc.append((hit_counts * wins).sum(axis=1) / (n_hits * n_misses))
    tails = 100 * np.array([(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    (b_lo, b_hi), (a_lo, a_hi) = (np.percentile(np.concatenate(v), tails) for v in (balanced, auc))
    return {
        "balanced_accuracy_lo": float(b_lo),
        "balanced_accuracy_hi": float(b_hi),
        "auc_lo": float(a_lo),
        "auc_hi": float(a_hi),
    }


def metric_intervals(
    labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """95 % intervals of every rate of :func:`hit_metrics`.

    Wilson score intervals for sensitivity, specificity and accuracy; the stratified bootstrap
    (:func:`bootstrap_intervals`) for balanced accuracy and AUC.

    Parameters
    ----------
    labels, predicted : numpy.ndarray
        Labels and calls (1 hit, 0 miss) of the scored frames (ambiguous frames dropped).
    scores : numpy.ndarray
        Hit scores of the same frames.
    rng : numpy.random.Generator
        The bootstrap's generator.

    Returns
    -------
    dict
        ``<rate>_lo`` and ``<rate>_hi`` for each of :data:`RATES`; NaN where the rate is undefined.
    """
    labels = np.asarray(labels)
    correct = np.asarray(predicted) == labels
    out: dict[str, float] = {}
    for name, among in (("sensitivity", labels == 1), ("specificity", labels == 0), ("accuracy", slice(None))):
        out[f"{name}_lo"], out[f"{name}_hi"] = wilson_interval(int(correct[among].sum()), int(correct[among].size))
    return out | bootstrap_intervals(labels, predicted, scores, rng)


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test of two hit finders' calls on the same frames.

    Parameters
    ----------
    a_correct, b_correct : numpy.ndarray of bool
        Per frame, whether hit finder A (B) called it right.

    Returns
    -------
    a_only : int
        Frames A called right and B wrong.
    b_only : int
        Frames B called right and A wrong.
    p : float
        Two-sided p-value of the binomial test (p = 1/2) on the ``a_only + b_only``
        discordant frames; 1.0 when there are none.
    """
    a_correct, b_correct = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    a_only, b_only = int((a_correct & ~b_correct).sum()), int((b_correct & ~a_correct).sum())
    p = binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0
    return a_only, b_only, float(p)


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down correction of p-values for multiple tests (family-wise error rate).

    Parameters
    ----------
    pvalues : array-like of float
        The tests' p-values.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, in the input order: the i-th smallest is multiplied by
        ``m - i`` (i from 0, m tests), made non-decreasing in that order and capped at 1.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    return adjusted
