"""The reference study's network (Table I) in Keras.

The reference study's convolutional network (Table I) as a hitbench method.

The network, for an input frame of H x W pixels (350 x 350 in the study)::

    Conv2D 7x7, 4 filters            350 -> 344
    Dropout
    BatchNormalization over rows     axis=1, 344 rows -> 688 trainable parameters
    ReLU
    MaxPooling 5x5                   344 -> 68
    Conv2D 7x7, 4 filters            68 -> 62
    BatchNormalization over rows     62 rows -> 124 trainable parameters
    ReLU
    MaxPooling 5x5                   62 -> 12
    Dropout
    Flatten                          12 x 12 x 4 = 576
    Dense 16
    BatchNormalization
    ReLU
    Dropout
    Dense 2, softmax                 (miss, hit)

The ReLU of each stage is computed after its max pooling: ReLU is monotone, so
``relu(maxpool(x)) == maxpool(relu(x))`` exactly, values and gradients alike, and it then runs
on 68 x 68 instead of 344 x 344 activations per frame. Each stage's row batch normalisation and
max pooling are one Keras layer (:class:`hitbench.methods.cnn_layers.RowBatchNormMaxPooling`,
``bn_rows_pool1`` and ``bn_rows_pool2``), whose weights are those of the batch normalisation; the
first one also holds the dropout before it (the same masks as a ``ByteDropout`` layer with its seed).

11,098 trainable parameters at 350 x 350. Training: categorical cross-entropy, SGD with
momentum 0.9 and learning rate 0.002 decayed as ``lr / (1 + 1e-4 * step)`` (Keras 1's
``decay``, :class:`keras.optimizers.schedules.InverseTimeDecay`), batch 100.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hitbench.errors import HitbenchError
from hitbench.methods import tf_runtime

#: The epsilon of the network's batch normalisations (Keras's default).
BN_EPSILON = 1e-3


def build_model(frame_shape: tuple[int, int], dropout: float = 0.25, seed: int = 0):
    """The Table I network (uncompiled Keras model) for frames of ``frame_shape``.

    Parameters
    ----------
    frame_shape : tuple of int
        (height, width) of the input frames; at least 39 x 39 (two 7x7 convolutions and two
        5x5 poolings must leave at least one pixel).
    dropout : float
        Rate of the three dropouts (the first inside ``bn_rows_pool1``).
    seed : int
        Seed of the initial weights and of the dropout masks: each layer draws from its own seed,
        derived from this one, never from a global generator.

    Returns
    -------
    keras.Model
        The network, input (H, W, 1), output softmax (miss, hit).
    """
    keras = tf_runtime.keras()
    from keras import layers

    from hitbench.methods.cnn_layers import ByteDropout, ColumnBlockConv2D, RowBatchNormMaxPooling

    height, width = (int(s) for s in frame_shape)
    if min(height, width) < 39:
        raise HitbenchError(
            f"cnn: frames of {height}x{width} pixels are too small for the network; give frames of at least 39x39"
        )
    seeds = iter(int(s) for s in np.random.SeedSequence(seed).generate_state(7))

    def weights() -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=next(seeds))

    return keras.Sequential(
        [
            keras.Input(shape=(height, width, 1), name="frames"),
            ColumnBlockConv2D(4, 7, kernel_initializer=weights(), name="conv1"),
            RowBatchNormMaxPooling(5, dropout, seed=next(seeds), axis=1, epsilon=BN_EPSILON, name="bn_rows_pool1"),
            layers.ReLU(name="relu1"),
            layers.Conv2D(4, 7, kernel_initializer=weights(), name="conv2"),
            RowBatchNormMaxPooling(5, axis=1, epsilon=BN_EPSILON, name="bn_rows_pool2"),
            layers.ReLU(name="relu2"),
            ByteDropout(dropout, seed=next(seeds), name="dropout2"),
            layers.Flatten(name="flatten"),
            layers.Dense(16, kernel_initializer=weights(), name="dense1"),
            layers.BatchNormalization(epsilon=BN_EPSILON, name="bn_dense1"),
            layers.ReLU(name="relu3"),
            ByteDropout(dropout, seed=next(seeds), name="dropout3"),
            layers.Dense(2, activation="softmax", kernel_initializer=weights(), name="dense2"),
        ],
        name="reference_cnn",
    )


def _bn_scale_shift(gamma, beta, mean, variance) -> tuple[np.ndarray, np.ndarray]:
    """A batch normalisation at inference as ``scale * x + shift`` (float64)."""
    gamma, beta, mean, variance = (np.asarray(w, dtype=np.float64) for w in (gamma, beta, mean, variance))
    scale = gamma / np.sqrt(variance + BN_EPSILON)
    return scale, beta - mean * scale


def inference_weights(weights: Sequence[np.ndarray], *, input_mean: float, input_std: float) -> dict[str, np.ndarray]:
    """The trained network at inference as arrays, folded: what the fast inference engines compute with.

    The input standardisation ``(x - input_mean) / input_std`` is folded into the first
    convolution, each batch normalisation into a scale and a shift (per row for the two row
    normalisations), the dense one into the first dense layer. Folding is done in float64, the
    result is float32. No Keras is needed: the weights are read in the order of the network's
    ``get_weights()``.

    Parameters
    ----------
    weights : sequence of numpy.ndarray
        The 20 weight arrays of a network from :func:`build_model`, as ``model.get_weights()``
        lists them (each layer's in order; batch normalisation: gamma, beta, moving mean, moving
        variance).
    input_mean, input_std : float
        The training-set standardisation.

    Returns
    -------
    dict of numpy.ndarray
        ``k1`` (7, 7, 1, 4) and ``b1`` (4,): the first convolution; ``s1``, ``t1``: the scale and
        shift of each of its output rows; ``k2``, ``b2``, ``s2``, ``t2``: the same for the second;
        ``w3`` (features, 16) in Keras's flattening order (row, column, channel) and ``b3``: the
        first dense layer with its batch normalisation; ``w4`` (16, 2), ``b4``: the output layer's
        logits.
    """
    sizes = (2, 4, 2, 4, 2, 4, 2)  # conv1, bn_rows_pool1, conv2, bn_rows_pool2, dense1, bn_dense1, dense2
    layers = (weights[end - n : end] for n, end in zip(sizes, np.cumsum(sizes), strict=True))
    (k1, b1), bn1, (k2, b2), bn2, (w3, b3), bn3, (w4, b4) = layers
    k1, b1, w3, b3 = (np.asarray(w, dtype=np.float64) for w in (k1, b1, w3, b3))
    s3, t3 = _bn_scale_shift(*bn3)
    folded = {
        "k1": k1 / input_std,
        "b1": b1 - input_mean / input_std * k1.sum(axis=(0, 1, 2)),
        **dict(zip(("s1", "t1"), _bn_scale_shift(*bn1), strict=True)),
        "k2": k2,
        "b2": b2,
        **dict(zip(("s2", "t2"), _bn_scale_shift(*bn2), strict=True)),
        "w3": w3 * s3,
        "b3": b3 * s3 + t3,
        "w4": w4,
        "b4": b4,
    }
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in folded.items()}
