"""ROC curves of every method over all scored frames."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from hitbench.bench.tables import method_names


def roc(results: pd.DataFrame, scores: pd.DataFrame) -> Figure:
    """The ROC curve of every method, over the frames scored against its training labels (first seed).

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results (for the methods' names).
    scores : pandas.DataFrame
        Per-frame scores (``scores.csv.gz``); frames left out (label < 0) are not drawn.

    Returns
    -------
    matplotlib.figure.Figure
        One curve per method with both classes among its scored frames, and the diagonal.
    """
    names = method_names(results)
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    scored = scores[scores["label"] >= 0]
    for method, name in names.items():
        rows = scored[(scored["method"] == method) & (scored["seed"] == scored["seed"].min())]
        if rows["label"].nunique() == 2:
            fpr, tpr, _ = roc_curve(rows["label"], rows["score"])
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC, all scored frames")
    ax.legend()
    fig.tight_layout()
    return fig
