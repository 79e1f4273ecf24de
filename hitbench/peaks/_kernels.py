"""The compiled peakfinder8 kernel (numba): one frame from pixels to peaks in one call.

Imported lazily by :mod:`hitbench.peaks.peakfinder`, so importing hitbench never imports numba. The kernel does
what the module docstring of :mod:`hitbench.peaks.peakfinder` describes with the floating-point operations of
the numpy/scipy finder it replaced (float64 throughout, per-peak sums pixel by pixel in row-major order). Two
sums are added in another order: the per-bin sums of all pixels (four partial sums) and the local-background
sums (pixel by pixel; numpy added them pairwise). On frames of whole ADU every one of these sums is exact, so
the peaks are the same to the bit; on other frames they differ by float64 rounding.
"""

from __future__ import annotations

import numba
import numpy as np

_NO_THRESHOLD = 1e9  # the threshold of a radius bin without good pixels (peakfinder8's value)


@numba.njit(cache=True, nogil=True)
def _root(parent: np.ndarray, i: int) -> int:
    """Root of ``i`` in the union-find forest, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def _link(parent: np.ndarray, i: int, j: int) -> None:
    """Join the groups of ``i`` and ``j``; the root is the group's first pixel (the smaller index)."""
    a = _root(parent, i)
    b = _root(parent, j)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


@numba.njit(cache=True, nogil=True)
def _bright_pixels(data, bins, n_bins, adc_threshold):
    """Per-bin sums of every pixel and of its square, and the good pixels at or above ``adc_threshold``.

    Four pixels at a time into four partial sums per bin (neighbouring pixels mostly share a bin, and one sum
    would wait on the previous addition): the same sums as pixel by pixel on frames of whole ADU.
    """
    length = n_bins + 1
    partial = np.zeros((8, length))
    n_pixels = data.shape[0]
    bright = np.empty(n_pixels, dtype=np.int32)  # never filled whole: its untouched pages cost nothing
    n_bright = 0
    p = 0
    while p + 4 <= n_pixels:
        v0 = np.float64(data[p])
        v1 = np.float64(data[p + 1])
        v2 = np.float64(data[p + 2])
        v3 = np.float64(data[p + 3])
        b0 = bins[p]
        b1 = bins[p + 1]
        b2 = bins[p + 2]
        b3 = bins[p + 3]
        partial[0, b0] += v0
        partial[1, b0] += v0 * v0
        partial[2, b1] += v1
        partial[3, b1] += v1 * v1
        partial[4, b2] += v2
        partial[5, b2] += v2 * v2
        partial[6, b3] += v3
        partial[7, b3] += v3 * v3
        if max(max(v0, v1), max(v2, v3)) >= adc_threshold:
            for q in range(p, p + 4):
                if np.float64(data[q]) >= adc_threshold and bins[q] < n_bins:
                    bright[n_bright] = q
                    n_bright += 1
        p += 4
    for q in range(p, n_pixels):
        value = np.float64(data[q])
        partial[0, bins[q]] += value
        partial[1, bins[q]] += value * value
        if value >= adc_threshold and bins[q] < n_bins:
            bright[n_bright] = q
            n_bright += 1
    sum1 = (partial[0] + partial[2]) + (partial[4] + partial[6])
    sum2 = (partial[1] + partial[3]) + (partial[5] + partial[7])
    return sum1, sum2, bright[:n_bright]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _radial_threshold(data, bins, n_bins, good_count, bright, adc_threshold, min_snr, n_iterations, sum1, sum2):
    """Iterated per-bin threshold and offset (mean of the pixels below the threshold).

    The first pass takes a bin's pixels below ``adc_threshold``, or every pixel of a bin whose background lies above
    it (at least half of its good pixels at or above ``adc_threshold``), as peakfinder8's first pass does.
    """
    length = n_bins + 1
    threshold = np.full(length, adc_threshold)
    bright_count = np.zeros(length)
    for k in range(bright.shape[0]):
        bright_count[bins[bright[k]]] += 1.0
    for b in range(length):
        if 2.0 * bright_count[b] >= good_count[b]:
            threshold[b] = _NO_THRESHOLD
    offset = np.zeros(length)
    out_count = np.empty(length)
    out_sum1 = np.empty(length)
    out_sum2 = np.empty(length)
    for _ in range(n_iterations):
        out_count[:] = 0.0
        out_sum1[:] = 0.0
        out_sum2[:] = 0.0
        for k in range(bright.shape[0]):
            p = bright[k]
            b = bins[p]
            value = np.float64(data[p])
            if value >= threshold[b]:
                out_count[b] += 1.0
                out_sum1[b] += value
                out_sum2[b] += value * value
        for b in range(length):
            count = good_count[b] - out_count[b]
            if count <= 0:
                threshold[b] = _NO_THRESHOLD
                offset[b] = 0.0
                continue
            mean = (sum1[b] - out_sum1[b]) / count
            sigma = np.sqrt(max((sum2[b] - out_sum2[b]) / count - mean * mean, 0.0))
            threshold[b] = max(mean + min_snr * sigma, adc_threshold)
            offset[b] = mean
    return threshold, offset


@numba.njit(cache=True, nogil=True)
def _groups(pix, width, panels, use_panels):
    """8-connected groups of the sorted flat pixel indices ``pix``: the group of every pixel (numbered in
    row-major order of their first pixel) and the number of groups. Neighbours on two panels are not linked."""
    n = pix.shape[0]
    parent = np.arange(n)
    above = 0  # first candidate that can touch the row above the current pixel
    for i in range(n):
        p = pix[i]
        col = p % width
        if i > 0 and pix[i - 1] == p - 1 and col > 0 and (not use_panels or panels[p] == panels[p - 1]):
            _link(parent, i, i - 1)
        low = p - width - 1 if col > 0 else p - width
        high = p - width + 1 if col < width - 1 else p - width
        while pix[above] < low:
            above += 1
        k = above
        while k < i and pix[k] <= high:
            if not use_panels or panels[p] == panels[pix[k]]:
                _link(parent, i, k)
            k += 1
    label = np.empty(n, dtype=np.int64)
    n_groups = 0
    for i in range(n):
        r = _root(parent, i)
        if r == i:
            label[i] = n_groups
            n_groups += 1
        else:
            label[i] = label[r]
    return label, n_groups


@numba.njit(cache=True, nogil=True, error_model="numpy")
def find_peaks(
    data,
    bins,
    n_bins,
    good_count,
    panels,
    use_panels,
    width,
    ring_dy,
    ring_dx,
    adc_threshold,
    min_snr,
    n_iterations,
    min_pixel_count,
    max_pixel_count,
    max_num_peaks,
):
    """The peaks of one flattened float32 frame.

    Parameters
    ----------
    data : numpy.ndarray, shape (H*W,), float32
        The frame.
    bins : numpy.ndarray, shape (H*W,), int16 or int32
        Radius bin of every pixel; bad pixels (masked or outside the resolution range) are in bin ``n_bins``.
    n_bins : int
        Number of radius bins.
    good_count : numpy.ndarray, shape (n_bins + 1,), float64
        Pixels per bin.
    panels : numpy.ndarray, shape (H*W,), int32
        Panel of every pixel (read only when ``use_panels``).
    use_panels : bool
        Keep every peak and its local background on one panel.
    width : int
        Frame width.
    ring_dy, ring_dx : numpy.ndarray, int64
        Offsets of the local-background annulus.
    adc_threshold, min_snr : float
        As :class:`hitbench.peaks.PeakFinder8`.
    n_iterations, min_pixel_count, max_pixel_count, max_num_peaks : int
        As :class:`hitbench.peaks.PeakFinder8`.

    Returns
    -------
    x, y, intensity, snr : numpy.ndarray, float64
        The accepted peaks, at most ``max_num_peaks``, in row-major order of their first pixel.
    npix : numpy.ndarray, int64
        Pixels above threshold of every peak.
    """
    height = data.shape[0] // width
    sum1, sum2, bright = _bright_pixels(data, bins, n_bins, adc_threshold)
    threshold, offset = _radial_threshold(
        data, bins, n_bins, good_count, bright, adc_threshold, min_snr, n_iterations, sum1, sum2
    )
    n_pix = 0
    for k in range(bright.shape[0]):
        p = bright[k]
        if np.float64(data[p]) > threshold[bins[p]]:
            bright[n_pix] = p
            n_pix += 1
    pix = bright[:n_pix]
    label, n_groups = _groups(pix, width, panels, use_panels)

    npix = np.zeros(n_groups, dtype=np.int64)
    w_sum = np.zeros(n_groups)
    w_col = np.zeros(n_groups)
    w_row = np.zeros(n_groups)
    v_sum = np.zeros(n_groups)
    v_col = np.zeros(n_groups)
    v_row = np.zeros(n_groups)
    col_sum = np.zeros(n_groups)
    row_sum = np.zeros(n_groups)
    for i in range(n_pix):
        g = label[i]
        p = pix[i]
        row = p // width
        col = p - row * width
        value = np.float64(data[p])
        weight = value - offset[bins[p]]
        npix[g] += 1
        w_sum[g] += weight
        w_col[g] += weight * col
        w_row[g] += weight * row
        v_sum[g] += value
        v_col[g] += value * col
        v_row[g] += value * row
        col_sum[g] += col
        row_sum[g] += row

    x = np.empty(min(n_groups, max_num_peaks))
    y = np.empty_like(x)
    intensity = np.empty_like(x)
    snr = np.empty_like(x)
    n_peak_pix = np.empty(x.shape[0], dtype=np.int64)
    n_peaks = 0
    for g in range(n_groups):
        if n_peaks == max_num_peaks:
            break
        if npix[g] < min_pixel_count or npix[g] > max_pixel_count:
            continue
        # The centroid weighted by pixel - radial offset locates the background annulus.
        norm = abs(w_sum[g])
        cx = int(np.rint(w_col[g] / norm))
        cy = int(np.rint(w_row[g] / norm))
        centre = cy * width + cx
        n_bg = 0
        s1 = 0.0
        s2 = 0.0
        for k in range(ring_dy.shape[0]):
            ry = cy + ring_dy[k]
            rx = cx + ring_dx[k]
            if ry < 0 or ry >= height or rx < 0 or rx >= width:
                continue
            q = ry * width + rx
            b = bins[q]
            value = np.float64(data[q])
            if b >= n_bins or not value < threshold[b]:
                continue
            if use_panels and panels[q] != panels[centre]:
                continue
            n_bg += 1
            s1 += value
            s2 += value * value
        if n_bg == 0:  # no background pixels: the radial offset and a token sigma, as peakfinder8 does
            local_offset = offset[bins[centre]]
            local_sigma = 0.01
        else:
            local_offset = s1 / n_bg
            local_sigma = np.sqrt(max(s2 / n_bg - local_offset * local_offset, 0.0))
        total = v_sum[g] - npix[g] * local_offset
        ratio = total / local_sigma
        if not (ratio >= min_snr and total != 0):
            continue
        x[n_peaks] = (v_col[g] - local_offset * col_sum[g]) / abs(total)
        y[n_peaks] = (v_row[g] - local_offset * row_sum[g]) / abs(total)
        intensity[n_peaks] = total
        snr[n_peaks] = ratio
        n_peak_pix[n_peaks] = npix[g]
        n_peaks += 1
    return x[:n_peaks], y[:n_peaks], intensity[:n_peaks], snr[:n_peaks], n_peak_pix[:n_peaks]
