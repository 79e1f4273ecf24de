"""Two Keras layers of the Table I network computed faster on the CPU: same function, same weights.

The network's first stage works on 344 x 344 x 4 activations per frame, and there Keras's own
layers cost more than the convolution itself (measured on the 2-core development CPU, forward
and backward, batch 20: ``Dropout`` 2.5 ms per frame, ``BatchNormalization(axis=1)`` 4.6 ms):

- :class:`RowBatchNormalization` is ``BatchNormalization(axis=1)`` (one mean and variance per image
  row, over the batch, the columns and the channels) whose training step runs TensorFlow's fused
  batch-norm kernel with the rows moved to the last axis (2.1 ms): identical weights
  (gamma, beta, moving mean and variance per row), epsilon, momentum and moving-average
  update (the batch variance is the biased one, as Keras uses), outputs equal to about 1e-6.
  Inference is Keras's own code.
- :class:`ByteDropout` is ``Dropout`` whose training mask spends 8 random bits per value
  instead of a float32 uniform (0.9 ms): each value is kept when its random byte is at least
  ``256 * rate``, an exact Bernoulli(1 - rate) draw when ``256 * rate`` is a whole number
  (0.25 -> 64); other rates, and noise shapes, use Keras's own dropout.

They are registered with Keras (package ``hitbench``) so saved models load with them. This module
imports TensorFlow: import it only through :func:`hitbench.methods.tf_runtime.keras`.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="hitbench")
class RowBatchNormalization(keras.layers.BatchNormalization):
    """``BatchNormalization(axis=1)`` on (n, rows, columns, channels), trained with the fused kernel."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.axis != 1 or len(inputs.shape) != 4:
            return super().call(inputs, training=training, mask=mask)
        rows_last = tf.transpose(tf.cast(inputs, "float32"), (0, 2, 3, 1))
        normalised, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            rows_last,
            tf.cast(self.gamma, "float32"),
            tf.cast(self.beta, "float32"),
            epsilon=self.epsilon,
            is_training=True,
        )
        # the fused kernel returns the unbiased batch variance; Keras averages the biased one
        count = tf.cast(tf.size(rows_last) // tf.shape(rows_last)[-1], "float32")
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(tf.transpose(normalised, (0, 3, 1, 2)), self.compute_dtype)


@keras.saving.register_keras_serializable(package="hitbench")
class ByteDropout(keras.layers.Dropout):
    """``Dropout`` drawing one random byte per value (four per 32-bit random number)."""

    def call(self, inputs, training=False):
        cut = 256 * self.rate
        if not (training and 0 < self.rate < 1) or self.noise_shape is not None or cut != int(cut):
            return super().call(inputs, training=training)
        size = tf.size(inputs)
        words = keras.random.randint(
            ((size + 3) // 4,), minval=-(2**31), maxval=2**31 - 1, dtype="int32", seed=self.seed_generator
        )
        random_bytes = tf.reshape(tf.bitcast(words, tf.uint8), (-1,))[:size]
        keep = tf.reshape(random_bytes >= int(cut), tf.shape(inputs))
        return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))
