"""The reference study's convolutional network (Table I) as a hitbench method.

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

11,098 trainable parameters at 350 x 350. Training: categorical cross-entropy, SGD with
momentum 0.9 and learning rate 0.002 decayed as ``lr / (1 + 1e-4 * step)`` (Keras 1's
``decay``, :class:`keras.optimizers.schedules.InverseTimeDecay`), batch 100.

Input normalisation (``normalisation``): negative values are clipped to 0 ADU, then
``"log1p"`` takes ``log(1 + ADU)`` (compresses bright Bragg peaks against the photon-sparse
background) or ``"linear"`` keeps ADU; finally the result is standardised with the mean and
standard deviation of all pixels of the training set, stored in the fitted model
(``input_mean_``, ``input_std_``).

Inference runs in batches, either through Keras or through an ONNX Runtime graph built
directly from the trained weights (batch normalisation folded into per-row scale and shift,
the input standardisation folded into the first convolution, the per-row scale applied after
pooling the columns). Both give the same scores to about 1e-6; ``backend="auto"`` uses ONNX
Runtime (faster than Keras on the 2-core development CPU, see docs/speed.md) unless TensorFlow
sees a GPU that ONNX Runtime cannot use.

TensorFlow is imported only when a model is built, trained or loaded, never at module import;
its C++ log lines are kept off the terminal while it loads and trains (:func:`_tensorflow_log_filtered`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from scipy import special

from hitbench.atomic import atomic_write
from hitbench.errors import HitbenchError
from hitbench.frames import FrameSource
from hitbench.methods.base import HitMethod
from hitbench.methods.thresholds import fit_threshold

_STATE_ENTRY = "hitbench_state.json"
_NORMALISATIONS = ("log1p", "linear")
_BACKENDS = ("auto", "keras", "onnx")


#: TensorFlow's C++ log lines (absl format "I0000 00:00:1795657557.412880   26168 file.cc:52] ...")
#: and the two plain lines its start-up prints with them.
_TENSORFLOW_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\)"
    r"|To enable the following instructions: .* rebuild TensorFlow"
)


@contextlib.contextmanager
def _tensorflow_log_filtered() -> Iterator[None]:
    """Keep TensorFlow's C++ log lines off standard error while the block runs.

    TensorFlow 2.21 prints them through absl whatever ``TF_CPP_MIN_LOG_LEVEL`` says: at
    import (the oneDNN notice, "Could not find cuda drivers", a failed ``cuInit`` on a machine
    without a GPU) and when training starts (tf.data notices). Standard error (file descriptor
    2) goes to a temporary file while the block runs; afterwards every other line (Python
    warnings, messages of other libraries) is written back to it. ``TF_CPP_MIN_LOG_LEVEL=0``
    leaves standard error alone.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _TENSORFLOW_LOG_LINE.match(line)))


def _keras() -> ModuleType:
    """Keras on TensorFlow, imported (the first time) through :func:`_tensorflow_log_filtered`.

    TensorFlow also looks for its devices there, so that the CUDA lines stay quiet too.

    Returns
    -------
    module
        ``keras``.
    """
    if "keras" not in sys.modules:
        with _tensorflow_log_filtered():
            import tensorflow as tf

            tf.config.list_physical_devices()
            import keras  # noqa: F401

            import hitbench.methods.cnn_layers  # noqa: F401  (registers the network's layers for loading)
    import keras

    return keras


def _n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def build_model(frame_shape: tuple[int, int], dropout: float = 0.25):
    """The Table I network (uncompiled Keras model) for frames of ``frame_shape``.

    Parameters
    ----------
    frame_shape : tuple of int
        (height, width) of the input frames; at least 39 x 39 (two 7x7 convolutions and two
        5x5 poolings must leave at least one pixel).
    dropout : float
        Rate of the three dropout layers.

    Returns
    -------
    keras.Model
        The network, input (H, W, 1), output softmax (miss, hit).
    """
    keras = _keras()
    from keras import layers

    from hitbench.methods.cnn_layers import ByteDropout, RowBatchNormalization

    height, width = (int(s) for s in frame_shape)
    if min(height, width) < 39:
        raise HitbenchError(
            f"cnn: frames of {height}x{width} pixels are too small for the network; give frames of at least 39x39"
        )
    return keras.Sequential(
        [
            keras.Input(shape=(height, width, 1), name="frames"),
            layers.Conv2D(4, 7, name="conv1"),
            ByteDropout(dropout, name="dropout1"),
            RowBatchNormalization(axis=1, name="bn_rows1"),
            layers.ReLU(name="relu1"),
            layers.MaxPooling2D(5, name="pool1"),
            layers.Conv2D(4, 7, name="conv2"),
            RowBatchNormalization(axis=1, name="bn_rows2"),
            layers.ReLU(name="relu2"),
            layers.MaxPooling2D(5, name="pool2"),
            ByteDropout(dropout, name="dropout2"),
            layers.Flatten(name="flatten"),
            layers.Dense(16, name="dense1"),
            layers.BatchNormalization(name="bn_dense1"),
            layers.ReLU(name="relu3"),
            ByteDropout(dropout, name="dropout3"),
            layers.Dense(2, activation="softmax", name="dense2"),
        ],
        name="reference_cnn",
    )


def _bn_scale_shift(layer) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
    scale = gamma / np.sqrt(var + layer.epsilon)
    return scale, beta - mean * scale


def to_onnx(model, *, normalisation: str, input_mean: float, input_std: float) -> bytes:
    """An ONNX graph equal to ``model`` at inference, taking raw frames (n, H, W).

    The graph clips negative values, applies the normalisation (``log1p`` or ``linear``) and
    the training-set standardisation (folded into the first convolution), runs the network
    with batch normalisation folded into scale/shift, and returns P(hit), shape (n,).

    Parameters
    ----------
    model : keras.Model
        A model from :func:`build_model` (trained).
    normalisation : {"log1p", "linear"}
        The input transform the model was trained with.
    input_mean, input_std : float
        The training-set standardisation.

    Returns
    -------
    bytes
        The serialised ONNX model (opset 17).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    height, width = model.input_shape[1:3]
    get = model.get_layer
    inits: list = []

    def const(name: str, value: np.ndarray, dtype: type = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    k1, b1 = (np.asarray(w, dtype=np.float64) for w in get("conv1").get_weights())  # (7,7,1,4), (4,)
    # standardised input (x - m) / s into the first convolution: w / s, b - m / s * sum(w)
    b1 = b1 - input_mean / input_std * k1.sum(axis=(0, 1, 2))
    k1 = k1 / input_std
    k2, b2 = get("conv2").get_weights()
    s1, t1 = _bn_scale_shift(get("bn_rows1"))
    s2, t2 = _bn_scale_shift(get("bn_rows2"))
    w3, b3 = (np.asarray(w, dtype=np.float64) for w in get("dense1").get_weights())
    s3, t3 = _bn_scale_shift(get("bn_dense1"))
    w4, b4 = get("dense2").get_weights()
    pooled = get("pool2").output.shape[1:3]
    # Keras flattens (h, w, c); ONNX flattens (c, h, w)
    w3 = w3.reshape(*pooled, 4, 16).transpose(2, 0, 1, 3).reshape(-1, 16)

    def row_bn_relu_pool(src: str, scale: np.ndarray, shift: np.ndarray, tag: str) -> list:
        """Per-row batch norm, ReLU, 5x5 max pooling, reordered to touch the full-size tensor once.

        Pool the columns first: within a row the affine map is monotonic, so the column max of
        ``s * x + t`` is ``s * max(x) + t`` for ``s >= 0`` and ``s * min(x) + t`` for ``s < 0``,
        i.e. ``max(s * max(x), s * min(x)) + t``; then pool the rows; ReLU commutes with max.
        """
        cols = {"kernel_shape": [1, 5], "strides": [1, 5]}
        s, t = const(f"s{tag}", scale.reshape(1, 1, -1, 1)), const(f"t{tag}", shift.reshape(1, 1, -1, 1))
        out = [
            helper.make_node("MaxPool", [src], [f"cmax{tag}"], **cols),
            helper.make_node("Mul", [f"cmax{tag}", s], [f"smax{tag}"]),
        ]
        scaled = f"smax{tag}"
        if (scale < 0).any():
            out += [
                helper.make_node("Neg", [src], [f"neg{tag}"]),
                helper.make_node("MaxPool", [f"neg{tag}"], [f"negmax{tag}"], **cols),
                helper.make_node("Neg", [f"negmax{tag}"], [f"cmin{tag}"]),
                helper.make_node("Mul", [f"cmin{tag}", s], [f"smin{tag}"]),
                helper.make_node("Max", [f"smax{tag}", f"smin{tag}"], [f"sboth{tag}"]),
            ]
            scaled = f"sboth{tag}"
        return out + [
            helper.make_node("Add", [scaled, t], [f"a{tag}"]),
            helper.make_node("MaxPool", [f"a{tag}"], [f"rmax{tag}"], kernel_shape=[5, 1], strides=[5, 1]),
            helper.make_node("Relu", [f"rmax{tag}"], [f"p{tag}"]),
        ]

    nodes = [
        helper.make_node("Unsqueeze", ["frames", const("axis1", [1], np.int64)], ["x0"]),
        helper.make_node("Relu", ["x0"], ["clipped"]),
    ]
    if normalisation == "log1p":
        nodes += [
            helper.make_node("Add", ["clipped", const("one", np.ones(1))], ["plus1"]),
            helper.make_node("Log", ["plus1"], ["scaled"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["clipped"], ["scaled"]))
    nodes += [
        helper.make_node(
            "Conv", ["scaled", const("w1", k1.transpose(3, 2, 0, 1)), const("b1", b1)], ["c1"], kernel_shape=[7, 7]
        ),
    ]
    nodes += row_bn_relu_pool("c1", s1, t1, "1")
    nodes += [
        helper.make_node(
            "Conv", ["p1", const("w2", k2.transpose(3, 2, 0, 1)), const("b2", b2)], ["c2"], kernel_shape=[7, 7]
        ),
    ]
    nodes += row_bn_relu_pool("c2", s2, t2, "2")
    nodes += [
        helper.make_node("Flatten", ["p2"], ["f"]),
        helper.make_node("Gemm", ["f", const("w3", w3 * s3), const("b3", b3 * s3 + t3)], ["d1"]),
        helper.make_node("Relu", ["d1"], ["r3"]),
        helper.make_node("Gemm", ["r3", const("w4", w4), const("b4", b4)], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["proba"], axis=1),
        helper.make_node("Gather", ["proba", const("hit", 1, np.int64)], ["p_hit"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "reference_cnn",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["n", height, width])],
        [helper.make_tensor_value_info("p_hit", TensorProto.FLOAT, ["n"])],
        initializer=inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hitbench")
    onnx.checker.check_model(onnx_model)
    return onnx_model.SerializeToString()


def onnx_session(onnx_bytes: bytes, *, threads: int | None = None):
    """An ONNX Runtime session tuned for this machine (all cores, graph optimisation).

    The level is ``ORT_ENABLE_EXTENDED``, not ``ORT_ENABLE_ALL``: the latter's NCHWc layout
    pads the 4-filter convolutions to 8/16-channel blocks and measured slower here.

    Parameters
    ----------
    onnx_bytes : bytes
        A serialised model from :func:`to_onnx`.
    threads : int, optional
        Intra-op threads; default: the cores this process may use.

    Returns
    -------
    onnxruntime.InferenceSession
        CUDA provider first when ONNX Runtime has it, then the CPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.intra_op_num_threads = threads or _n_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # idle threads sleep instead of spinning: no slower here, and kinder to a shared CPU
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(onnx_bytes, sess_options=options, providers=providers)


def training_batches(
    frames: FrameSource,
    positions: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    standardise: Callable[[np.ndarray], np.ndarray],
    seed: int,
    shuffle: bool = True,
    flip: bool = False,
):
    """Training batches read from a frame source, in a new random order each epoch.

    Each batch's frames are read (:meth:`FrameSource.take`) and standardised when Keras asks for
    it, so only a batch is in memory, whatever the size of the training set. With ``flip`` each
    frame is left as it is, flipped left-right, flipped up-down or rotated by 180 degrees (one of
    the four, uniformly, anew every epoch): the Bragg peaks of a hit stay peaks and their number
    (the label) is unchanged.

    Parameters
    ----------
    frames : FrameSource
        The frames.
    positions : numpy.ndarray
        Positions in ``frames`` of the frames to train on.
    labels : numpy.ndarray, shape (len(positions), 2)
        One-hot labels of those frames.
    batch_size : int
        Frames per batch.
    standardise : callable
        Frames (n, H, W) to network input (n, H, W, 1).
    seed : int
        Seed of the order and the flips.
    shuffle : bool
        New random order every epoch (else the given order, e.g. for validation).
    flip : bool
        Random flips.

    Returns
    -------
    keras.utils.PyDataset
        Batches ``(frames, labels)``.
    """
    keras = _keras()

    class TrainingBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(positions))
            self.flips = np.zeros(len(positions), dtype=np.int64)
            self.on_epoch_end()

        def __len__(self) -> int:
            return -(-len(positions) // batch_size)

        def on_epoch_end(self) -> None:
            if shuffle:
                self.order = self.rng.permutation(len(positions))
            if flip:
                self.flips = self.rng.integers(0, 4, len(positions))

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            picked = self.order[index * batch_size : (index + 1) * batch_size]
            batch = standardise(frames.take(positions[picked]))
            flips = self.flips[picked]
            batch[flips & 1 == 1] = batch[flips & 1 == 1, :, ::-1]
            batch[flips & 2 == 2] = batch[flips & 2 == 2, ::-1]
            return batch, labels[picked]

    return TrainingBatches()


class ReferenceCNN(HitMethod):
    """The reference study's CNN (Table I, 11,098 parameters at 350x350) in Keras; ONNX Runtime for fast inference.

    The network, loss and optimiser are the study's (cross-entropy; SGD, learning rate 0.002,
    inverse-time decay 1e-4, momentum 0.9). Two training defaults differ, because the study had
    tens of thousands of training frames and hitbench's built-in dataset has about 500: with
    batches of 100 that is 5 updates per epoch, and within 30-40 epochs the network stays in the
    all-miss solution (measured: balanced accuracy 0.50 on every run). The defaults are therefore
    batches of 20 and loss weights balanced between hits and misses, for a fixed 40 epochs
    (``validation_split`` 0: a tenth of 500 frames, about a dozen hits, is too noisy a
    validation set to stop on; measured, early stopping kept a near-constant early model).
    ``batch_size=100, class_weight=None`` gives the study's exact setting.

    Parameters
    ----------
    epochs : int
        Maximum training epochs.
    batch_size : int
        Training batch size (the study: 100; see above for the default 20).
    learning_rate : float
        Initial SGD learning rate.
    decay : float
        Inverse-time decay per step: ``lr / (1 + decay * step)``.
    momentum : float
        SGD momentum.
    dropout : float
        Rate of the three dropout layers.
    validation_split : float
        Fraction of the training frames held out (stratified) to monitor the validation loss
        for early stopping; 0 trains on everything for ``epochs`` epochs.
    patience : int
        Early stopping: epochs without validation-loss improvement before stopping (the best
        weights are restored). Ignored when ``validation_split`` is 0.
    normalisation : {"log1p", "linear"}
        Input transform after clipping negative ADU to 0, before per-training-set standardisation.
    class_weight : {"balanced", None}
        Weight the loss by inverse class frequency (hits are often rare; the study: None).
    flip_augment : bool
        Flip each training frame at random (left-right, up-down, both or neither) anew every
        epoch; the study: False.
    random_state : int
        Seed of weights, dropout, shuffling and the validation split; training on the CPU is
        repeatable (TensorFlow deterministic ops are switched on).
    backend : {"auto", "keras", "onnx"}
        Inference engine; "auto" picks ONNX Runtime unless only TensorFlow can use a GPU.
    inference_batch_size : int
        Frames per inference batch.
    verbose : int
        Keras training verbosity (0 silent).
    decision_threshold : float or "fitted"
        P(hit) above which a frame is a hit; "fitted": the cut with the best balanced
        accuracy on the training frames, half-way (in log-odds) across the gap between the
        training scores on either side of it (P(hit) > 0.5 where no cut beats chance). The
        fitted cut sits low, just above the misses, where a network trained on one experiment
        is sharpest on its own runs and least safe on other detectors.
    """

    name: ClassVar[str] = "cnn"

    def __init__(
        self,
        epochs: int = 40,
        batch_size: int = 20,
        learning_rate: float = 0.002,
        decay: float = 1e-4,
        momentum: float = 0.9,
        dropout: float = 0.25,
        validation_split: float = 0.0,
        patience: int = 10,
        normalisation: str = "log1p",
        class_weight: str | None = "balanced",
        flip_augment: bool = False,
        random_state: int = 0,
        backend: str = "auto",
        inference_batch_size: int = 32,
        verbose: int = 0,
        decision_threshold: float | str = 0.5,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.decay = decay
        self.momentum = momentum
        self.dropout = dropout
        self.validation_split = validation_split
        self.patience = patience
        self.normalisation = normalisation
        self.class_weight = class_weight
        self.flip_augment = flip_augment
        self.random_state = random_state
        self.backend = backend
        self.inference_batch_size = inference_batch_size
        self.verbose = verbose
        self.decision_threshold = decision_threshold

    # -- input ---------------------------------------------------------------------------
    def _transform(self, frames: np.ndarray) -> np.ndarray:
        """Clip and normalise (before standardisation), float32."""
        clipped = np.maximum(frames, 0.0, dtype=np.float32)
        return np.log1p(clipped) if self.normalisation == "log1p" else clipped

    def _input_statistics(self, frames: FrameSource) -> tuple[float, float]:
        """Mean and standard deviation of the transformed pixels of all training frames, chunk by chunk."""

        def sums(chunk: np.ndarray) -> np.ndarray:
            transformed = self._transform(chunk)
            squares = np.square(transformed, dtype=np.float64)
            return np.stack([transformed.sum(axis=(1, 2), dtype=np.float64), squares.sum(axis=(1, 2))], axis=1)

        total, squares = frames.map(sums).sum(axis=0)
        n_pixels = len(frames) * frames.frame_shape[0] * frames.frame_shape[1]
        mean = total / n_pixels
        return float(mean), float(np.sqrt(max(squares / n_pixels - mean**2, 0.0))) or 1.0

    def _keras_input(self, frames: np.ndarray) -> np.ndarray:
        scaled = (self._transform(frames) - np.float32(self.input_mean_)) / np.float32(self.input_std_)
        return scaled[..., np.newaxis]

    def _check_params(self) -> None:
        if self.normalisation not in _NORMALISATIONS:
            raise HitbenchError(f"cnn: normalisation={self.normalisation!r}; use one of {', '.join(_NORMALISATIONS)}")
        if self.backend not in _BACKENDS:
            raise HitbenchError(f"cnn: backend={self.backend!r}; use one of {', '.join(_BACKENDS)}")
        if self.class_weight not in (None, "balanced"):
            raise HitbenchError(f"cnn: class_weight={self.class_weight!r}; use None or 'balanced'")
        if not 0.0 <= self.validation_split < 1.0:
            raise HitbenchError(f"cnn: validation_split={self.validation_split}; give a fraction in [0, 1)")
        fixed = self.decision_threshold
        if fixed != "fitted" and not (isinstance(fixed, float | int) and 0 < fixed < 1):
            raise HitbenchError(f"cnn: decision_threshold={fixed!r}; give 'fitted' or a P(hit) between 0 and 1")

    # -- training ------------------------------------------------------------------------
    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        self._check_params()
        keras = _keras()
        import tensorflow as tf
        from sklearn.model_selection import train_test_split
        from sklearn.utils.class_weight import compute_class_weight

        keras.utils.set_random_seed(self.random_state)
        tf.config.experimental.enable_op_determinism()

        self.input_mean_, self.input_std_ = self._input_statistics(frames)
        y = keras.utils.to_categorical(labels, 2)
        train = np.arange(len(frames))
        validation_data, callbacks = None, []
        if self.validation_split > 0:
            n_val = max(2, round(self.validation_split * len(labels)))
            if min(np.bincount(labels)) < 2 or n_val >= len(labels) - 1:
                raise HitbenchError(
                    f"cnn: {len(labels)} training frames are too few for validation_split={self.validation_split}; "
                    "give more frames of each class or set validation_split=0"
                )
            train, val = train_test_split(train, test_size=n_val, stratify=labels, random_state=self.random_state)
            val = np.sort(val)
            validation_data = training_batches(
                frames, val, y[val], self.batch_size, standardise=self._keras_input, seed=0, shuffle=False
            )
            callbacks.append(
                keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience, restore_best_weights=True)
            )
        weights = None
        if self.class_weight == "balanced":
            weights = dict(enumerate(compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)))
        batches = training_batches(
            frames,
            train,
            y[train],
            self.batch_size,
            standardise=self._keras_input,
            seed=self.random_state,
            flip=self.flip_augment,
        )

        model = build_model(frames.frame_shape, self.dropout)
        schedule = keras.optimizers.schedules.InverseTimeDecay(self.learning_rate, 1, self.decay)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=self.momentum),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        with _tensorflow_log_filtered():
            history = model.fit(
                batches,
                epochs=self.epochs,
                class_weight=weights,
                validation_data=validation_data,
                callbacks=callbacks,
                verbose=self.verbose,
            )
        self.model_ = model
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        self.n_epochs_ = len(self.history_["loss"])
        self._onnx_session = None
        self.threshold_ = 0.5 if self.decision_threshold == "fitted" else float(self.decision_threshold)
        if self.decision_threshold == "fitted":  # the best cut on the training frames, half-way across its gap
            odds = special.logit(np.clip(frames.map(self._score).astype(np.float64), 1e-7, 1 - 1e-7))
            cut, balanced_accuracy = fit_threshold(odds, labels)
            if balanced_accuracy > 0.5:  # else no cut beats chance there: keep P(hit) > 0.5
                self.threshold_ = float(special.expit(cut))

    # -- inference -----------------------------------------------------------------------
    def _use_onnx(self) -> bool:
        if self.backend != "auto":
            return self.backend == "onnx"
        import onnxruntime as ort

        _keras()
        import tensorflow as tf

        return "CUDAExecutionProvider" in ort.get_available_providers() or not tf.config.list_physical_devices("GPU")

    def onnx_model(self) -> bytes:
        """The fitted network as a serialised ONNX graph taking raw frames (n, H, W) to P(hit).

        Returns
        -------
        bytes
            See :func:`to_onnx`.
        """
        self._check_predict_input(np.zeros((1, *self.frame_shape_), dtype=np.float32))
        return to_onnx(
            self.model_, normalisation=self.normalisation, input_mean=self.input_mean_, input_std=self.input_std_
        )

    def score_keras(self, frames: np.ndarray) -> np.ndarray:
        """P(hit) per frame through Keras, in batches of ``inference_batch_size``.

        Parameters
        ----------
        frames : numpy.ndarray, shape (n, H, W)
            Frames (validated float32).

        Returns
        -------
        numpy.ndarray, shape (n,)
            P(hit), float32.
        """
        out = [
            self.model_.predict_on_batch(self._keras_input(frames[i : i + self.inference_batch_size]))[:, 1]
            for i in range(0, len(frames), self.inference_batch_size)
        ]
        return np.concatenate([np.asarray(o) for o in out])

    def score_onnx(self, frames: np.ndarray) -> np.ndarray:
        """P(hit) per frame through ONNX Runtime, in batches of ``inference_batch_size``.

        Parameters
        ----------
        frames : numpy.ndarray, shape (n, H, W)
            Frames (validated float32).

        Returns
        -------
        numpy.ndarray, shape (n,)
            P(hit), float32.
        """
        if getattr(self, "_onnx_session", None) is None:
            self._onnx_session = onnx_session(self.onnx_model())
        run = self._onnx_session.run
        out = [
            run(None, {"frames": np.ascontiguousarray(frames[i : i + self.inference_batch_size])})[0]
            for i in range(0, len(frames), self.inference_batch_size)
        ]
        return np.concatenate(out)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        self._check_params()
        return self.score_onnx(frames) if self._use_onnx() else self.score_keras(frames)

    # -- persistence ---------------------------------------------------------------------
    def _network(self, weights: list[np.ndarray] | None = None):
        """The network for the fitted frame shape, built from the parameters (never from a saved Keras config)."""
        model = build_model(tuple(self.frame_shape_), self.dropout)
        if weights is not None:
            model.set_weights(weights)
        return model

    def _saved_state(self) -> dict[str, Any]:
        return {**super()._saved_state(), "model_": [np.asarray(w) for w in self.model_.get_weights()]}

    def _restore_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        weights = state.pop("model_")
        super()._restore_state(state)
        self.model_ = self._network(weights)
        self._onnx_session = None

    def _state(self) -> dict[str, Any]:
        return {
            "params": self.get_params(),
            "frame_shape_": [int(s) for s in self.frame_shape_],
            "input_mean_": self.input_mean_,
            "input_std_": self.input_std_,
            "threshold_": self.threshold_,
            "history_": self.history_,
            "n_epochs_": self.n_epochs_,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to one ``.keras`` file (the Keras model plus hitbench's state), for Keras users.

        hitbench's own model files (:func:`hitbench.modelfile.save_model`) hold the same; :meth:`load` reads
        only the weights and hitbench's state of a ``.keras`` file, never its Keras configuration.

        Parameters
        ----------
        path : path-like
            Destination; must end in ``.keras``. Written to a temporary name, then renamed.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        self._check_predict_input(np.zeros((1, *self.frame_shape_), dtype=np.float32))
        path = Path(path)
        if path.suffix != ".keras":
            raise HitbenchError(f"{path}: a cnn model file must end in .keras; rename the output")

        def write(tmp: Path) -> None:
            self.model_.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(_STATE_ENTRY, json.dumps(self._state()))

        atomic_write(path, write, suffix=".keras")  # Keras insists on the suffix
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceCNN:
        """Read a model written by :meth:`save`: its hitbench state and weights; the network is rebuilt.

        Parameters
        ----------
        path : path-like
            A ``.keras`` file from :meth:`save`.

        Returns
        -------
        ReferenceCNN
            The fitted method.
        """
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as archive:
                state = json.loads(archive.read(_STATE_ENTRY))
            method = cls(**state["params"])
            method.frame_shape_ = tuple(int(s) for s in state["frame_shape_"])
            method.classes_ = np.array([0, 1])
            method.input_mean_, method.input_std_ = float(state["input_mean_"]), float(state["input_std_"])
            method.threshold_, method.n_epochs_ = float(state["threshold_"]), int(state["n_epochs_"])
            method.history_ = {str(k): [float(v) for v in values] for k, values in dict(state["history_"]).items()}
            method.model_ = method._network()
            method.model_.load_weights(path)  # the weights only: the archive's Keras configuration is not read
        except FileNotFoundError:
            raise HitbenchError(f"{path}: no such model file; give the path written by save()") from None
        except HitbenchError as exc:
            raise HitbenchError(f"{path}: {exc}") from None
        except Exception as exc:  # zip, JSON, HDF5 and Keras each raise their own types for a damaged file
            raise HitbenchError(
                f"{path}: not a readable hitbench cnn model (.keras written by ReferenceCNN.save): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        method._onnx_session = None
        return method

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__ itself
        state.pop("_onnx_session", None)
        if "model_" in state:
            state["model_"] = self.model_.get_weights()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("model_", None)
        super().__setstate__(state)
        self._onnx_session = None
        if weights is not None:
            self.model_ = self._network(weights)
