"""Keras layers of the Table I network computed faster on the CPU: same function, same weights.

The network's first stage works on 344 x 344 x 4 activations per frame, and there Keras's own
layers cost more than anything else (measured on the 2-core development CPU, forward and
backward, batch 20, ms per frame: ``Conv2D`` 3.0, ``Dropout`` 2.5, ``BatchNormalization(axis=1)``
4.6; a training step of the whole network 4.8 with these layers, 7.8 with Keras's ``Conv2D`` and
the former versions of the two others):

- :class:`ColumnBlockConv2D` is ``Conv2D`` of a one-channel image (the first convolution) computed
  on blocks of :func:`column_block` output columns (8 on a CPU with AVX-512, 2 elsewhere): with blocks of 8
  the frame's columns are read as 8 channels (a free reshape), the 7x7 kernel becomes a 7x2 kernel from 8 to
  8 x 4 channels (gathered from the same 196 weights, zeros elsewhere), whose output is the Keras output once
  reshaped. It computes more products (twice with blocks of 8), but oneDNN runs 8-to-32-channel convolutions
  far faster than 1-to-4 ones (forward and kernel gradient 1.5 ms instead of 2.7; the bias is added on the
  blocks, where oneDNN fuses it into the convolution). Same kernel and bias arrays as ``Conv2D``; outputs
  equal to about 1e-6 (a different order of the sums). Frames whose output width is not a multiple
  of the block use Keras's convolution.
- :class:`RowBatchNormalization` is ``BatchNormalization(axis=1)`` (one mean and variance per image
  row, over the batch, the columns and the channels) whose training step sums each row as one
  contiguous run (the activations seen as (n, rows, columns x channels), no transposes) and whose
  gradient is written out (1.4 ms forward and backward, against 3.0 for TensorFlow's fused kernel
  with the rows moved last): identical weights (gamma, beta, moving mean and variance per row),
  epsilon, momentum and moving-average update (the batch variance is the biased one, computed
  about the batch mean, as Keras does), outputs equal to about 1e-6. Inference is Keras's own code.
  The network's layer until 2026-12-03 (``.keras`` archives saved then name it); now the base of:
- :class:`RowBatchNormMaxPooling` is :class:`RowBatchNormalization` followed by ``MaxPooling2D`` (pool
  size = strides, no padding) as one layer: each stage of the network uses it. Its training step is
  compiled (:mod:`hitbench.methods._row_norm_pool`, called through ``tf.numpy_function``, the GIL released,
  the frames or rows shared among the cores): forward, one pass for each row's sum and sum of squares
  and one that normalises and pools the rows of each window without storing the normalised map; backward,
  the normalisation's two sums taken at the windows' maxima only (the pooled gradient is zero elsewhere)
  and one pass that writes the activations' gradient. Outputs, gradients and moving statistics equal
  those of ``BatchNormalization(axis=1)`` then ``MaxPooling2D`` to about 1e-6 (the first maximum of a
  window takes its gradient, as TensorFlow's); inference is Keras's own code. Same weights as the batch
  normalisation (gamma, beta, moving mean and variance), so the network's weight list is unchanged.
  With ``dropout`` it is also the dropout before the normalisation (the first stage's, Table I's first
  ``Dropout``): the random bytes of :class:`ByteDropout` for the same seed, applied where the compiled
  passes read the activations and to the gradient they write, so neither the dropped map nor its mask is
  stored as an array of its own; outputs, gradients and statistics equal ``ByteDropout`` then the layer's to
  the bit. The network's ``dropout1`` layer until 2026-12-04.
- :class:`ByteDropout` is ``Dropout`` whose training mask spends 8 random bits per value (the four
  bytes of one full-range uint32 draw for four adjacent values of the last axis) instead of a
  float32 uniform, applied by one multiplication (1.1 ms forward and backward): each value is kept
  when its random byte is at least ``256 * rate``, an exact Bernoulli(1 - rate) draw when
  ``256 * rate`` is a whole number (0.25 -> 64); other rates, a last axis that is not a multiple
  of 4, and noise shapes use Keras's own dropout.

They are registered with Keras (package ``hitbench``) so saved models load with them (a model saved
with Keras's ``Conv2D`` as its first layer loads as it was). This module imports TensorFlow: import
it only through :func:`hitbench.methods.tf_runtime.keras`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from hitbench.parallel import cpu_info, on_frame_slices


def column_block() -> int:
    """Output columns per block of :class:`ColumnBlockConv2D` on this machine's CPU.

    oneDNN's fastest blocking differs with the vector width: on a 2-core Xeon with AVX-512, blocks of 8
    (forward and kernel gradient 1.5 ms a 350x350 frame against 2.7 unblocked); on a 2-core AMD EPYC with AVX2,
    blocks of 2 (1.57 ms forward and backward at batch 20, against 2.27 for blocks of 4, 2.83 for 8 and 2.84
    unblocked). The block changes only the order of the sums, not the function or the weights.

    Returns
    -------
    int
        8 where the CPU has AVX-512 (the ``avx512f`` flag of :func:`hitbench.parallel.cpu_info`), 2 elsewhere
        (also where ``/proc/cpuinfo`` cannot be read).
    """
    return 8 if "avx512f" in cpu_info()[1] else 2


@keras.saving.register_keras_serializable(package="hitbench")
class ColumnBlockConv2D(keras.layers.Conv2D):
    """``Conv2D`` of a one-channel image computed on blocks of :func:`column_block` output columns."""

    def call(self, inputs):
        kernel_height, kernel_width, channels_in, filters = self.kernel.shape
        height, width = inputs.shape[1:3]
        out_width = None if width is None else width - kernel_width + 1
        if (
            channels_in != 1
            or self.data_format != "channels_last"
            or self.padding != "valid"
            or tuple(self.strides) != (1, 1)
            or tuple(self.dilation_rate) != (1, 1)
            or self.groups != 1
            or out_width is None
            or out_width % column_block()
        ):
            return super().call(inputs)
        block = column_block()
        # block kernel [i, b, s, t * filters + f] = kernel[i, b * block + s - t, 0, f] (0 outside the kernel)
        kernel_blocks = -(-(block + kernel_width - 1) // block)
        b, s, t = np.meshgrid(np.arange(kernel_blocks), np.arange(block), np.arange(block), indexing="ij")
        column = b * block + s - t
        inside = (column >= 0) & (column < kernel_width)
        zero_tap = kernel_height * kernel_width  # the row of zeros appended to the kernel's taps
        taps = np.where(inside, np.arange(kernel_height)[:, None, None, None] * kernel_width + column, zero_tap)
        kernel_taps = tf.concat([tf.reshape(self.kernel, (zero_tap, filters)), tf.zeros((1, filters))], axis=0)
        block_kernel = tf.reshape(
            tf.gather(kernel_taps, taps.reshape(-1)), (kernel_height, kernel_blocks, block, block * filters)
        )
        in_width = (out_width // block + kernel_blocks - 1) * block
        blocks = tf.reshape(
            tf.pad(inputs, ((0, 0), (0, 0), (0, in_width - width), (0, 0))), (-1, height, in_width // block, block)
        )
        out = tf.nn.conv2d(blocks, tf.cast(block_kernel, blocks.dtype), 1, "VALID")
        if self.use_bias:  # on the blocks, where oneDNN fuses it into the convolution
            out = tf.nn.bias_add(out, tf.tile(tf.cast(self.bias, out.dtype), [block]))
        out = tf.reshape(out, (-1, height - kernel_height + 1, out_width, filters))
        return self.activation(out) if self.activation is not None else out


@keras.saving.register_keras_serializable(package="hitbench")
class RowBatchNormalization(keras.layers.BatchNormalization):
    """``BatchNormalization(axis=1)`` on (n, rows, columns, channels), trained with row sums and its own gradient."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.axis != 1 or len(inputs.shape) != 4:
            return super().call(inputs, training=training, mask=mask)
        normalised, mean, variance = _row_batch_norm(
            tf.cast(inputs, "float32"), tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"), self.epsilon
        )
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(normalised, self.compute_dtype)


def _row_batch_norm(inputs, gamma, beta, epsilon: float):
    """Batch normalisation over axis 1 of (n, rows, columns, channels): the output, the batch mean and the
    biased batch variance per row, with the gradient written out (a few passes over the activations)."""
    shape = tf.shape(inputs)
    rows = tf.reshape(inputs, (shape[0], shape[1], -1))  # row-contiguous: each row's values are one run
    count = tf.cast(tf.shape(rows)[0] * tf.shape(rows)[2], "float32")

    def row_sums(values):
        return tf.reduce_sum(tf.reduce_sum(values, axis=2), axis=0)

    @tf.custom_gradient
    def normalise(rows, gamma, beta):
        mean = row_sums(rows) / count
        centred = rows - mean[:, None]
        variance = row_sums(tf.square(centred)) / count
        inverse = tf.math.rsqrt(variance + epsilon)
        scale = gamma * inverse
        out = centred * scale[:, None] + beta[:, None]

        def gradient(upstream, _mean_upstream=None, _variance_upstream=None):
            upstream_sum = row_sums(upstream)
            centred_dot = row_sums(upstream * centred)
            # d(out)/d(rows): scale * (upstream - mean(upstream) - centred * inverse**2 * mean(upstream * centred))
            slope = scale * inverse * inverse * centred_dot / count
            offset = scale * upstream_sum / count
            grad_rows = upstream * scale[:, None] - (centred * slope[:, None] + offset[:, None])
            return grad_rows, centred_dot * inverse, upstream_sum

        return (out, tf.stop_gradient(mean), tf.stop_gradient(variance)), gradient

    out, mean, variance = normalise(rows, gamma, beta)
    return tf.reshape(out, shape), mean, variance


@keras.saving.register_keras_serializable(package="hitbench")
class RowBatchNormMaxPooling(RowBatchNormalization):
    """``Dropout(dropout)`` (optional), ``BatchNormalization(axis=1)`` then ``MaxPooling2D(pool_size)`` (stride
    ``pool_size``, no padding) as one layer, whose training step is compiled (:mod:`hitbench.methods._row_norm_pool`).

    The dropout draws the masks :class:`ByteDropout` draws (the same seed gives the same masks, to the bit) and is
    applied where the compiled passes read the activations.
    """

    def __init__(self, pool_size: int = 5, dropout: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout}: a rate in [0, 1)")
        self.pool_size = int(pool_size)
        self.dropout = float(dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.dropout > 0 else None
        self._gradient_buffers: dict[tuple[int, ...], np.ndarray] = {}

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_size": self.pool_size, "dropout": self.dropout, "seed": self.seed}

    def compute_output_shape(self, input_shape):
        n, height, width, channels = input_shape
        pooled = [None if size is None else size // self.pool_size for size in (height, width)]
        return (n, *pooled, channels)

    def call(self, inputs, training=None, mask=None):
        dropping = bool(training) and self.dropout > 0
        if (
            not (training and self.trainable)
            or mask is not None
            or self.axis != 1
            or len(inputs.shape) != 4
            or inputs.dtype != tf.float32
            or None in inputs.shape[1:]
        ):
            if dropping:
                inputs = _dropout(inputs, self.dropout, self.seed_generator)
            normalised = super().call(inputs, training=training, mask=mask)
            return keras.ops.max_pool(normalised, self.pool_size, strides=self.pool_size, padding="valid")
        cut = _byte_cut(self.dropout, inputs) if dropping else None
        if dropping and cut is None:  # a rate the byte masks cannot draw: Keras's dropout, then the passes
            inputs = keras.random.dropout(inputs, self.dropout, seed=self.seed_generator)
        keep = None if cut is None else _keep_bytes(inputs, self.seed_generator)
        pooled, mean, variance = self._normalise_pool(inputs, keep, cut or 0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return pooled

    def _normalise_pool(self, inputs, keep, cut: int):
        """The pooled output, the batch mean and the biased batch variance per row, with the gradient of the
        output (the activations' gradient from compiled passes, as in :func:`_row_batch_norm`); ``keep``: the
        dropout's random bytes (None: no dropout), kept where at least ``cut``."""
        pool, epsilon, buffers = self.pool_size, self.epsilon, self._gradient_buffers
        factor = np.float32(1.0 / (1.0 - self.dropout))
        pooled_shape = self.compute_output_shape(inputs.shape)
        gamma, beta = tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32")
        masks = [] if keep is None else [keep]

        def dropout(masks: tuple[np.ndarray, ...]) -> tuple[np.ndarray, int, np.float32]:
            return (masks[0], cut, factor) if masks else (_row_norm_pool().NO_DROPOUT, 0, np.float32(1.0))

        @tf.custom_gradient
        def normalise_pool(y, gamma, beta):
            pooled, where, mean, variance = tf.numpy_function(
                lambda y, gamma, beta, *masks: _normalise_pool_forward(y, dropout(masks), gamma, beta, pool, epsilon),
                [y, gamma, beta, *masks],
                [tf.float32, tf.int32, tf.float32, tf.float32],
                stateful=False,
            )
            pooled.set_shape(pooled_shape), where.set_shape(pooled_shape)
            mean.set_shape(gamma.shape), variance.set_shape(gamma.shape)

            def gradient(upstream, _mean_upstream=None, _variance_upstream=None):
                grad_y, grad_gamma, grad_beta = tf.numpy_function(
                    lambda upstream, where, y, mean, variance, gamma, *masks: _normalise_pool_backward(
                        upstream, where, y, dropout(masks), mean, variance, gamma, pool, epsilon, buffers
                    ),
                    [upstream, where, y, mean, variance, gamma, *masks],
                    [tf.float32, tf.float32, tf.float32],
                    stateful=False,
                )
                grad_y.set_shape(y.shape), grad_gamma.set_shape(gamma.shape), grad_beta.set_shape(gamma.shape)
                return grad_y, grad_gamma, grad_beta

            return (pooled, tf.stop_gradient(mean), tf.stop_gradient(variance)), gradient

        return normalise_pool(inputs, gamma, beta)


def _row_norm_pool():
    """The compiled passes' module (imported at first use: it imports numba)."""
    from hitbench.methods import _row_norm_pool

    return _row_norm_pool


def _scale(gamma: np.ndarray, variance: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """``1 / sqrt(variance + epsilon)`` and ``gamma`` times it, float32 as Keras computes them."""
    inverse = np.float32(1.0) / np.sqrt(variance + np.float32(epsilon))
    return inverse, (gamma * inverse).astype(np.float32)


def _normalise_pool_forward(
    y: np.ndarray,
    dropout: tuple[np.ndarray, int, np.float32],
    gamma: np.ndarray,
    beta: np.ndarray,
    pool: int,
    epsilon: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:class:`RowBatchNormMaxPooling`'s training output, where each window's maximum is, mean and variance;
    ``dropout``: the random bytes, cut and factor of :mod:`hitbench.methods._row_norm_pool`'s kernels."""
    kernels = _row_norm_pool()
    n, rows, columns, channels = y.shape
    total, squares = np.empty(rows), np.empty(rows)
    on_frame_slices(lambda start, stop: kernels.row_moments(y, *dropout, start, stop, total, squares), rows)
    count = n * columns * channels
    mean = total / count
    variance = np.maximum(squares / count - mean * mean, 0.0).astype(np.float32)  # biased, as Keras's
    mean = mean.astype(np.float32)
    _, scale = _scale(gamma, variance, epsilon)
    pooled = np.empty((n, rows // pool, columns // pool, channels), np.float32)
    where = np.empty(pooled.shape, np.int32)

    def normalise_pool(start: int, stop: int) -> None:
        kernels.normalise_pool(y, *dropout, mean, scale, beta, pool, start, stop, pooled, where)

    on_frame_slices(normalise_pool, n)
    return pooled, where, mean, variance


def _normalise_pool_backward(
    upstream: np.ndarray,
    where: np.ndarray,
    y: np.ndarray,
    dropout: tuple[np.ndarray, int, np.float32],
    mean: np.ndarray,
    variance: np.ndarray,
    gamma: np.ndarray,
    pool: int,
    epsilon: float,
    buffers: dict[tuple[int, ...], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gradients of the activations, gamma and beta from the pooled output's (the formulas of
    :func:`_row_batch_norm`'s gradient, its sums taken at the windows' maxima, where the rest is 0; the
    activations' gradient times the dropout's mask).

    The activations' gradient is written into the layer's buffer for that shape: TensorFlow copies what a
    ``numpy_function`` returns, and a fresh array the size of the activations each step costs more in page
    faults than the pass that fills it.
    """
    kernels = _row_norm_pool()
    n, rows, columns, channels = y.shape
    count = n * columns * channels
    inverse, scale = _scale(gamma, variance, epsilon)
    upstream_sum, centred_dot = np.empty(rows), np.empty(rows)
    kernels.pooled_sums(upstream, where, y, *dropout, mean.astype(np.float64), upstream_sum, centred_dot)
    slope = (scale * inverse * inverse * centred_dot / count).astype(np.float32)
    offset = (scale * upstream_sum / count).astype(np.float32)
    grad_y = buffers.get(y.shape)
    if grad_y is None:  # 64-byte aligned as TensorFlow aligns (unaligned, a training step took 0.3 ms a frame more)
        raw = np.empty(y.size + 16, np.float32)
        first = (-raw.ctypes.data % 64) // 4
        grad_y = buffers[y.shape] = raw[first : first + y.size].reshape(y.shape)

    def input_gradient(start: int, stop: int) -> None:
        kernels.input_gradient(y, *dropout, upstream, where, mean, scale, slope, offset, pool, start, stop, grad_y)

    on_frame_slices(input_gradient, n)
    return grad_y, (centred_dot * inverse).astype(np.float32), upstream_sum.astype(np.float32)


@keras.saving.register_keras_serializable(package="hitbench")
class ByteDropout(keras.layers.Dropout):
    """``Dropout`` drawing one random byte per value (four per 32-bit random number)."""

    def call(self, inputs, training=False):
        if not (training and 0 < self.rate < 1) or self.noise_shape is not None:
            return super().call(inputs, training=training)
        return _dropout(inputs, self.rate, self.seed_generator)


def _byte_cut(rate: float, inputs) -> int | None:
    """The least random byte that keeps a value at dropout ``rate`` (``256 * rate``), or None where the bytes
    cannot draw it: ``256 * rate`` not a whole number, a last axis of ``inputs`` not a multiple of 4."""
    cut = 256 * rate
    if cut != int(cut) or inputs.shape[-1] is None or inputs.shape[-1] % 4:
        return None
    return int(cut)


def _keep_bytes(inputs, seed_generator):
    """One random byte per value of ``inputs`` (uint8, its shape): the four bytes of one full-range uint32 draw
    for four adjacent values of the last axis, the draw seeded by ``seed_generator`` as ``keras.random``'s."""
    seed = tf.cast(tf.math.floormod(seed_generator.next(), 2**31 - 2), "int32")  # as keras.random's
    shape = tf.shape(inputs)
    words_shape = tf.concat([shape[:-1], [shape[-1] // 4]], axis=0)
    words = tf.random.stateless_uniform(words_shape, seed, minval=None, maxval=None, dtype="uint32")
    return tf.reshape(tf.bitcast(words, tf.uint8), shape)  # the 4 bytes of a word: 4 adjacent values


def _dropout(inputs, rate: float, seed_generator):
    """``inputs`` dropped at ``rate`` (0 < rate < 1), training: a value is kept (and divided by ``1 - rate``)
    where its random byte (:func:`_keep_bytes`) is at least :func:`_byte_cut`; Keras's own dropout where the
    bytes cannot draw the rate."""
    cut = _byte_cut(rate, inputs)
    if cut is None:
        return keras.random.dropout(inputs, rate, seed=seed_generator)
    keep = _keep_bytes(inputs, seed_generator)
    return inputs * (tf.cast(keep >= cut, inputs.dtype) * (1.0 / (1.0 - rate)))
