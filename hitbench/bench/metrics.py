"""Scores of a hit finder on one test run, as the reference study's Table II reports them."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score


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
        misses), accuracy, balanced_accuracy and auc; a rate with no frames to measure it
        on is NaN.
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
        "balanced_accuracy": float(np.nanmean([sensitivity, specificity])) if total else float("nan"),
        "auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
    }
