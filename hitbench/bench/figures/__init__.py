"""The figures of a comparison, one module per figure kind, each drawn from the tidy tables.

Every module has one plotting function that takes the tables and returns a
:class:`matplotlib.figure.Figure` (or None when the results have nothing to show). Figures are
built without pyplot, so drawing them changes no process-wide state (no backend is chosen, no
figure is registered); :func:`write_figures` saves them as PNG files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hitbench.atomic import atomic_write
from hitbench.bench.figures.confusion import confusion_matrices
from hitbench.bench.figures.examples import example_frames
from hitbench.bench.figures.peaks import peaks_per_event
from hitbench.bench.figures.rates import sensitivity_specificity
from hitbench.bench.figures.reliability import reliability
from hitbench.bench.figures.roc import roc


def save_png(fig: Figure, path: Path) -> None:
    """Save a figure as PNG, atomically and without a software tag (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))


def write_figures(
    folder: Path, results: pd.DataFrame, scores: pd.DataFrame, events: pd.DataFrame, out: Path
) -> list[Path]:
    """Draw the comparison's figures as PNG files.

    Parameters
    ----------
    folder : Path
        The results folder (for ``examples.npz``: a few hit and miss frames).
    results, scores, events : pandas.DataFrame
        The tidy tables.
    out : Path
        Folder for the PNG files.

    Returns
    -------
    list of Path
        The figures written, in page order: confusion matrices, sensitivity and specificity per
        run, ROC, reliability (methods whose score is P(hit)), example frames and peaks per event (each
        where the results have it).
    """
    examples = Path(folder) / "examples.npz"
    figures = {
        "confusion_matrices": confusion_matrices(results),
        "sensitivity_specificity": sensitivity_specificity(results),
        "roc": roc(results, scores),
        "reliability": reliability(results, scores),
        "example_frames": example_frames(np.load(examples)) if examples.is_file() else None,
        "peaks_per_event": peaks_per_event(events),
    }
    written = []
    for name, fig in figures.items():
        if fig is not None:
            save_png(fig, Path(out) / f"{name}.png")
            written.append(Path(out) / f"{name}.png")
    return written
