"""The peaks of a stack of frames as one table: what the peak finder gives and CXI files hold."""

from __future__ import annotations

from collections.abc import Sequence
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

    @classmethod
    def concatenate(cls, tables: Sequence[PeakTable]) -> PeakTable:
        """The tables of consecutive frame ranges as one, padded with zeros to the widest.

        Parameters
        ----------
        tables : sequence of PeakTable
            At least one table.

        Returns
        -------
        PeakTable
            Every frame of ``tables``, in order.
        """
        width = max(table.x.shape[1] for table in tables)

        def stacked(name: str) -> np.ndarray:
            return np.concatenate([np.pad(getattr(t, name), ((0, 0), (0, width - t.x.shape[1]))) for t in tables])

        return cls(np.concatenate([t.n_peaks for t in tables]), stacked("x"), stacked("y"), stacked("intensity"))
