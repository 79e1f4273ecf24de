"""The training step of a row batch normalisation followed by max pooling, as compiled passes (numba).

Imported lazily by :mod:`hitbench.methods.cnn_layers` (it imports numba). The activations
``y`` are (n, rows, columns, channels), float32, C order; the pooling is ``pool`` x ``pool`` with
stride ``pool`` and no padding (the last rows and columns that fill no window are not pooled, but
their rows are normalised and counted in the statistics, as Keras does). Every kernel releases the
GIL and works on the share of the rows or frames given by a start and a stop, so several threads
can share one pass; each value is summed by one thread in a fixed order, so the results do not
depend on the number of threads.

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


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def row_moments(y: np.ndarray, start: int, stop: int, total: np.ndarray, squares: np.ndarray) -> None:
    """``total[r]``, ``squares[r]``: the sum and the sum of squares (float64) of rows ``start:stop`` of
    ``y`` (n, rows, columns x channels) over the frames, columns and channels."""
    for r in range(start, stop):
        s = 0.0
        q = 0.0
        for i in range(y.shape[0]):
            row = y[i, r]
            for c in range(row.size):
                v = np.float64(row[c])
                s += v
                q += v * v
        total[r] = s
        squares[r] = q


@numba.njit(cache=True, nogil=True)
def normalise_pool(
    y: np.ndarray,
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
    for i in range(start, stop):
        for p in range(pooled_rows):
            for dr in range(pool):  # each (column, channel): the maximum over the window's rows, and its row
                r = pool * p + dr
                m, s, b = mean[r], scale[r], beta[r]
                row = y[i, r].reshape(-1)
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
    grad: np.ndarray, where: np.ndarray, y: np.ndarray, mean: np.ndarray, total: np.ndarray, centred: np.ndarray
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
                    g = np.float64(grad[i, p, q, k])
                    total[r] += g
                    centred[r] += g * (np.float64(y[i, r, c, k]) - mean[r])


@numba.njit(cache=True, nogil=True)
def input_gradient(
    y: np.ndarray,
    grad: np.ndarray,
    where: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    slope: np.ndarray,
    offset: np.ndarray,
    start: int,
    stop: int,
    out: np.ndarray,
) -> None:
    """Frames ``start:stop`` of ``out`` (as ``y``): ``-((y - mean_r) * slope_r + offset_r)``, plus
    ``scale_r * grad`` at each window's maximum."""
    columns = y.shape[2]
    for i in range(start, stop):
        for r in range(y.shape[1]):
            row, dst = y[i, r].reshape(-1), out[i, r].reshape(-1)
            m, sl, of = mean[r], slope[r], offset[r]
            for v in range(row.size):
                dst[v] = -((row[v] - m) * sl + of)
        for p in range(grad.shape[1]):
            for q in range(grad.shape[2]):
                for k in range(grad.shape[3]):
                    r, c = divmod(where[i, p, q, k], columns)
                    out[i, r, c, k] += scale[r] * grad[i, p, q, k]
