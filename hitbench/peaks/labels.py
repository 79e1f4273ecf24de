"""Hit/miss labels from peak counts, the rule of the reference study."""

from __future__ import annotations

import numpy as np

from hitbench.errors import HitbenchError


def peak_labels(counts: np.ndarray, miss_below: int = 2, hit_above: int = 10) -> np.ndarray:
    """Label frames by their number of peaks.

    Parameters
    ----------
    counts : array-like of int, shape (n,)
        Peaks per frame.
    miss_below : int
        Frames with fewer peaks than this are misses (0).
    hit_above : int
        Frames with more peaks than this are hits (1); the rest are ambiguous (-1).

    Returns
    -------
    numpy.ndarray, shape (n,)
        int8 labels: 1 hit, 0 miss, -1 ambiguous.
    """
    if hit_above < miss_below - 1:
        raise HitbenchError(
            f"hit_above={hit_above} is below miss_below={miss_below}; a frame would be both hit and miss"
        )
    counts = np.asarray(counts)
    labels = np.full(counts.shape, -1, dtype=np.int8)
    labels[counts < miss_below] = 0
    labels[counts > hit_above] = 1
    return labels
