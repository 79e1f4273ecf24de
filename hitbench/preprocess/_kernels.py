"""Compiled kernels of the spot map: the steps of ``RobustPreprocessing(spots=True)`` fused.

Imported lazily (numba compiles on first use and caches): importing :mod:`hitbench.preprocess` never imports
numba. The kernels compute what the numpy steps of :mod:`hitbench.preprocess.steps` compute, on the same
tiles, medians and interpolation, without the steps' temporaries: the frames are read tile by tile, each
frame's excess over its background is the one full-size intermediate (kept in the output array), and
the selections (tile medians, frame medians) are quickselects instead of sorts. Sums are kept in float64
and rounded once, so values agree with the numpy steps to a few float32 units in the last place.
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True}


@numba.njit(**_JIT)
def _select(a: np.ndarray, n: int, k: int) -> float:
    """The ``k``-th smallest of ``a[:n]`` (0-based), reordering ``a[:n]`` so that ``a[:k] <= a[k] <= a[k + 1:n]``."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        lt, i, gt = lo, lo, hi
        while i <= gt:  # three-way partition: ties with the pivot end the search at once
            v = a[i]
            if v < pivot:
                a[i], a[lt] = a[lt], v
                lt += 1
                i += 1
            elif v > pivot:
                a[i], a[gt] = a[gt], v
                gt -= 1
            else:
                i += 1
        if k < lt:
            hi = lt - 1
        elif k > gt:
            lo = gt + 1
        else:
            return pivot
    return a[k]


@numba.njit(**_JIT)
def _median(a: np.ndarray, n: int) -> float:
    """``numpy.median`` of ``a[:n]`` in its dtype: the middle value, or the mean of the two middle values."""
    half = n // 2
    if n % 2:
        return _select(a, n, half)
    low = _select(a, n, half - 1)
    high = a[half]
    for i in range(half + 1, n):  # a[half:] >= low: the next order statistic is their minimum
        if a[i] < high:
            high = a[i]
    return (low + high) / 2


@numba.njit(**_JIT)
def _reflect(i: int, size: int) -> int:
    """``numpy.pad(mode="reflect")``'s source index of padded position ``i >= 0``."""
    if size == 1:
        return 0
    period = 2 * (size - 1)
    i %= period
    return period - i if i >= size else i


@numba.njit(**_JIT)
def linear_weights(size: int, n_tiles: int, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: the lower and upper tile and the float32 weight of the upper one (:func:`tiles.interpolate`'s)."""
    low = np.empty(size, np.int64)
    high = np.empty(size, np.int64)
    fraction = np.empty(size, np.float32)
    for i in range(size):
        position = min(max((i + 0.5) / block - 0.5, 0.0), n_tiles - 1.0)
        low[i] = int(np.floor(position))
        high[i] = min(low[i] + 1, n_tiles - 1)
        fraction[i] = np.float32(position - low[i])
    return low, high, fraction


@numba.njit(**_JIT)
def _interpolate_rows(values: np.ndarray, low: np.ndarray, high: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Tile values (ny, nx) interpolated along the rows to (height, nx), float32."""
    out = np.empty((low.size, values.shape[1]), np.float32)
    for i in range(low.size):
        f = np.float64(fraction[i])
        g = np.float64(np.float32(1) - fraction[i])
        for j in range(values.shape[1]):
            out[i, j] = np.float32(g * values[low[i], j] + f * values[high[i], j])
    return out


@numba.njit(**_JIT)
def _interpolated(rows: np.ndarray, i: int, j: int, low: np.ndarray, high: np.ndarray, fraction: np.ndarray) -> float:
    """The bilinear value at pixel (i, j) from the row-interpolated tile values (float32)."""
    f = np.float64(fraction[j])
    g = np.float64(np.float32(1) - fraction[j])
    return np.float32(g * rows[i, low[j]] + f * rows[i, high[j]])


@numba.njit(**_JIT)
def tile_moments(frames: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame and whole tile: sum and sum of squares (float64); per tile: pixels non-zero in some frame."""
    n, height, width = frames.shape
    ny, nx = height // block, width // block
    total = np.zeros((n, ny * nx))
    squares = np.zeros((n, ny * nx))
    seen = np.zeros((ny * block, nx * block), np.bool_)
    for f in range(n):
        for r in range(ny * block):
            for c in range(nx * block):
                v = np.float64(frames[f, r, c])
                t = (r // block) * nx + c // block
                total[f, t] += v
                squares[f, t] += v * v
                if v != 0:
                    seen[r, c] = True
    count = np.zeros(ny * nx, np.int64)
    for r in range(ny * block):
        for c in range(nx * block):
            if seen[r, c]:
                count[(r // block) * nx + c // block] += 1
    return total, squares, count


@numba.njit(**_JIT)
def theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Median of the slopes between all pairs of points with different x (:func:`scipy.stats.theilslopes`'s)."""
    n = x.size
    slopes = np.empty(n * (n - 1) // 2)
    m = 0
    for i in range(n):
        for j in range(n):
            dx = x[i] - x[j]
            if dx > 0:
                slopes[m] = (y[i] - y[j]) / dx
                m += 1
    return _median(slopes, m) if m else np.nan


@numba.njit(**_JIT)
def excess_and_noise(
    frames: np.ndarray, gain: np.float32, block: int, trim: int, trim_factor: np.float32, excess: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Photons, their excess over the tile-median background, and the trimmed noise of each tile of the excess.

    For each frame: photons ``frames / gain`` (float32); bad pixels (0) take the frame's median for the
    statistics; the median of each ``block`` x ``block`` tile (edge tiles padded by reflection) interpolated
    bilinearly is the background; ``excess`` (written in place) is photons minus background, 0 on bad pixels;
    the standard deviation of each tile of the excess (its zeros taking the excess's median) without its
    ``trim`` lowest and highest values, divided by ``trim_factor``, is the tile's noise, and tiles without
    spread take the frame's median tile noise (1 when no tile has spread). Also the sum over the frames of
    each tile's photons as its median was taken (the batch's photon rate, times pixels and frames).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Tile noise (n, ny, nx) float32 and photon sums (ny, nx) float64.
    """
    n, height, width = frames.shape
    ny, nx = -(-height // block), -(-width // block)
    pixels = block * block
    row_low, row_high, row_fraction = linear_weights(height, ny, block)
    col_low, col_high, col_fraction = linear_weights(width, nx, block)
    noise = np.empty((n, ny, nx), np.float32)
    sums = np.zeros((ny, nx))
    flat = np.empty(height * width, np.float32)
    tile = np.empty(pixels, np.float32)
    low = np.empty(trim, np.float32)
    high = np.empty(trim, np.float32)
    background = np.empty((ny, nx), np.float32)
    spread = np.empty(ny * nx, np.float32)
    for f in range(n):
        photons = excess[f]
        for r in range(height):
            for c in range(width):
                photons[r, c] = frames[f, r, c] / gain
                flat[r * width + c] = photons[r, c]
        fill = np.float32(_median(flat, flat.size))
        for ty in range(ny):
            for tx in range(nx):
                total = 0.0
                k = 0
                for r in range(ty * block, ty * block + block):
                    rr = _reflect(r, height)
                    for c in range(tx * block, tx * block + block):
                        v = photons[rr, _reflect(c, width)]
                        v = fill if v == 0 else v
                        tile[k] = v
                        total += v
                        k += 1
                sums[ty, tx] += total
                background[ty, tx] = _select(tile, pixels, pixels // 2)
        rows = _interpolate_rows(background, row_low, row_high, row_fraction)
        for r in range(height):
            for c in range(width):
                v = photons[r, c]
                e = np.float32(0) if v == 0 else v - _interpolated(rows, r, c, col_low, col_high, col_fraction)
                photons[r, c] = e
                flat[r * width + c] = e
        fill = np.float32(_median(flat, flat.size))
        positive = 0
        for ty in range(ny):
            for tx in range(nx):
                low[:] = np.inf
                high[:] = -np.inf
                total = 0.0
                for r in range(ty * block, ty * block + block):
                    rr = _reflect(r, height)
                    for c in range(tx * block, tx * block + block):
                        v = photons[rr, _reflect(c, width)]
                        v = fill if v == 0 else v
                        total += v
                        if v < low[trim - 1]:  # keep the trim lowest, sorted
                            i = trim - 1
                            while i > 0 and low[i - 1] > v:
                                low[i] = low[i - 1]
                                i -= 1
                            low[i] = v
                        if v > high[trim - 1]:  # and the trim highest, sorted down
                            i = trim - 1
                            while i > 0 and high[i - 1] < v:
                                high[i] = high[i - 1]
                                i -= 1
                            high[i] = v
                for i in range(trim):
                    total -= np.float64(low[i]) + np.float64(high[i])
                kept = pixels - 2 * trim
                mean = total / kept
                deviations = 0.0
                for r in range(ty * block, ty * block + block):
                    rr = _reflect(r, height)
                    for c in range(tx * block, tx * block + block):
                        v = photons[rr, _reflect(c, width)]
                        d = np.float64(fill if v == 0 else v) - mean
                        deviations += d * d
                for i in range(trim):
                    d_low, d_high = np.float64(low[i]) - mean, np.float64(high[i]) - mean
                    deviations -= d_low * d_low + d_high * d_high
                sigma = np.float32(np.sqrt(max(deviations, 0.0) / kept)) / trim_factor
                noise[f, ty, tx] = sigma
                if sigma > 0:
                    spread[positive] = sigma
                    positive += 1
        typical = np.float32(_median(spread, positive)) if positive else np.float32(1)
        for ty in range(ny):
            for tx in range(nx):
                if not noise[f, ty, tx] > 0:
                    noise[f, ty, tx] = typical
    return noise, sums


@numba.njit(**_JIT)
def gaussian_significance(
    excess: np.ndarray, noise: np.ndarray, rate: np.ndarray, block: int, tail_above: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Excess over the square root of the local variance, in place; the pixels whose Poisson tail is to be computed.

    The variance is the tile noise squared, interpolated, but never less than the interpolated photon rate
    (:class:`~hitbench.preprocess.PoissonSignificance`). ``excess`` becomes ``excess / sqrt(variance)``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Flat positions of the pixels above 2 and ``tail_above``, their variance and their excess (float64).
    """
    n, height, width = excess.shape
    ny, nx = noise.shape[1:]
    row_low, row_high, row_fraction = linear_weights(height, ny, block)
    col_low, col_high, col_fraction = linear_weights(width, nx, block)
    rate_rows = _interpolate_rows(rate, row_low, row_high, row_fraction)
    floor = np.empty((height, width), np.float32)
    for r in range(height):
        for c in range(width):
            floor[r, c] = _interpolated(rate_rows, r, c, col_low, col_high, col_fraction)
    cut = max(2.0, tail_above)
    size = 1024
    where = np.empty(size, np.int64)
    variances = np.empty(size)
    excesses = np.empty(size)
    m = 0
    for f in range(n):
        rows = _interpolate_rows(noise[f], row_low, row_high, row_fraction)
        for r in range(height):
            for c in range(width):
                sigma = _interpolated(rows, r, c, col_low, col_high, col_fraction)
                variance = max(sigma * sigma, floor[r, c])
                e = excess[f, r, c]
                z = e / np.sqrt(variance)
                excess[f, r, c] = z
                if z > cut:
                    if m == size:
                        size *= 2
                        where = np.concatenate((where, np.empty(size - m, np.int64)))
                        variances = np.concatenate((variances, np.empty(size - m)))
                        excesses = np.concatenate((excesses, np.empty(size - m)))
                    where[m] = (f * height + r) * width + c
                    variances[m] = variance
                    excesses[m] = e
                    m += 1
    return where[:m], variances[:m], excesses[:m]


@numba.njit(**_JIT)
def hot_pixels(frames: np.ndarray, threshold: float, min_fraction: float, min_frames: int) -> np.ndarray:
    """Pixels above ``threshold`` in at least ``min_fraction`` of the frames (none below ``min_frames`` frames)."""
    n, height, width = frames.shape
    hot = np.zeros((height, width), np.bool_)
    if n < min_frames:
        return hot
    bright = np.zeros((height, width), np.int64)
    for f in range(n):
        for r in range(height):
            for c in range(width):
                if frames[f, r, c] > threshold:
                    bright[r, c] += 1
    for r in range(height):
        for c in range(width):
            hot[r, c] = bright[r, c] >= min_fraction * n
    return hot


@numba.njit(**_JIT)
def good_pixels(frames: np.ndarray, hot: np.ndarray) -> np.ndarray:
    """Per frame: pixels neither 0 nor hot."""
    n, height, width = frames.shape
    good = np.zeros(n, np.int64)
    for f in range(n):
        for r in range(height):
            for c in range(width):
                if frames[f, r, c] != 0 and not hot[r, c]:
                    good[f] += 1
    return good


@numba.njit(**_JIT)
def spot_pixels(
    frames: np.ndarray, hot: np.ndarray, threshold: np.float32, min_neighbours: int, lone: np.ndarray
) -> None:
    """:class:`~hitbench.preprocess.SpotPixels` after :class:`~hitbench.preprocess.HotPixelMask`, in place (1/0).

    A pixel is lit above ``threshold`` (hot pixels never); kept with ``min_neighbours`` lit neighbours of 8,
    or alone above its frame's ``lone`` level.
    """
    n, height, width = frames.shape
    lit = np.zeros((height + 2, width + 2), np.uint8)
    for f in range(n):
        frame = frames[f]
        for r in range(height):
            for c in range(width):
                lit[r + 1, c + 1] = frame[r, c] > threshold and not hot[r, c]
        for r in range(height):
            for c in range(width):
                v = frame[r, c]
                kept = False
                if lit[r + 1, c + 1]:
                    if min_neighbours == 0:
                        kept = True
                    else:
                        around = (lit[r, c] + lit[r, c + 1] + lit[r, c + 2] + lit[r + 1, c] + lit[r + 1, c + 2]) + (
                            lit[r + 2, c] + lit[r + 2, c + 1] + lit[r + 2, c + 2]
                        )
                        kept = around >= min_neighbours or v > lone[f]
                frame[r, c] = np.float32(1) if kept else np.float32(0)
