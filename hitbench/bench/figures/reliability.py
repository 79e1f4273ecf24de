"""Reliability diagrams: observed hit fraction against P(hit), for the methods whose score is P(hit)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve

from hitbench.bench.metrics import CALIBRATION_BINS
from hitbench.bench.tables import method_names


def reliability(results: pd.DataFrame, scores: pd.DataFrame) -> Figure | None:
    """One reliability diagram per method whose score is P(hit), one curve per test experiment (first seed).

    The methods are those whose results carry an expected calibration error (``ece``); other
    methods' scores are not probabilities and are not drawn. Frames are those scored against the
    training labels (label >= 0), binned in :data:`~hitbench.bench.metrics.CALIBRATION_BINS`
    equal-width bins of P(hit) (:func:`sklearn.calibration.calibration_curve`). The training
    experiment's curve covers its held-out frames and test runs.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.
    scores : pandas.DataFrame
        Per-frame scores (``scores.csv.gz``).

    Returns
    -------
    matplotlib.figure.Figure or None
        None when no method gives P(hit).
    """
    if "ece" not in results:
        return None
    calibrated = results.groupby("method", sort=False)["ece"].apply(lambda ece: bool(ece.notna().any()))
    names = {m: n for m, n in method_names(results).items() if calibrated.get(m, False)}
    if not names:
        return None
    fig = Figure(figsize=(4.2 * len(names), 4.2))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    scored = scores[scores["label"] >= 0]
    for ax, (method, name) in zip(axes, names.items(), strict=True):
        rows = scored[(scored["method"] == method) & (scored["seed"] == scored["seed"].min())]
        for experiment, part in rows.groupby("experiment", sort=False):
            hit_fraction, mean_probability = calibration_curve(
                part["label"], part["score"].clip(0, 1), n_bins=CALIBRATION_BINS, strategy="uniform"
            )
            ax.plot(mean_probability, hit_fraction, marker="o", ms=3, label=f"{experiment} ({len(part)})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("P(hit)")
        ax.set_ylabel("fraction of hits")
        ax.set_title(f"{name}: reliability")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
