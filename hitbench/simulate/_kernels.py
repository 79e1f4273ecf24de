"""Compiled steps of the simulator (numba), bit for bit the numpy steps they replace.

Imported lazily by :mod:`hitbench.simulate.physics` and :mod:`hitbench.simulate.runs`, so importing hitbench never
imports numba. Each kernel does the same floating-point operations, in the same order and precision, as the numpy
code it replaces (numba, without fastmath, neither reorders nor fuses them); only ``exp`` is not computed here,
whose last bit could differ from numpy's: :func:`maybe_nonzero` brackets it to find the pixels that may be
non-zero, and the caller computes numpy's own ``exp`` for those alone.
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
    index: np.ndarray, u: np.ndarray, lam: np.ndarray, p: np.ndarray, dense_above: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of the candidate pixels ``index``: those counted here, and those left to numpy's sampler.

    A candidate with ``u > p`` (``p = exp(-lam)`` by numpy, float64) is non-zero: above ``dense_above`` expected
    photons it is left to numpy, else its count is the first k >= 1 whose cumulative probability reaches ``u``,
    or where the next term underflows (inversion, in float64).

    Returns
    -------
    pixels : numpy.ndarray of int64
        The pixels counted here, increasing.
    counts : numpy.ndarray of int32
        Their counts.
    dense : numpy.ndarray of int64
        The non-zero pixels left to numpy's sampler, increasing.
    """
    pixels = np.empty(index.size, dtype=np.int64)
    counts = np.empty(index.size, dtype=np.int32)
    dense = np.empty(index.size, dtype=np.int64)
    n_counted, n_dense = 0, 0
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
        pixels[n_counted] = i
        counts[n_counted] = k
        n_counted += 1
    return pixels[:n_counted], counts[:n_counted], dense[:n_dense]


@numba.njit(cache=True, nogil=True)
def background(jet_scale: np.float32, flux: np.float32, jet_map: np.ndarray, air_map: np.ndarray) -> np.ndarray:
    """Expected background photons of a frame, float32: ``jet_scale * jet_map + flux * air_map``.

    Each product is rounded to float32 before the sum, as numpy computes them (float32 arrays).
    """
    lam = np.empty(jet_map.size, dtype=np.float32)
    for i in range(jet_map.size):
        lam[i] = jet_scale * jet_map[i] + flux * air_map[i]
    return lam


@numba.njit(cache=True, nogil=True)
def integrate(
    pixels: np.ndarray,
    counts: np.ndarray,
    gain: np.float32,
    bank: np.ndarray,
    noise: np.ndarray,
    offsets: np.ndarray,
    panels: np.ndarray,
    width: int,
    saturation: np.float32,
    blank: np.ndarray,
    round_values: bool,
    out: np.ndarray,
) -> None:
    """An integrating detector's frame from its non-zero photon counts, into ``out`` (H*W, the storage type).

    Per pixel, in float32: its count (``counts`` of ``pixels``, 0 elsewhere) times the gain, plus its window of
    the noise bank (``bank``, as long as the frame) times its readout noise, plus the offset of its panel
    (``panels``: first row, end row, first column, end column of each, in rows ``width`` pixels long; pixels on
    none are blank), capped at the saturation; 0 on blank pixels (gaps, dead); rounded to whole ADU when
    ``round_values``. Each step a vectorised pass over the frame.
    """
    n_px = out.size
    zero = np.float32(0.0)
    values = np.empty(n_px, dtype=np.float32)
    no_photon = np.float32(0) * gain
    for i in range(n_px):
        values[i] = no_photon + bank[i] * noise[i]
    for j in range(pixels.size):
        i = pixels[j]
        values[i] = np.float32(counts[j]) * gain + bank[i] * noise[i]
    for k in range(panels.shape[0]):
        offset = offsets[k]
        for row in range(panels[k, 0], panels[k, 1]):
            for i in range(row * width + panels[k, 2], row * width + panels[k, 3]):
                values[i] = values[i] + offset
    if round_values:
        for i in range(n_px):
            out[i] = np.rint(zero if blank[i] else min(values[i], saturation))
    else:
        for i in range(n_px):
            out[i] = zero if blank[i] else min(values[i], saturation)
