"""The reference study's label rule: a frame with fewer than 2 peaks is a miss, one with more than 10 a hit.

Frames in between are ambiguous (-1) and left out of training and scoring. The rule's bounds are
options of ``hitbench label``; :data:`MISS_BELOW` and :data:`HIT_ABOVE` are the study's.
"""

from __future__ import annotations

import numpy as np

from hitbench.errors import HitbenchError

#: Frames with fewer peaks than this are misses (the study's rule).
MISS_BELOW = 2
#: Frames with more peaks than this are hits (the study's rule).
HIT_ABOVE = 10
#: The study's rule in words, for tables and pages.
RULE_TEXT = f"< {MISS_BELOW} peaks miss, > {HIT_ABOVE} hit"


def peak_labels(counts: np.ndarray, miss_below: int = MISS_BELOW, hit_above: int = HIT_ABOVE) -> np.ndarray:
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


def rule_record(miss_below: int = MISS_BELOW, hit_above: int = HIT_ABOVE) -> dict[str, str]:
    """The rule as recorded with the labels of a run (the ``label_rule`` attribute, JSON).

    Parameters
    ----------
    miss_below, hit_above : int
        The rule's bounds (see :func:`peak_labels`).

    Returns
    -------
    dict
        ``miss``, ``hit`` and ``ambiguous``: which peak counts each label takes.
    """
    return {"miss": f"n_peaks < {miss_below}", "hit": f"n_peaks > {hit_above}", "ambiguous": "otherwise"}
