"""Sensitivity, specificity and balanced accuracy per run, with their 95 % intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hitbench.bench.tables import RATE_COLUMNS, label_kinds, method_names, run_rates

#: The rates drawn, one column of panels each.
RATES = ("sensitivity", "specificity", "balanced_accuracy")


def sensitivity_specificity(results: pd.DataFrame) -> Figure | None:
    """Sensitivity, specificity and balanced accuracy of every method on every run of the training experiment.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results (rows of other experiments are left out).

    Returns
    -------
    matplotlib.figure.Figure or None
        One row of panels per label kind scored against, methods side by side at each run, with
        error bars from the 95 % bounds (over seeds: the lowest to the highest bound). None
        without cross-run rows.
    """
    names = method_names(results)
    per_run = run_rates(results[results["protocol"] == "cross-run"])
    if per_run.empty:
        return None
    kinds = label_kinds(per_run)
    fig = Figure(figsize=(15, 3.4 * len(kinds)))
    axes = fig.subplots(len(kinds), 3, sharey=True, squeeze=False)
    for row, kind in zip(axes, kinds, strict=True):
        for k, method in enumerate(names):
            values = per_run[(per_run["method"] == method) & (per_run["scored_against"] == kind)]
            x = np.arange(len(values)) + 0.12 * (k - (len(names) - 1) / 2)  # methods side by side
            for ax, rate in zip(row, RATES, strict=True):
                error = np.clip([values[rate] - values[f"{rate}_lo"], values[f"{rate}_hi"] - values[rate]], 0, None)
                ax.errorbar(x, values[rate], yerr=error, fmt="o", ms=3, capsize=2, label=names[method])
                ax.set_xticks(np.arange(len(values)), values["test_run"])
        for ax, rate in zip(row, RATES, strict=True):
            ax.set_title(f"{RATE_COLUMNS[rate]} against {kind}, 95 % interval", fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("per run (* = training run, held-out frames)")
    fig.tight_layout()
    return fig
