"""The peaks of a stack of frames as one table: what the peak finder gives and CXI files hold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Peak slots per frame of a CXI peak table unless a run's own table is wider (Cheetah's and peakfinder8's
#: maximum number of peaks).
MAX_PEAKS = 2048


@dataclass
class PeakTable:
    """Per-frame peak lists, padded to ``max_peaks`` (the Cheetah result_1 layout).

    Parameters
    ----------
    n_peaks : numpy.ndarray, shape (n,)
        Number of peaks per frame.
    x, y : numpy.ndarray, shape (n, max_peaks)
        Peak centroids in pixels (x = column, y = row, 0-based); zero beyond ``n_peaks``.
    intensity : numpy.ndarray, shape (n, max_peaks)
        Integrated, background-subtracted intensity (ADU).
    """

    n_peaks: np.ndarray
    x: np.ndarray
    y: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return int(self.n_peaks.shape[0])
