"""The trained Table I network at inference as one compiled pass per frame (numba).

Imported lazily by :mod:`hitbench.methods.cnn` (it imports numba). Each frame is normalised into
a scratch frame, then the first stage runs row by row: the 7x7 convolution of one output row
(4 channels), its batch-norm scale and shift (one per row), the column max of each 5 columns and
the running max over 5 rows; the 344 x 344 x 4 map never exists. The second stage works the
same way on the 68 x 68 x 4 pooled map, then the dense layers and the softmax.

The loops are written for LLVM to vectorise: the innermost loop runs along the columns of a
row, with the weights of one kernel row of the 4 filters in registers; ``fastmath={"contract"}``
lets it fuse each multiply and add into one FMA (one rounding instead of two; nothing is
reordered). The network has 4 filters in each convolution (Table I); the kernel assumes it.
"""

from __future__ import annotations

import numba
import numpy as np

_CONTRACT = {"contract"}
#: float32 values in one vector register as LLVM vectorises these loops here (256-bit, AVX2 width)
_VECTOR = 8
# log(x) = k log(2) + log(m), m in [sqrt(1/2), sqrt(2)): the Cephes single-precision logarithm
_SQRT_HALF_BITS = np.int32(0x3F3504F3)
_MANTISSA = np.int32(0x007FFFFF)
_EXPONENT_SHIFT = np.int32(23)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_LOG_POLY = tuple(
    np.float32(c)
    for c in (
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    )
)


@numba.njit(cache=True, nogil=True, fastmath=_CONTRACT)
def _normalise(frame: np.ndarray, out: np.ndarray, log1p: bool, exponent: np.ndarray) -> None:
    """``out = log(1 + max(frame, 0))`` (or ``max(frame, 0)``), float32; ``exponent`` a scratch of the frame's size.

    The logarithm is Cephes's single-precision one (within 2 ulp of ``numpy.log``), in three
    vectorised passes: ``1 + max(x, 0)``; its exponent and mantissa from its bits; the polynomial.
    """
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = _LOG_POLY
    pixels, flat = frame.reshape(-1), out.reshape(-1)
    for c in range(flat.size):
        flat[c] = max(pixels[c], np.float32(0.0)) + np.float32(log1p)
    if not log1p:
        return
    bits = flat.view(np.int32)
    for c in range(flat.size):
        shifted = np.int32(bits[c] - _SQRT_HALF_BITS)
        exponent[c] = np.float32(np.int32(shifted >> _EXPONENT_SHIFT))
        bits[c] = np.int32(np.int32(shifted & _MANTISSA) + _SQRT_HALF_BITS)
    for c in range(flat.size):
        x = flat[c] - np.float32(1.0)
        z = x * x
        y = p0 * x + p1
        y = y * x + p2
        y = y * x + p3
        y = y * x + p4
        y = y * x + p5
        y = y * x + p6
        y = y * x + p7
        y = y * x + p8
        y = y * x * z + _LN2_LO * exponent[c] - np.float32(0.5) * z
        flat[c] = x + y + _LN2_HI * exponent[c]


@numba.njit(cache=True, nogil=True)
def _whole_vectors(n: int) -> int:
    """``n`` rounded up to a whole number of vectors of :data:`_VECTOR` float32."""
    return -(-n // _VECTOR) * _VECTOR


@numba.njit(cache=True, nogil=True, fastmath=_CONTRACT)
def _conv_row(src: np.ndarray, kernel: np.ndarray, bias: np.ndarray, r: int, acc: np.ndarray) -> None:
    """``acc[k, c] = bias[k] + conv7(src)[k, r, c]`` for the 4 filters and the columns of ``acc``.

    One pass along the row per input channel and kernel row: each input value is loaded once for
    the 4 filters, whose 28 weights stay in registers, and each sum is a chain of FMAs.
    """
    a0_, a1_, a2_, a3_ = acc[0], acc[1], acc[2], acc[3]
    for k in range(4):
        acc[k] = bias[k]
    for ci in range(src.shape[0]):
        for i in range(7):
            x = src[ci, r + i]
            u0, u1, u2, u3, u4, u5, u6 = kernel[i, :, ci, 0]
            v0, v1, v2, v3, v4, v5, v6 = kernel[i, :, ci, 1]
            w0, w1, w2, w3, w4, w5, w6 = kernel[i, :, ci, 2]
            y0, y1, y2, y3, y4, y5, y6 = kernel[i, :, ci, 3]
            for c in range(acc.shape[1]):
                x0, x1, x2, x3, x4, x5, x6 = x[c], x[c + 1], x[c + 2], x[c + 3], x[c + 4], x[c + 5], x[c + 6]
                a0, a1, a2, a3 = a0_[c], a1_[c], a2_[c], a3_[c]
                a0 += u0 * x0
                a1 += v0 * x0
                a2 += w0 * x0
                a3 += y0 * x0
                a0 += u1 * x1
                a1 += v1 * x1
                a2 += w1 * x1
                a3 += y1 * x1
                a0 += u2 * x2
                a1 += v2 * x2
                a2 += w2 * x2
                a3 += y2 * x2
                a0 += u3 * x3
                a1 += v3 * x3
                a2 += w3 * x3
                a3 += y3 * x3
                a0 += u4 * x4
                a1 += v4 * x4
                a2 += w4 * x4
                a3 += y4 * x4
                a0 += u5 * x5
                a1 += v5 * x5
                a2 += w5 * x5
                a3 += y5 * x5
                a0 += u6 * x6
                a1 += v6 * x6
                a2 += w6 * x6
                a3 += y6 * x6
                a0_[c], a1_[c], a2_[c], a3_[c] = a0, a1, a2, a3


@numba.njit(cache=True, nogil=True, fastmath=_CONTRACT)
def _conv_pool_relu(
    src: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    out: np.ndarray,
    rows: np.ndarray,
) -> None:
    """One stage: ``out[k] = relu(maxpool5(scale[r] * conv7(src)[k, r] + shift[r]))``.

    ``src`` (channels_in, H, W), ``kernel`` (7, 7, channels_in, 4) as Keras holds it, ``out``
    (4, H', W') with H' = (H - 6) // 5 and W' = (W - 6) // 5; ``rows`` a (2, 4, w) scratch, w at
    least 5 W' and at most W - 6 columns: one convolved row, and the running maximum of the
    scaled rows of a pooling window (its first 5 W' columns are pooled; the last (W - 6) % 5
    columns of a convolved row never are).
    """
    out_rows, out_cols = out.shape[1], out.shape[2]
    width = rows.shape[2]
    acc, window = rows[0], rows[1]
    for pr in range(out_rows):
        for rr in range(5):
            r = 5 * pr + rr
            _conv_row(src, kernel, bias, r, acc)
            s, t = scale[r], shift[r]
            for k in range(4):
                scaled, kept = acc[k], window[k]
                if rr == 0:
                    for c in range(width):
                        kept[c] = s * scaled[c] + t
                else:
                    for c in range(width):
                        kept[c] = max(kept[c], s * scaled[c] + t)
        for k in range(4):
            kept, pooled = window[k], out[k, pr]
            for pc in range(out_cols):
                m = np.float32(0.0)  # the ReLU, after the pooling
                for q in range(5 * pc, 5 * pc + 5):
                    m = max(m, kept[q])
                pooled[pc] = m


@numba.njit(cache=True, nogil=True, fastmath=_CONTRACT)
def score_frames(
    frames: np.ndarray,
    log1p: bool,
    k1: np.ndarray,
    b1: np.ndarray,
    s1: np.ndarray,
    t1: np.ndarray,
    k2: np.ndarray,
    b2: np.ndarray,
    s2: np.ndarray,
    t2: np.ndarray,
    w3: np.ndarray,
    b3: np.ndarray,
    w4: np.ndarray,
    b4: np.ndarray,
    out: np.ndarray,
) -> None:
    """P(hit) of each frame into ``out`` (float32).

    The weights are those of :func:`hitbench.methods.cnn_network.inference_weights`, ``log1p``
    the normalisation (else linear).
    """
    n, height, width = frames.shape
    cols1 = (width - 6) // 5
    cols2 = (cols1 - 6) // 5
    # convolved rows a whole number of vectors wide where the input allows (no scalar remainder);
    # the pooled map is padded with zero columns for the second stage's
    rows1 = np.empty((2, 4, min(_whole_vectors(5 * cols1), width - 6)), np.float32)
    rows2 = np.empty((2, 4, _whole_vectors(5 * cols2)), np.float32)
    p1 = np.zeros((4, (height - 6) // 5, max(cols1, rows2.shape[2] + 6)), np.float32)
    p2 = np.empty((4, (p1.shape[1] - 6) // 5, cols2), np.float32)
    scratch = np.empty((1, height, width), np.float32)
    exponent = np.empty(height * width, np.float32)
    hidden = np.empty(w3.shape[1], np.float64)
    for f in range(n):
        _normalise(frames[f], scratch[0], log1p, exponent)
        _conv_pool_relu(scratch, k1, b1, s1, t1, p1[:, :, :cols1], rows1)
        _conv_pool_relu(p1, k2, b2, s2, t2, p2, rows2)
        hidden[:] = b3
        index = 0
        for h in range(p2.shape[1]):  # Keras flattens (h, w, c)
            for w in range(p2.shape[2]):
                for c in range(4):
                    v = np.float64(p2[c, h, w])
                    for j in range(hidden.size):
                        hidden[j] += v * w3[index, j]
                    index += 1
        logits = b4.astype(np.float64)
        for j in range(hidden.size):
            r = max(hidden[j], 0.0)
            for o in range(logits.size):
                logits[o] += r * w4[j, o]
        out[f] = np.float32(1.0 / (1.0 + np.exp(logits[0] - logits[1])))
