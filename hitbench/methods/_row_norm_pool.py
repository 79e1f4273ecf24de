"""The training step of a dropout, a row batch normalisation and a max pooling, as compiled passes (numba).

Imported lazily by :mod:`hitbench.methods.cnn_layers` (it imports numba). The activations
``y`` are (n, rows, columns, channels), float32, C order; the pooling is ``pool`` x ``pool`` with
stride ``pool`` and no padding (the last rows and columns that fill no window are not pooled, but
their rows are normalised and counted in the statistics, as Keras does). Every kernel releases the
GIL and works on the share of the rows or frames given by a start and a stop, so several threads
can share one pass; each value is summed by one thread in a fixed order, so the results do not
depend on the number of threads.

The dropout before the normalisation is applied where the activations are read: ``keep`` holds one
random byte per activation (uint8, the shape of ``y``), and the value the normalisation sees is
``y * factor`` where the byte is at least ``cut``, else 0 (``factor`` = 1 / (1 - rate), float32); the
activations' gradient is multiplied by the same. That is what :class:`hitbench.methods.cnn_layers.ByteDropout`
computes, to the bit, without writing the dropped activations or their gradient as arrays of their own. An
empty ``keep`` (shape (0, 0, 0, 0)) is no dropout.

- :func:`row_moments`: each row's sum and sum of squares, in float64.
- :func:`normalise_pool`: the pooled maximum of ``(y - mean_r) * scale_r + beta_r`` and where it is
  (the first maximum in row-major order, as TensorFlow's max pooling gradient takes it).
- :func:`pooled_sums`: each row's sums of the pooled gradient and of the pooled gradient times the
  centred activation at its maximum: the two sums the batch normalisation's gradient needs.
- :func:`input_gradient`: the gradient of the activations, ``scale_r * U - (centred * slope_r +
  offset_r)``, ``U`` the pooled gradient put back at the maxima.
"""

from __future__ import annotations

import numba
import numpy as np

#: No dropout: the ``keep`` of every kernel.
NO_DROPOUT = np.empty((0, 0, 0, 0), np.uint8)


@numba.njit(inline="always")
def _row(y: np.ndarray, keep: np.ndarray, cut: int, factor: np.float32, i: int, r: int, dropped: np.ndarray):
    """Row r of frame i of ``y`` as the normalisation sees it (columns x channels values): ``y``'s own row, or
    with the dropout, the row dropped into ``dropped``."""
    row = y[i, r].reshape(-1)
    if keep.shape[0] == 0:
        return row
    kept = keep[i, r].reshape(-1)
    for v in range(row.size):
        dropped[v] = row[v] * (factor if kept[v] >= cut else np.float32(0.0))
    return dropped


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def row_moments(
    y: np.ndarray,
    keep: np.ndarray,
    cut: int,
    factor: np.float32,
    start: int,
    stop: int,
    total: np.ndarray,
    squares: np.ndarray,
) -> None:
    """``total[r]``, ``squares[r]``: the sum and the sum of squares (float64) of rows ``start:stop`` of
    ``y`` over the frames, columns and channels."""
    dropped = np.empty(y.shape[2] * y.shape[3], np.float32)
    for r in range(start, stop):
        s = 0.0
        q = 0.0
        for i in range(y.shape[0]):
            row = _row(y, keep, cut, factor, i, r, dropped)
            for c in range(row.size):
                v = np.float64(row[c])
                s += v
                q += v * v
        total[r] = s
        squares[r] = q


@numba.njit(cache=True, nogil=True)
def normalise_pool(
    y: np.ndarray,
    keep: np.ndarray,
    cut: int,
    factor: np.float32,
    mean: np.ndarray,
    scale: np.ndarray,
    beta: np.ndarray,
    pool: int,
    start: int,
    stop: int,
    out: np.ndarray,
    where: np.ndarray,
) -> None:
    """Frames ``start:stop``: ``out[i, p, q, k]``, the maximum of ``(y - mean_r) * scale_r + beta_r`` over
    pooling window (p, q) of channel k, and ``where``, the flat index ``r * columns + c`` of its first maximum."""
    columns, channels = y.shape[2], y.shape[3]
    pooled_rows, pooled_columns = out.shape[1], out.shape[2]
    width = pool * pooled_columns * channels
    best = np.empty(width, np.float32)
    best_row = np.empty(width, np.int32)
    dropped = np.empty(columns * channels, np.float32)
    for i in range(start, stop):
        for p in range(pooled_rows):
            for dr in range(pool):  # each (column, channel): the maximum over the window's rows, and its row
                r = pool * p + dr
                m, s, b = mean[r], scale[r], beta[r]
                row = _row(y, keep, cut, factor, i, r, dropped)
                if dr == 0:
                    for v in range(width):
                        best[v] = (row[v] - m) * s + b
                        best_row[v] = r
                else:  # selects, not branches: one vectorised loop whatever the data
                    for v in range(width):
                        z = (row[v] - m) * s + b
                        greater = z > best[v]
                        best[v] = z if greater else best[v]
                        best_row[v] = r if greater else best_row[v]
            for q in range(pooled_columns):  # then over the window's columns: the smaller row first, then column
                for k in range(channels):
                    v = pool * q * channels + k
                    value, at_row, at_column = best[v], best_row[v], pool * q
                    for dc in range(1, pool):
                        z, z_row = best[v + dc * channels], best_row[v + dc * channels]
                        if z > value or (z == value and z_row < at_row):
                            value, at_row, at_column = z, z_row, pool * q + dc
                    out[i, p, q, k] = value
                    where[i, p, q, k] = at_row * columns + at_column


@numba.njit(cache=True, nogil=True)
def pooled_sums(
    grad: np.ndarray,
    where: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    cut: int,
    factor: np.float32,
    mean: np.ndarray,
    total: np.ndarray,
    centred: np.ndarray,
) -> None:
    """``total[r]``: the sum of the pooled gradient ``grad`` whose maximum lies in row r; ``centred[r]``: the sum
    of the same times ``y - mean_r`` at the maximum (float64, frame by frame in order)."""
    columns = y.shape[2]
    total[:] = 0.0
    centred[:] = 0.0
    for i in range(grad.shape[0]):
        for p in range(grad.shape[1]):
            for q in range(grad.shape[2]):
                for k in range(grad.shape[3]):
                    r, c = divmod(where[i, p, q, k], columns)
                    value = y[i, r, c, k]
                    if keep.shape[0] != 0:
                        value *= factor if keep[i, r, c, k] >= cut else np.float32(0.0)
                    g = np.float64(grad[i, p, q, k])
                    total[r] += g
                    centred[r] += g * (np.float64(value) - mean[r])


@numba.njit(cache=True, nogil=True)
def input_gradient(
    y: np.ndarray,
    keep: np.ndarray,
    cut: int,
    factor: np.float32,
    grad: np.ndarray,
    where: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    slope: np.ndarray,
    offset: np.ndarray,
    pool: int,
    start: int,
    stop: int,
    out: np.ndarray,
) -> None:
    """Frames ``start:stop`` of ``out`` (as ``y``): ``-((y - mean_r) * slope_r + offset_r)``, plus
    ``scale_r * grad`` at each window's maximum, times the dropout's factor or 0. One band of ``pool`` rows at a
    time (the rows of one row of windows, then the rows no window covers), so each is written, added to and
    multiplied while it is in the cache."""
    columns = y.shape[2]
    pooled_rows = grad.shape[1]
    dropped = np.empty(columns * y.shape[3], np.float32)
    for i in range(start, stop):
        for p in range(pooled_rows + 1):
            first, last = pool * p, (pool * p + pool if p < pooled_rows else y.shape[1])
            for r in range(first, last):
                row, dst = _row(y, keep, cut, factor, i, r, dropped), out[i, r].reshape(-1)
                m, sl, of = mean[r], slope[r], offset[r]
                for v in range(row.size):
                    dst[v] = -((row[v] - m) * sl + of)
            if p < pooled_rows:
                for q in range(grad.shape[2]):
                    for k in range(grad.shape[3]):
                        r, c = divmod(where[i, p, q, k], columns)
                        out[i, r, c, k] += scale[r] * grad[i, p, q, k]
            if keep.shape[0] != 0:
                for r in range(first, last):
                    dst, kept = out[i, r].reshape(-1), keep[i, r].reshape(-1)
                    for v in range(dst.size):
                        dst[v] *= factor if kept[v] >= cut else np.float32(0.0)
