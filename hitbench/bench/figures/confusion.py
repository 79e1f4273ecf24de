"""Confusion matrices per method (FIG. 5 of the reference study)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hitbench.bench.tables import method_names


def confusion_matrices(results: pd.DataFrame) -> Figure:
    """Confusion matrices of every method on the training runs, the other runs and other experiments.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results; only rows scored against the labels the methods trained with are used.

    Returns
    -------
    matplotlib.figure.Figure
        One row of panels per method, one column per group of runs (training runs' held-out
        frames, other runs, other experiments, where present); counts summed over runs and seeds.
    """
    names = method_names(results)
    trained = results[results["scored_against"] == results["labels"]]
    groups = {
        "training runs (held out)": trained["train_run"] & (trained["protocol"] == "cross-run"),
        "other runs": ~trained["train_run"] & (trained["protocol"] == "cross-run"),
        "other experiments": trained["protocol"] == "cross-experiment",
    }
    groups = {k: v for k, v in groups.items() if v.any()}
    fig = Figure(figsize=(3.2 * len(groups), 2.9 * len(names)))
    axes = fig.subplots(len(names), len(groups), squeeze=False)
    for i, method in enumerate(names):
        for j, (title, selected) in enumerate(groups.items()):
            rows = trained[selected & (trained["method"] == method)]
            matrix = np.array([[rows["tn"].sum(), rows["fp"].sum()], [rows["fn"].sum(), rows["tp"].sum()]])
            ax = axes[i, j]
            ax.imshow(matrix / max(1, matrix.sum()), cmap="Blues", vmin=0, vmax=1)
            for (r, c), value in np.ndenumerate(matrix):
                ax.text(c, r, str(value), ha="center", va="center")
            ax.set_xticks([0, 1], ["miss", "hit"])
            ax.set_yticks([0, 1], ["miss", "hit"])
            ax.set_xlabel("predicted")
            ax.set_ylabel(f"label ({trained['labels'].iloc[0]})")
            ax.set_title(f"{names[method]}: {title}", fontsize=9)
    fig.tight_layout()
    return fig
