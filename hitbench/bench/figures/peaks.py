"""The peaks found on every event, coloured by its label, runs one after another."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from hitbench.labelrule import RULE_TEXT

#: Colour and legend name of each label value.
LABELS = {1: ("tab:red", "hit"), 0: ("tab:blue", "miss"), -1: ("tab:grey", "ambiguous")}


def peaks_per_event(events: pd.DataFrame) -> Figure | None:
    """Peaks found per event with the label they give (the study's rule, :mod:`hitbench.labelrule`).

    Parameters
    ----------
    events : pandas.DataFrame
        Per-event data (``events.csv.gz``: experiment, run, event, label, n_peaks).

    Returns
    -------
    matplotlib.figure.Figure or None
        Events of every run with peak counts, one run after another on a symmetric-log scale.
        None when no event has a peak count.
    """
    if "n_peaks" not in events or not events["n_peaks"].notna().any():
        return None
    runs = list(dict.fromkeys(events["experiment"] + "/" + events["run"]))
    fig = Figure(figsize=(11, 3.8))
    ax = fig.subplots()
    offset = 0
    for run in runs:
        rows = events[(events["experiment"] + "/" + events["run"]) == run]
        if rows["n_peaks"].isna().all():
            continue
        for label in (0, -1, 1):
            sel = rows[rows["label"] == label]
            colour, name = LABELS[label]
            ax.scatter(offset + sel["event"], sel["n_peaks"], s=2, color=colour, label=name if offset == 0 else None)
        ax.axvline(offset, color="k", lw=0.3)
        ax.text(offset, ax.get_ylim()[1] if offset else 0, run.split("/")[-1], fontsize=7, va="bottom")
        offset += len(rows)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xlabel("event (runs one after another)")
    ax.set_ylabel("peaks found")
    ax.set_title(f"peaks per event with labels ({RULE_TEXT})")
    ax.legend(markerscale=4)
    fig.tight_layout()
    return fig
