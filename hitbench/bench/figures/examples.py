"""A few hit and miss frames of a run, as the labels call them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure


def example_frames(examples: Mapping[str, np.ndarray]) -> Figure:
    """Example frames in two rows, each titled with its label and the peaks found on it.

    Parameters
    ----------
    examples : mapping
        The content of a results folder's ``examples.npz``: ``frames`` (n, H, W), ``labels``
        (1 hit, 0 miss), ``n_peaks`` and ``title``.

    Returns
    -------
    matplotlib.figure.Figure
        The frames on one grey scale (0 to the 99.5th percentile of all of them).
    """
    frames, labels = examples["frames"], examples["labels"]
    fig = Figure(figsize=(2.6 * (frames.shape[0] // 2), 5.4))
    axes = fig.subplots(2, frames.shape[0] // 2, squeeze=False)
    vmax = float(np.percentile(frames, 99.5))
    for ax, frame, label, n_peaks in zip(axes.ravel(), frames, labels, examples["n_peaks"], strict=True):
        ax.imshow(frame, cmap="gray_r", vmin=0, vmax=vmax)
        ax.set_title(f"{'hit' if label == 1 else 'miss'} ({n_peaks} peaks)", fontsize=9)
        ax.axis("off")
    fig.suptitle(str(examples["title"]))
    fig.tight_layout()
    return fig
