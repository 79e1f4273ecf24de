"""``cnn``: the reference study's convolutional network (Table I) as a hitbench method.

The network is :func:`hitbench.methods.cnn_network.build_model`: 11,098 trainable parameters
at 350 x 350. Training: categorical cross-entropy, SGD with momentum 0.9 and learning rate
0.002 decayed as ``lr / (1 + 1e-4 * step)`` (Keras 1's ``decay``,
:class:`keras.optimizers.schedules.InverseTimeDecay`), batches from
:func:`hitbench.methods.cnn_batches.training_batches`. Frames read from files are decoded once, into a scratch
file read back every epoch (:class:`hitbench.methods.cnn_batches.DecodedCopy`).

Input normalisation (``normalisation``): negative values are clipped to 0 ADU, then
``"log1p"`` takes ``log(1 + ADU)`` (compresses bright Bragg peaks against the photon-sparse
background) or ``"linear"`` keeps ADU; finally the result is standardised with the mean and
standard deviation of all pixels of the training set, stored in the fitted model
(``input_mean_``, ``input_std_``). Training computes it in one compiled pass a frame with the logarithm the
numba engine scores with (:func:`hitbench.methods._cnn_kernel.standardise`), so the network trains on the very
input it is scored on.

Inference runs through one of three engines (``backend``), all on the trained weights with
batch normalisation folded into scale and shift and the input standardisation into the first
convolution (:func:`hitbench.methods.cnn_network.inference_weights`); they give the same scores
to about 1e-6:

- ``"numba"``: one compiled pass per frame (:mod:`hitbench.methods._cnn_kernel`) that never
  holds the first stage's 344 x 344 x 4 map, frames split over the cores in threads; the fastest
  on a CPU (benchmarks/bench_cnn_inference.py);
- ``"onnx"``: an ONNX Runtime graph (:func:`hitbench.methods.cnn_onnx.to_onnx`), which can run on
  a GPU through ONNX Runtime's CUDA provider;
- ``"keras"``: Keras's ``predict_on_batch`` (TensorFlow, CPU or GPU).

``backend="auto"`` picks ONNX Runtime when it has the CUDA provider (a GPU), else numba; Keras
runs on TensorFlow's GPU when asked for (``backend="keras"``).

TensorFlow is imported only when a model is built or trained, or when its Keras network is used
(``model_``, ``score_keras``, the ``.keras`` file), never at module import nor by loading a fitted
model (:mod:`hitbench.methods.tf_runtime`): numba and ONNX Runtime score frames without it.

Training is repeatable for a seed (``random_state``) and touches no global random generator. A
fitted model is saved with :func:`hitbench.modelfile.save_model` or, with its Keras network
readable by Keras, :func:`hitbench.methods.cnn_file.save_keras`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy import special

from hitbench.errors import HitbenchError
from hitbench.frames import ArrayFrames, FrameSource, check_finite
from hitbench.methods import tf_runtime
from hitbench.methods.base import HitMethod
from hitbench.methods.cnn_batches import DecodedCopy, training_batches
from hitbench.methods.cnn_network import build_model, inference_weights
from hitbench.methods.cnn_onnx import onnx_session, to_onnx
from hitbench.methods.thresholds import fit_threshold
from hitbench.parallel import on_frame_slices

_NORMALISATIONS = ("log1p", "linear")
_BACKENDS = ("auto", "numba", "onnx", "keras")
#: Training steps Keras runs per call of its compiled train function (fewer returns to Python).
STEPS_PER_EXECUTION = 10


class ReferenceCNN(HitMethod):
    """The reference study's CNN (Table I, 11,098 parameters at 350x350), trained in Keras, scored compiled.

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
        Rate of the three dropout layers (Table I gives none). Chosen with ``normalisation`` on
        validation frames by benchmarks/cnn_settings.py (docs/methods.md): 0.25 at the default
        scale (the default), 0 at the study's scale.
    validation_split : float
        Fraction of the training frames held out (stratified) to monitor the validation loss
        for early stopping; 0 trains on everything for ``epochs`` epochs.
    patience : int
        Early stopping: epochs without validation-loss improvement before stopping (the best
        weights are restored). Ignored when ``validation_split`` is 0.
    normalisation : {"log1p", "linear"}
        Input transform after clipping negative ADU to 0, before per-training-set standardisation
        (the study gives none): ``"log1p"`` at the default scale (the default), ``"linear"`` at the
        study's scale, chosen with the dropout rate.
    class_weight : {"balanced", None}
        Weight the loss by inverse class frequency (hits are often rare; the study: None).
    flip_augment : bool
        Flip each training frame at random (left-right, up-down, both or neither) anew every
        epoch; the study: False.
    random_state : int
        Seed of weights, dropout, shuffling, flips and the validation split, each drawn from its
        own generator: training on the CPU is repeatable for a seed whatever else the process
        trained or drew, and no global generator is reseeded. On a GPU, some TensorFlow kernels
        are repeatable only with ``tf.config.experimental.enable_op_determinism()``, the user's call.
    backend : {"auto", "numba", "onnx", "keras"}
        Inference engine (see the module docstring); "auto" picks numba unless ONNX Runtime can use a GPU.
    inference_batch_size : int
        Frames per inference batch of ONNX Runtime and Keras (numba needs no batches).
    verbose : int
        Keras training verbosity (0 silent).
    decision_threshold : float, "fitted" or "validation"
        P(hit) above which a frame is a hit; "fitted": the cut with the best balanced
        accuracy on the training frames, half-way (in log-odds) across the gap between the
        training scores on either side of it (P(hit) > 0.5 where no cut beats chance). The
        fitted cut sits low, just above the misses, where a network trained on one experiment
        is sharpest on its own runs and least safe on other detectors. "validation": the same
        fit on the held-out validation frames (``validation_split`` > 0), which the network
        did not train on (``threshold_source_`` records which frames the cut was fitted on).
    """

    name: ClassVar[str] = "cnn"
    score_is_probability: ClassVar[bool] = True

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
    def _standardised(self, frames: np.ndarray, mean: float, std: float) -> np.ndarray:
        """Clip, normalise and standardise, float32, in a new array (one compiled pass a frame)."""
        from hitbench.methods import _cnn_kernel

        frames = np.ascontiguousarray(frames, dtype=np.float32)
        out = np.empty(frames.shape, dtype=np.float32)
        _cnn_kernel.standardise(frames, self.normalisation == "log1p", mean, std, out)
        return out

    def _transform(self, frames: np.ndarray) -> np.ndarray:
        """Clip and normalise (before standardisation), float32, in a new array."""
        return self._standardised(frames, 0.0, 1.0)

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
        return self._standardised(frames, self.input_mean_, self.input_std_)[..., np.newaxis]

    def check_params(self, frame_shape: tuple[int, int]) -> None:
        """Refuse a setting the network cannot train or score with (see :meth:`HitMethod.check_params`).

        Parameters
        ----------
        frame_shape : tuple of int
            (height, width) of the frames.
        """
        if self.normalisation not in _NORMALISATIONS:
            raise HitbenchError(f"cnn: normalisation={self.normalisation!r}; use one of {', '.join(_NORMALISATIONS)}")
        if self.backend not in _BACKENDS:
            raise HitbenchError(f"cnn: backend={self.backend!r}; use one of {', '.join(_BACKENDS)}")
        if self.class_weight not in (None, "balanced"):
            raise HitbenchError(f"cnn: class_weight={self.class_weight!r}; use None or 'balanced'")
        if not 0.0 <= self.validation_split < 1.0:
            raise HitbenchError(f"cnn: validation_split={self.validation_split}; give a fraction in [0, 1)")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise HitbenchError(f"cnn: {name}={value!r}; give a whole number, 1 or more")
        fixed = self.decision_threshold
        if fixed not in ("fitted", "validation") and not (isinstance(fixed, float | int) and 0 < fixed < 1):
            raise HitbenchError(
                f"cnn: decision_threshold={fixed!r}; give 'fitted', 'validation' or a P(hit) between 0 and 1"
            )
        if fixed == "validation" and not self.validation_split > 0:
            raise HitbenchError(
                "cnn: decision_threshold='validation' needs validation frames; set validation_split > 0"
            )

    # -- training ------------------------------------------------------------------------
    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        if isinstance(frames, ArrayFrames):
            self._fit_network(frames, labels)
            return
        copy = DecodedCopy(frames)  # read from files: decoded once, not once an epoch
        try:
            self._fit_network(copy, labels)
        finally:
            copy.close()

    def _fit_network(self, frames: FrameSource, labels: np.ndarray) -> None:
        keras = tf_runtime.keras()
        from sklearn.model_selection import train_test_split
        from sklearn.utils.class_weight import compute_class_weight

        self.input_mean_, self.input_std_ = self._input_statistics(frames)
        y = keras.utils.to_categorical(labels, 2)
        train = val = np.arange(len(frames))
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

        model = build_model(frames.frame_shape, self.dropout, seed=self.random_state)
        schedule = keras.optimizers.schedules.InverseTimeDecay(self.learning_rate, 1, self.decay)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=self.momentum),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=STEPS_PER_EXECUTION,
        )
        history = model.fit(
            batches,
            shuffle=False,  # the batches shuffle themselves (seeded); Keras would use Python's global generator
            epochs=self.epochs,
            class_weight=weights,
            validation_data=validation_data,
            callbacks=callbacks,
            verbose=self.verbose,
        )
        self._model, self._network_weights = model, None
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        self.n_epochs_ = len(self.history_["loss"])
        self._onnx_session = self._folded = None
        fitted = self.decision_threshold in ("fitted", "validation")
        self.threshold_ = 0.5 if fitted else float(self.decision_threshold)
        self.threshold_source_ = str(self.decision_threshold) if fitted else "given"
        if fitted:  # the best cut on the training (or validation) frames, half-way across its gap
            rows = np.arange(len(frames)) if self.decision_threshold == "fitted" else val
            scores = np.concatenate([self._score(frames.take(rows[i : i + 256])) for i in range(0, len(rows), 256)])
            odds = special.logit(np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7))
            cut, balanced_accuracy = fit_threshold(odds, labels[rows])
            if balanced_accuracy > 0.5:  # else no cut beats chance there: keep P(hit) > 0.5
                self.threshold_ = float(special.expit(cut))

    # -- inference -----------------------------------------------------------------------
    def _engine(self) -> str:
        """The backend to run: ``backend``, or for "auto" ONNX Runtime where it can use a GPU, else numba."""
        if self.backend != "auto":
            return self.backend
        import onnxruntime as ort

        return "onnx" if "CUDAExecutionProvider" in ort.get_available_providers() else "numba"

    @property
    def model_(self):
        """The trained Keras network, built from the fitted weights when first asked for (TensorFlow is imported then).

        Returns
        -------
        keras.Model
            See :func:`hitbench.methods.cnn_network.build_model`.
        """
        if getattr(self, "_model", None) is None:
            if getattr(self, "_network_weights", None) is None:
                raise AttributeError("model_: the cnn is not fitted")
            self._model = self._network(self._network_weights)
        return self._model

    def _weight_arrays(self) -> list[np.ndarray]:
        """The network's weights as ``get_weights()`` lists them, without building the network."""
        if getattr(self, "_model", None) is None:
            return self._network_weights
        return [np.asarray(w) for w in self._model.get_weights()]

    def _inference_weights(self) -> dict[str, np.ndarray]:
        """The folded weights of the inference engines (kept until the network changes by fit or load)."""
        if getattr(self, "_folded", None) is None:
            self._folded = inference_weights(
                self._weight_arrays(), input_mean=self.input_mean_, input_std=self.input_std_
            )
        return self._folded

    def onnx_model(self) -> bytes:
        """The fitted network as a serialised ONNX graph taking raw frames (n, H, W) to P(hit).

        Returns
        -------
        bytes
            See :func:`to_onnx`.
        """
        self._check_predict_input(np.zeros((1, *self.frame_shape_), dtype=np.float32))
        return to_onnx(self._inference_weights(), tuple(self.frame_shape_), normalisation=self.normalisation)

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

    def score_numba(self, frames: np.ndarray, threads: int | None = None) -> np.ndarray:
        """P(hit) per frame through the compiled kernel, the frames split over ``threads`` threads.

        Parameters
        ----------
        frames : numpy.ndarray, shape (n, H, W)
            Frames (validated float32).
        threads : int, optional
            Threads, each scoring a contiguous share of the frames; default: the cores this
            process may use.

        Returns
        -------
        numpy.ndarray, shape (n,)
            P(hit), float32.
        """
        return self._numba_scores(frames, threads)[0]

    def _numba_scores(self, frames: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score_numba`'s scores, and whether each frame holds a NaN or Inf pixel (its score is then void)."""
        from hitbench.methods import _cnn_kernel

        weights = self._inference_weights()
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        out, nonfinite = np.empty(len(frames), dtype=np.float32), np.empty(len(frames), dtype=np.bool_)
        log1p = self.normalisation == "log1p"

        def score(start: int, stop: int) -> None:
            part = slice(start, stop)
            _cnn_kernel.score_frames(frames[part], log1p, **weights, out=out[part], nonfinite=nonfinite[part])

        on_frame_slices(score, len(frames), threads)
        return out, nonfinite

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return getattr(self, f"score_{self._engine()}")(frames)

    def _score_finite(self, frames: np.ndarray) -> np.ndarray:
        if self._engine() != "numba":
            return super()._score_finite(frames)
        scores, nonfinite = self._numba_scores(frames)  # the kernel's pass over the pixels makes the check
        check_finite(frames, np.where(nonfinite, np.nan, 0.0))
        return scores

    # -- persistence ---------------------------------------------------------------------
    def _network(self, weights: list[np.ndarray] | None = None):
        """The network for the fitted frame shape, built from the parameters (never from a saved Keras config)."""
        model = build_model(tuple(self.frame_shape_), self.dropout)
        if weights is not None:
            model.set_weights(weights)
        return model

    def set_params(self, **params: Any) -> ReferenceCNN:
        """Set parameters as scikit-learn does; an ONNX session made before (its graph holds the
        normalisation) is dropped.

        Parameters
        ----------
        **params
            Parameter name -> value.

        Returns
        -------
        ReferenceCNN
            This method.
        """
        self._onnx_session = None
        return super().set_params(**params)

    def _saved_state(self) -> dict[str, Any]:
        return {**super()._saved_state(), "model_": self._weight_arrays()}

    def _restore_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        weights = state.pop("model_")
        super()._restore_state(state)
        self._network_weights, self._model = weights, None  # the Keras network is built when first asked for
        self._onnx_session = self._folded = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__ itself
        for cached in ("_model", "_onnx_session", "_folded"):
            state.pop(cached, None)
        if "_network_weights" in state:
            state["_network_weights"] = self._weight_arrays()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "model_" in state:  # pickled by hitbench before the network was built lazily
            state["_network_weights"] = state.pop("model_")
        super().__setstate__(state)
        self._model = self._onnx_session = self._folded = None
