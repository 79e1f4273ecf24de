"""The trained Table I network at inference as one compiled pass per frame (numba), and its input at training.

Imported lazily by :mod:`hitbench.methods.cnn` (it imports numba). Each frame is normalised into
a scratch frame, then the first stage runs one pooling window at a time: the 7x7 convolution of
5 output rows (4 channels), the batch-norm scale and shift of each row, the max over the 5 rows
and over each 5 columns, the ReLU; the 344 x 344 x 4 map never exists. The second stage works the
same way on the 68 x 68 x 4 pooled map, then the dense layers and the softmax.

The loops are written for LLVM to vectorise: the innermost loop runs along the 5 rows of a
pooling window as one run of positions, with the weights of one kernel row of the 4 filters in
registers; ``fastmath={"contract"}`` lets it fuse each multiply and add into one FMA (one
rounding instead of two; nothing is reordered). The dense layers sum in float64. The network
has 4 filters in each convolution (Table I); the kernel assumes it.
"""

from __future__ import annotations

import numba
import numpy as np

_CONTRACT = {"contract"}
# log(x) = k log(2) + log(m), m in [sqrt(1/2), sqrt(2)): the Cephes single-precision logarithm
_SQRT_HALF_BITS = np.int32(0x3F3504F3)
_MANTISSA = np.int32(0x007FFFFF)
_EXPONENT_SHIFT = np.int32(23)
_EXPONENT_BITS = np.int32(0x7F800000)
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
def _normalise(frame: np.ndarray, out: np.ndarray, log1p: bool) -> bool:
    """``out = log(1 + max(frame, 0))`` (or ``max(frame, 0)``), float32; whether a pixel is NaN or Inf.

    The logarithm is Cephes's single-precision one (within 2 ulp of ``numpy.log``), in one
    vectorised loop: ``1 + max(x, 0)`` is stored, its exponent and mantissa read back from its
    bits (the store and load through the two views fold into register operations), then the
    polynomial. A pixel is NaN or Inf when its exponent bits are all set (the largest of them,
    an integer maximum, vectorises).
    """
    pixels, flat = frame.reshape(-1), out.reshape(-1)
    pixel_bits = pixels.view(np.int32)
    exponents = np.int32(0)
    if not log1p:
        for c in range(flat.size):
            flat[c] = max(pixels[c], np.float32(0.0))
            exponents = max(exponents, np.int32(pixel_bits[c] & _EXPONENT_BITS))
        return exponents == _EXPONENT_BITS
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = _LOG_POLY
    bits = flat.view(np.int32)
    for c in range(flat.size):
        exponents = max(exponents, np.int32(pixel_bits[c] & _EXPONENT_BITS))
        flat[c] = max(pixels[c], np.float32(0.0)) + np.float32(1.0)
        shifted = np.int32(bits[c] - _SQRT_HALF_BITS)
        exponent = np.float32(np.int32(shifted >> _EXPONENT_SHIFT))
        bits[c] = np.int32(np.int32(shifted & _MANTISSA) + _SQRT_HALF_BITS)
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
        y = y * x * z + _LN2_LO * exponent - np.float32(0.5) * z
        flat[c] = x + y + _LN2_HI * exponent
    return exponents == _EXPONENT_BITS


@numba.njit(cache=True, nogil=True, fastmath=_CONTRACT)
def standardise(frames: np.ndarray, log1p: bool, mean: float, std: float, out: np.ndarray) -> None:
    """The network's input at training: ``out[f] = (log(1 + max(frames[f], 0)) - mean) / std`` (or without the
    logarithm), float32, frame by frame (:func:`_normalise`'s logarithm, then the standardisation)."""
    shift, spread = np.float32(mean), np.float32(std)
    for f in range(frames.shape[0]):
        _normalise(frames[f], out[f], log1p)
        flat = out[f].reshape(-1)
        for c in range(flat.size):
            flat[c] = (flat[c] - shift) / spread


@numba.njit(cache=True, nogil=True, fastmath=_CONTRACT)
def _conv_rows(src: np.ndarray, kernel: np.ndarray, bias: np.ndarray, first: int, acc: np.ndarray) -> None:
    """``acc[k, q] = bias[k] + conv7(src)[k]`` at the flat position ``first + q`` of an input channel, ``q`` < acc's.

    A flat position ``r W + c`` (W the input's width) is the output at row r and column c; a run
    of positions covers several rows in one pass (the positions whose 7 columns wrap into the
    next row are computed and never used). Each pass along the positions takes one input channel
    and kernel row: each input value is loaded once for the 4 filters, whose 28 weights stay in
    registers, and each sum is a chain of FMAs.
    """
    width = src.shape[2]
    a0_, a1_, a2_, a3_ = acc[0], acc[1], acc[2], acc[3]
    for k in range(4):
        acc[k] = bias[k]
    for ci in range(src.shape[0]):
        plane = src[ci].reshape(-1)
        for i in range(7):
            x = plane[first + i * width :]
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
) -> None:
    """One stage: ``out[k] = relu(maxpool5(scale[r] * conv7(src)[k, r] + shift[r]))``.

    ``src`` (channels_in, H, W), ``kernel`` (7, 7, channels_in, 4) as Keras holds it, ``out``
    (4, (H - 6) // 5, (W - 6) // 5). The 5 convolved rows of one pooling window are computed in
    one run of flat positions: 4 whole rows and the columns the window pools of the fifth (the
    last (W - 6) % 5 columns are never pooled), so no position reads beyond the input.
    """
    width = src.shape[2]
    out_rows, out_cols = out.shape[1], out.shape[2]
    pooled_width = 5 * out_cols
    acc = np.empty((4, 4 * width + pooled_width), np.float32)
    window = np.empty(pooled_width, np.float32)
    for pr in range(out_rows):
        _conv_rows(src, kernel, bias, 5 * pr * width, acc)
        for k in range(4):
            for rr in range(5):
                s, t = scale[5 * pr + rr], shift[5 * pr + rr]
                row = acc[k, rr * width : rr * width + pooled_width]
                if rr == 0:
                    for c in range(pooled_width):
                        window[c] = s * row[c] + t
                else:
                    for c in range(pooled_width):
                        window[c] = max(window[c], s * row[c] + t)
            pooled = out[k, pr]
            for pc in range(out_cols):
                m = np.float32(0.0)  # the ReLU, after the pooling
                for q in range(5 * pc, 5 * pc + 5):
                    m = max(m, window[q])
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
    nonfinite: np.ndarray,
) -> None:
    """P(hit) of each frame into ``out`` (float32), and into ``nonfinite`` whether it holds a NaN or Inf pixel.

    The weights are those of :func:`hitbench.methods.cnn_network.inference_weights`, ``log1p``
    the normalisation (else linear). The score of a frame with a NaN or Inf pixel is meaningless.
    """
    n, height, width = frames.shape
    p1 = np.empty((4, (height - 6) // 5, (width - 6) // 5), np.float32)
    p2 = np.empty((4, (p1.shape[1] - 6) // 5, (p1.shape[2] - 6) // 5), np.float32)
    scratch = np.empty((1, height, width), np.float32)
    hidden = np.empty(w3.shape[1], np.float64)
    for f in range(n):
        nonfinite[f] = _normalise(frames[f], scratch[0], log1p)
        _conv_pool_relu(scratch, k1, b1, s1, t1, p1)
        _conv_pool_relu(p1, k2, b2, s2, t2, p2)
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
