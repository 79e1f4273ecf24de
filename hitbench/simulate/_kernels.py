"""Compiled steps of the simulator (numba), bit for bit the numpy steps they replace.

Imported lazily by :mod:`hitbench.simulate.physics` and :mod:`hitbench.simulate.runs`, so importing hitbench never
imports numba. Each kernel does the same floating-point operations, in the same order and precision, as the numpy
code it replaces (numba, without fastmath, neither reorders nor fuses them); only ``exp`` is not computed here,
whose last bit could differ from numpy's: :func:`maybe_nonzero` brackets it and the caller settles the few
undecided pixels with numpy's own ``exp``.
"""

from __future__ import annotations

import numba
import numpy as np

#: Expected photons from which a pixel is always a candidate (spots, hot pixels; the approximation covers below).
_ALWAYS_ABOVE = np.float32(16.0)
#: A pixel is a candidate unless its uniform number lies below the approximate exp(-x) by more than this relative
#: part (the approximation's own error, checked on every float32 x below _ALWAYS_ABOVE, is below 1e-5).
_MARGIN = np.float32(1e-3)
#: Pixels bracketed at a time (vectorised), before their candidates are listed.
_BLOCK = 4096


@numba.njit(cache=True, nogil=True, inline="always")
def _exp_neg(x: np.float32) -> np.float32:
    """exp(-x) for float32 0 <= x < 16, approximately: (e^(-x/32))^32, the inner exp by its Taylor series."""
    y = x * np.float32(1.0 / 32.0)
    p = np.float32(1.0) - y * (
        np.float32(1.0)
        - y
        * (
            np.float32(1.0 / 2.0)
            - y
            * (
                np.float32(1.0 / 6.0)
                - y
                * (
                    np.float32(1.0 / 24.0)
                    - y * (np.float32(1.0 / 120.0) - y * (np.float32(1.0 / 720.0) - y * np.float32(1.0 / 5040.0)))
                )
            )
        )
    )
    for _ in range(5):
        p *= p
    return p


@numba.njit(cache=True, nogil=True)
def maybe_nonzero(lam: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose Poisson count may be non-zero (``u > exp(-lam)``), in order: all that are, and a few more.

    Parameters
    ----------
    lam : numpy.ndarray of float32
        Expected photons, flat.
    u : numpy.ndarray of float32
        The pixels' uniform numbers.

    Returns
    -------
    index : numpy.ndarray of int64
        Increasing pixel indices: every pixel with ``u > exp(-lam)``, and the few within :data:`_MARGIN` of it.
    minus_lam : numpy.ndarray of float64
        ``-lam`` of these pixels, for numpy's ``exp``.
    """
    n = lam.size
    index = np.empty(n, dtype=np.int64)
    below = np.empty(_BLOCK, dtype=np.bool_)
    count = 0
    for start in range(0, n, _BLOCK):
        block_lam, block_u = lam[start : start + _BLOCK], u[start : start + _BLOCK]
        for i in range(block_lam.size):  # vectorised: no branch
            x = min(block_lam[i], _ALWAYS_ABOVE)
            below[i] = (block_u[i] <= _exp_neg(x) * (np.float32(1.0) - _MARGIN)) & (x < _ALWAYS_ABOVE)
        for i in range(block_lam.size):
            index[count] = start + i
            count += not below[i]
    index = index[:count]
    minus_lam = np.empty(count, dtype=np.float64)
    for j in range(count):
        minus_lam[j] = -np.float64(lam[index[j]])
    return index, minus_lam


@numba.njit(cache=True, nogil=True)
def settle(
    counts: np.ndarray, index: np.ndarray, u: np.ndarray, lam: np.ndarray, p: np.ndarray, dense_above: float
) -> np.ndarray:
    """Counts of the candidate pixels ``index`` (``counts`` in place); returns those left to numpy's sampler.

    A candidate with ``u > p`` (``p = exp(-lam)`` by numpy, float64) is non-zero: above ``dense_above`` expected
    photons it is returned, in order; else its count is the first k >= 1 whose cumulative probability
    reaches ``u``, or where the next term underflows (inversion, in float64).
    """
    dense = np.empty(index.size, dtype=np.int64)
    n_dense = 0
    for j in range(index.size):
        i = index[j]
        ul = np.float64(u[i])
        if not ul > p[j]:
            continue
        if lam[i] > dense_above:
            dense[n_dense] = i
            n_dense += 1
            continue
        ll = np.float64(lam[i])
        pk = p[j]
        cdf = pk
        k = 0
        while True:
            k += 1
            pk *= ll / k
            cdf += pk
            if not (ul > cdf and pk > 0):
                break
        counts[i] = k
    return dense[:n_dense]


@numba.njit(cache=True, nogil=True)
def background(jet_scale: np.ndarray, flux: np.ndarray, jet_map: np.ndarray, air_map: np.ndarray) -> np.ndarray:
    """Expected background photons of each frame, float32 (n, H*W): ``jet_scale * jet_map + flux * air_map``.

    Each product is rounded to float32 before the sum, as numpy computes them (float32 arrays).
    """
    n, n_px = jet_scale.size, jet_map.size
    lam = np.empty((n, n_px), dtype=np.float32)
    for f in range(n):
        a, b = jet_scale[f], flux[f]
        for i in range(n_px):
            lam[f, i] = a * jet_map[i] + b * air_map[i]
    return lam


@numba.njit(cache=True, nogil=True)
def integrate(
    counts: np.ndarray,
    gain: np.float32,
    bank: np.ndarray,
    starts: np.ndarray,
    noise: np.ndarray,
    offsets: np.ndarray,
    panels: np.ndarray,
    width: int,
    saturation: np.float32,
    blank: np.ndarray,
    round_values: bool,
    out: np.ndarray,
) -> None:
    """An integrating detector's frames from photon counts, into ``out`` (n, H*W) of the storage type.

    Per pixel, in float32: counts times the gain, plus its window of the noise bank times its readout noise,
    plus the frame's offset of its panel (``panels``: first row, end row, first column, end column of each, in
    rows ``width`` pixels long; pixels on none are blank), capped at the saturation; 0 on blank pixels (gaps,
    dead); rounded to whole ADU when ``round_values``. Each step a vectorised pass over the frame.
    """
    n, n_px = counts.shape
    zero = np.float32(0.0)
    values = np.empty(n_px, dtype=np.float32)
    for f in range(n):
        frame_counts, frame_bank = counts[f], bank[starts[f] : starts[f] + n_px]
        for i in range(n_px):
            values[i] = np.float32(frame_counts[i]) * gain + frame_bank[i] * noise[i]
        for k in range(panels.shape[0]):
            offset = offsets[f, k]
            for row in range(panels[k, 0], panels[k, 1]):
                for i in range(row * width + panels[k, 2], row * width + panels[k, 3]):
                    values[i] = values[i] + offset
        frame = out[f]
        if round_values:
            for i in range(n_px):
                frame[i] = np.rint(zero if blank[i] else min(values[i], saturation))
        else:
            for i in range(n_px):
                frame[i] = zero if blank[i] else min(values[i], saturation)
