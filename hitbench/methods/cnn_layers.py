"""Three Keras layers of the Table I network computed faster on the CPU: same function, same weights.

The network's first stage works on 344 x 344 x 4 activations per frame, and there Keras's own
layers cost more than anything else (measured on the 2-core development CPU, forward and
backward, batch 20, ms per frame: ``Conv2D`` 3.0, ``Dropout`` 2.5, ``BatchNormalization(axis=1)``
4.6; a training step of the whole network 4.8 with these layers, 7.8 with Keras's ``Conv2D`` and
the former versions of the two others):

- :class:`ColumnBlockConv2D` is ``Conv2D`` of a one-channel image (the first convolution) computed
  on blocks of :data:`COLUMN_BLOCK` output columns: the frame's columns are read as 8 channels
  (a free reshape), the 7x7 kernel becomes a 7x2 kernel from 8 to 8 x 4 channels (gathered from
  the same 196 weights, zeros elsewhere), whose output is the Keras output once reshaped. It
  computes twice the products, but oneDNN runs 8-to-32-channel convolutions far faster than
  1-to-4 ones (forward and kernel gradient 1.5 ms instead of 2.7; the bias is added on the blocks,
  where oneDNN fuses it into the convolution). Same kernel and bias arrays as ``Conv2D``; outputs
  equal to about 1e-6 (a different order of the sums). Frames whose output width is not a multiple
  of 8 use Keras's convolution.
- :class:`RowBatchNormalization` is ``BatchNormalization(axis=1)`` (one mean and variance per image
  row, over the batch, the columns and the channels) whose training step sums each row as one
  contiguous run (the activations seen as (n, rows, columns x channels), no transposes) and whose
  gradient is written out (1.4 ms forward and backward, against 3.0 for TensorFlow's fused kernel
  with the rows moved last): identical weights (gamma, beta, moving mean and variance per row),
  epsilon, momentum and moving-average update (the batch variance is the biased one, computed
  about the batch mean, as Keras does), outputs equal to about 1e-6. Inference is Keras's own code.
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

#: Output columns per block of :class:`ColumnBlockConv2D`.
COLUMN_BLOCK = 8


@keras.saving.register_keras_serializable(package="hitbench")
class ColumnBlockConv2D(keras.layers.Conv2D):
    """``Conv2D`` of a one-channel image computed on blocks of :data:`COLUMN_BLOCK` output columns."""

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
            or out_width % COLUMN_BLOCK
        ):
            return super().call(inputs)
        block = COLUMN_BLOCK
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
class ByteDropout(keras.layers.Dropout):
    """``Dropout`` drawing one random byte per value (four per 32-bit random number)."""

    def call(self, inputs, training=False):
        cut = 256 * self.rate
        whole_words = inputs.shape[-1] is not None and inputs.shape[-1] % 4 == 0
        if not (training and 0 < self.rate < 1 and whole_words) or self.noise_shape is not None or cut != int(cut):
            return super().call(inputs, training=training)
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), 2**31 - 2), "int32")  # as keras.random's
        shape = tf.shape(inputs)
        words_shape = tf.concat([shape[:-1], [shape[-1] // 4]], axis=0)
        words = tf.random.stateless_uniform(words_shape, seed, minval=None, maxval=None, dtype="uint32")
        random_bytes = tf.reshape(tf.bitcast(words, tf.uint8), shape)  # the 4 bytes of a word: 4 adjacent values
        return inputs * (tf.cast(random_bytes >= int(cut), inputs.dtype) * (1.0 / (1.0 - self.rate)))
