"""Compiled kernels of the spot map: the steps of ``RobustPreprocessing(spots=True)`` fused.

Imported lazily (numba compiles on first use and caches): importing :mod:`hitbench.preprocess` never imports
numba. The kernels compute what the numpy steps of :mod:`hitbench.preprocess.steps` compute, on the same
tiles, medians and bilinear interpolation, without the steps' temporaries and sorts: each frame is read
tile by tile, its excess over the background is the one full-size intermediate (kept in the output array);
medians are found by counting passes around a guess (a neighbouring tile's median, a sample's), a quickselect
only where that fails; the Poisson tail is computed only for pixels that it can decide. Sums are kept in
float64 and rounded once, so intermediate values agree with the numpy steps' to a few float32 units in the
last place, and the spot map, decided at significance levels of 2 or more, is the same.
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True}
# counts, minima and maxima of finite values do not depend on the order of a reduction; float64 sums of float32
# values change in their last bits only, far below the float32 results they make
_REDUCE = {**_JIT, "fastmath": {"reassoc", "nsz", "nnan"}}


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


@numba.njit(**_REDUCE)
def _count(a: np.ndarray, n: int, p: float) -> tuple[int, int]:
    """Values of ``a[:n]`` below ``p`` and up to ``p`` (one branchless, vectorised pass)."""
    lt = 0
    le = 0
    for i in range(n):
        lt += a[i] < p
        le += a[i] <= p
    return lt, le


@numba.njit(**_JIT)
def _next_value(a: np.ndarray, n: int, p: float, up: bool) -> float:
    """The smallest value of ``a[:n]`` above ``p`` (``up``), or the largest below it (four independent minima)."""
    sign = 1.0 if up else -1.0  # below p: the smallest above -p of the negated values
    q = sign * p
    m0 = m1 = m2 = m3 = np.inf
    end = n - n % 4
    for i in range(0, end, 4):
        v0, v1, v2, v3 = sign * a[i], sign * a[i + 1], sign * a[i + 2], sign * a[i + 3]
        m0 = v0 if q < v0 < m0 else m0
        m1 = v1 if q < v1 < m1 else m1
        m2 = v2 if q < v2 < m2 else m2
        m3 = v3 if q < v3 < m3 else m3
    for i in range(end, n):
        v = sign * a[i]
        m0 = v if q < v < m0 else m0
    return sign * min(min(m0, m1), min(m2, m3))


@numba.njit(**_JIT)
def _walk(a: np.ndarray, n: int, k: int, guess: float, steps: int) -> tuple[float, bool, int]:
    """The ``k``-th smallest of ``a[:n]`` by counting around a guess, moving it to the next value below or above.

    Each step is one vectorised counting pass; where values repeat (integer ADU, photons of a sparse
    background) a guess near the answer (a neighbouring tile's median, a sample's) ends in one or two steps.

    Returns
    -------
    (float, bool, int)
        The value, whether it was found within ``steps`` steps, and the count of values up to it.
    """
    p = guess
    for _ in range(steps):
        lt, le = _count(a, n, p)
        if lt <= k < le:
            return p, True, le
        p = _next_value(a, n, p, le <= k)
    return p, False, 0


@numba.njit(**_JIT)
def _tile_median(tile: np.ndarray, guess: float) -> float:
    """The upper median (rank ``n // 2``) of a tile, the walk from ``guess`` first, else a quickselect."""
    n = tile.size
    value, found, _ = _walk(tile, n, n // 2, guess, 3)
    return value if found else _select(tile, n, n // 2)


@numba.njit(**_JIT)
def _frame_median(values: np.ndarray, scratch: np.ndarray) -> float:
    """``numpy.median`` of a frame's values: walks from the median of a sample, else quickselects a copy."""
    n = values.size
    stride = max(1, n // 1024)
    m = 0
    for i in range(0, n, stride):
        scratch[m] = values[i]
        m += 1
    guess = _select(scratch, m, m // 2)
    half = n // 2
    value, found, up_to = _walk(values, n, half - 1 + n % 2, guess, 3)
    if not found:
        scratch[:n] = values
        return _median(scratch, n)
    if n % 2 or up_to > half:
        return value
    above = _next_value(values, n, value, True)
    return (np.float32(value) + np.float32(above)) / 2  # numpy's mean of the two middle values, in float32


@numba.njit(**_REDUCE)
def _sum(a: np.ndarray) -> float:
    """Float64 sum of the values of ``a``."""
    total = 0.0
    for i in range(a.size):
        total += np.float64(a[i])
    return total


@numba.njit(**_REDUCE)
def _squared_deviations(a: np.ndarray, mean: float) -> float:
    """Float64 sum of the squared deviations of the values of ``a`` from ``mean``."""
    total = 0.0
    for i in range(a.size):
        d = np.float64(a[i]) - mean
        total += d * d
    return total


@numba.njit(inline="always", **_JIT)
def _gather(
    photons: np.ndarray,
    rows_of: np.ndarray,
    cols_of: np.ndarray,
    ty: int,
    tx: int,
    block: int,
    fill: np.float32,
    tile: np.ndarray,
) -> None:
    """A tile's values (edge tiles padded by reflection) into ``tile``, zeros replaced by ``fill``."""
    k = 0
    for r in range(ty * block, ty * block + block):
        line = photons[rows_of[r]]
        for c in range(tx * block, tx * block + block):
            v = line[cols_of[c]]
            tile[k] = fill if v == 0 else v
            k += 1


@numba.njit(**_JIT)
def _padded(size: int, padded: int) -> np.ndarray:
    """Source index of each position of an axis padded to ``padded`` by ``numpy.pad(mode="reflect")``."""
    index = np.empty(padded, np.int64)
    period = max(2 * (size - 1), 1)
    for i in range(padded):
        j = i % period
        index[i] = period - j if j >= size else j
    return index


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
def _interpolate_columns(values: np.ndarray, low: np.ndarray, high: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Tile values (ny, nx) interpolated along each tile row to the pixel columns: (ny, width), float64."""
    out = np.empty((values.shape[0], low.size))
    for t in range(values.shape[0]):
        for c in range(low.size):
            f = np.float64(fraction[c])
            out[t, c] = np.float64(np.float32(1) - fraction[c]) * values[t, low[c]] + f * values[t, high[c]]
    return out


@numba.njit(inline="always", **_JIT)  # inlined: no reference counting of its arrays per row
def _interpolate_row(
    columns: np.ndarray, r: int, low: np.ndarray, high: np.ndarray, fraction: np.ndarray, out: np.ndarray
) -> None:
    """Row ``r`` of the bilinear interpolation from the column-interpolated tile values, float32 (vectorises)."""
    f = np.float64(fraction[r])
    g = np.float64(np.float32(1) - fraction[r])
    below, above = columns[low[r]], columns[high[r]]
    for c in range(out.size):
        out[c] = np.float32(g * below[c] + f * above[c])


@numba.njit(**_REDUCE)
def tile_moments(frames: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame and whole tile: sum and sum of squares (float64); per tile: pixels non-zero in some frame.

    Rows are summed column by column over each row of tiles (vectorises), then the columns tile by tile.
    """
    n, height, width = frames.shape
    ny, nx = height // block, width // block
    total = np.zeros((n, ny * nx))
    squares = np.zeros((n, ny * nx))
    seen = np.zeros((ny * block, nx * block), np.bool_)
    column_sum = np.empty(nx * block)
    column_squares = np.empty(nx * block)
    for f in range(n):
        for ty in range(ny):
            column_sum[:] = 0.0
            column_squares[:] = 0.0
            for r in range(ty * block, ty * block + block):
                line = frames[f, r]
                seen_line = seen[r]
                for c in range(nx * block):
                    v = np.float64(line[c])
                    column_sum[c] += v
                    column_squares[c] += v * v
                    seen_line[c] |= v != 0
            for tx in range(nx):
                total[f, ty * nx + tx] = _sum(column_sum[tx * block : tx * block + block])
                squares[f, ty * nx + tx] = _sum(column_squares[tx * block : tx * block + block])
    count = np.zeros(ny * nx, np.int64)
    for r in range(ny * block):
        for c in range(nx * block):
            count[(r // block) * nx + c // block] += seen[r, c]
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
    rows_of = _padded(height, ny * block)
    cols_of = _padded(width, nx * block)
    noise = np.empty((n, ny, nx), np.float32)
    sums = np.zeros((ny, nx))
    flat = np.empty(height * width, np.float32)
    scratch = np.empty(height * width, np.float32)
    tile = np.empty(pixels, np.float32)
    line = np.empty(width, np.float32)
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
        fill = np.float32(_frame_median(flat, scratch))
        median = fill
        for ty in range(ny):
            for tx in range(nx):
                _gather(photons, rows_of, cols_of, ty, tx, block, fill, tile)
                sums[ty, tx] += _sum(tile)
                median = np.float32(_tile_median(tile, median))
                background[ty, tx] = median
        columns = _interpolate_columns(background, col_low, col_high, col_fraction)
        for r in range(height):
            _interpolate_row(columns, r, row_low, row_high, row_fraction, line)
            for c in range(width):
                v = photons[r, c]
                e = np.float32(0) if v == 0 else v - line[c]
                photons[r, c] = e
                flat[r * width + c] = e
        fill = np.float32(_frame_median(flat, scratch))
        positive = 0
        for ty in range(ny):
            for tx in range(nx):
                _gather(photons, rows_of, cols_of, ty, tx, block, fill, tile)
                low[:] = np.inf
                high[:] = -np.inf
                for v in tile:
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
                kept = pixels - 2 * trim
                mean = (_sum(tile) - _sum(low) - _sum(high)) / kept
                deviations = _squared_deviations(tile, mean)
                deviations -= _squared_deviations(low, mean) + _squared_deviations(high, mean)
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
def _log_tail_lower_bound(variance: float, excess: float) -> float:
    """A lower bound of ``log(gammainc(variance + excess, variance))``: the first term of its series, Stirling above.

    ``P(a, v) >= v**a exp(-v) / Gamma(a + 1)`` and ``log Gamma(y) <= (y - 1/2) log y - y + log(2 pi) / 2 + 1 / (12 y)``.
    """
    a = variance + excess
    y = a + 1.0
    log_gamma = (y - 0.5) * np.log(y) - y + 0.9189385332046728 + 1.0 / (12.0 * y)
    return a * np.log(variance) - variance - log_gamma


@numba.njit(**_JIT)
def gaussian_significance(
    excess: np.ndarray, noise: np.ndarray, rate: np.ndarray, block: int, tail_above: float, log_tail_cut: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pixels whose significance may exceed ``tail_above``, with the Gaussian ratio; in place, the others marked.

    The Gaussian ratio is ``z = excess / sqrt(variance)``, the variance the tile noise squared, interpolated,
    but never less than the interpolated photon rate (:class:`~hitbench.preprocess.PoissonSignificance`). The
    Poisson tail probability ``gammainc(variance + excess, variance)`` can only lower ``z``: a pixel matters
    (lit, hot) only where ``z`` exceeds ``tail_above`` (2 or more, where the significance is the tail's).
    ``excess`` becomes: ``z`` on the pixels returned for the tail; 0 where the excess is 0; ``tail_above``
    elsewhere (``z`` at most that, or a tail probability surely above ``exp(log_tail_cut)``, that of a
    significance below ``tail_above``, by :func:`_log_tail_lower_bound`). A first vectorised pass screens the
    pixels by ``excess**2 > tail_above**2 variance`` with a margin; ``z`` is computed on those only.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Flat positions of the pixels for the tail, their variance and excess (float64), and the non-zero
        pixels of each frame.
    """
    n, height, width = excess.shape
    ny, nx = noise.shape[1:]
    row_low, row_high, row_fraction = linear_weights(height, ny, block)
    col_low, col_high, col_fraction = linear_weights(width, nx, block)
    rate_columns = _interpolate_columns(rate, col_low, col_high, col_fraction)
    floor = np.empty((height, width), np.float32)
    for r in range(height):
        _interpolate_row(rate_columns, r, row_low, row_high, row_fraction, floor[r])
    lowered = np.float32(tail_above)
    screen = (tail_above * (1 - 1e-6)) ** 2  # z = e / sqrt(v) in float32 is within 1e-6 of the exact ratio
    variance = np.empty(width, np.float32)
    maybe = np.empty(width, np.bool_)
    frame_where = np.empty(height * width, np.int64)  # one frame's candidates; the batch's grow frame by frame
    frame_variances = np.empty(height * width)
    frame_excesses = np.empty(height * width)
    where = np.empty(0, np.int64)
    variances = np.empty(0)
    excesses = np.empty(0)
    nonzero = np.zeros(n, np.int64)
    m = 0
    for f in range(n):
        columns = _interpolate_columns(noise[f], col_low, col_high, col_fraction)
        k = 0
        count = 0
        for r in range(height):
            line = excess[f, r]
            _interpolate_row(columns, r, row_low, row_high, row_fraction, variance)
            for c in range(width):
                variance[c] = max(variance[c] * variance[c], floor[r, c])
            for c in range(width):
                e = np.float64(line[c])
                maybe[c] = (e > 0) & (e * e > screen * variance[c])
                count += line[c] != 0
            for c in range(width):
                e = line[c]
                if not maybe[c]:
                    line[c] = lowered if e != 0 else e
                    continue
                z = e / np.sqrt(variance[c])
                if z > tail_above and _log_tail_lower_bound(np.float64(variance[c]), np.float64(e)) <= log_tail_cut:
                    frame_where[k] = (f * height + r) * width + c
                    frame_variances[k] = variance[c]
                    frame_excesses[k] = e
                    k += 1
                    line[c] = z
                else:
                    line[c] = lowered
        nonzero[f] = count
        if m + k > where.size:
            size = max(2 * where.size, m + k)
            where = np.concatenate((where[:m], np.empty(size - m, np.int64)))
            variances = np.concatenate((variances[:m], np.empty(size - m)))
            excesses = np.concatenate((excesses[:m], np.empty(size - m)))
        where[m : m + k] = frame_where[:k]
        variances[m : m + k] = frame_variances[:k]
        excesses[m : m + k] = frame_excesses[:k]
        m += k
    return where[:m], variances[:m], excesses[:m], nonzero


@numba.njit(**_JIT)
def hot_pixels(frames: np.ndarray, threshold: np.float32, min_fraction: float, min_frames: int) -> np.ndarray:
    """Pixels above ``threshold`` in at least ``min_fraction`` of the frames (none below ``min_frames`` frames)."""
    n, height, width = frames.shape
    hot = np.zeros((height, width), np.bool_)
    if n < min_frames:
        return hot
    bright = np.zeros((height, width), np.int32)
    for f in range(n):
        for r in range(height):
            for c in range(width):
                bright[r, c] += frames[f, r, c] > threshold
    for r in range(height):
        for c in range(width):
            hot[r, c] = bright[r, c] >= min_fraction * n
    return hot


@numba.njit(**_JIT)
def spot_pixels(
    frames: np.ndarray, hot: np.ndarray, threshold: np.float32, min_neighbours: int, lone: np.ndarray
) -> None:
    """:class:`~hitbench.preprocess.SpotPixels` after :class:`~hitbench.preprocess.HotPixelMask`, in place (1/0).

    A pixel is lit above ``threshold`` (hot pixels never); kept with ``min_neighbours`` lit neighbours of 8,
    or alone above its frame's ``lone`` level. One pass zeroes each frame and lists its lit pixels; the
    second looks at those only.
    """
    n, height, width = frames.shape
    lit = np.zeros((height + 2, width + 2), np.uint8)
    where = np.empty(height * width, np.int64)
    values = np.empty(height * width, np.float32)
    for f in range(n):
        frame = frames[f]
        m = 0
        for r in range(height):
            for c in range(width):
                v = frame[r, c]
                frame[r, c] = 0
                if v > threshold and not hot[r, c]:
                    lit[r + 1, c + 1] = 1
                    where[m] = r * width + c
                    values[m] = v
                    m += 1
        for i in range(m):
            r, c = where[i] // width, where[i] % width
            around = (lit[r, c] + lit[r, c + 1] + lit[r, c + 2] + lit[r + 1, c] + lit[r + 1, c + 2]) + (
                lit[r + 2, c] + lit[r + 2, c + 1] + lit[r + 2, c + 2]
            )
            if around >= min_neighbours or values[i] > lone[f]:
                frame[r, c] = 1
        for i in range(m):
            lit[where[i] // width + 1, where[i] % width + 1] = 0
