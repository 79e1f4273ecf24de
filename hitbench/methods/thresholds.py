"""Fit a decision threshold on a one-number-per-frame score.

The simple methods (``intensity``, ``litpix``, ``peaks``) reduce a frame to one number and
call it a hit when the number is above a threshold. The threshold is chosen on the
training frames to maximise balanced accuracy, the mean of sensitivity and specificity,
so a rare class is not ignored.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve


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
