"""Checks specific to the ``cnn`` method: Table I, the inference engines, persistence, seeds.

The generic method checks (accuracy, clone, errors) live in test_methods.py. These tests use
small synthetic frames (64x64, bright planted pixels on hits) and 2 epochs: they check the
network's shape, that the inference engines agree and that models round-trip, not accuracy; the
golden scores (tests/data/golden_cnn.*) are those of 350x350 frames.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from hitbench.errors import HitbenchError
from hitbench.methods import registry

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow  # TensorFlow: every test builds, trains or loads a network

from hitbench.frames import ArrayFrames  # noqa: E402
from hitbench.methods.base import leaf_params  # noqa: E402
from hitbench.methods.cnn import ReferenceCNN  # noqa: E402
from hitbench.methods.cnn_batches import training_batches  # noqa: E402
from hitbench.methods.cnn_file import save_keras  # noqa: E402
from hitbench.methods.cnn_network import build_model  # noqa: E402
from hitbench.modelfile import load_model  # noqa: E402

FAST = {"epochs": 2, "batch_size": 20, "validation_split": 0.2, "random_state": 3}


def synthetic_frames(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Poisson background (a few negative noise values) plus 8 bright pixels on every hit."""
    rng = np.random.default_rng(seed)
    frames = rng.poisson(0.4, (n, size, size)).astype(np.float32) - rng.random((n, size, size), np.float32) * 0.5
    labels = np.arange(n) % 2
    for i in np.flatnonzero(labels):
        rows, cols = rng.integers(2, size - 2, (2, 8))
        frames[i, rows, cols] += rng.uniform(20, 200, 8).astype(np.float32)
    return frames, labels


@pytest.fixture(scope="module")
def data():
    return synthetic_frames(60), synthetic_frames(24, seed=1)[0]


@pytest.fixture(scope="module")
def fitted(data):
    (frames, labels), _ = data
    return ReferenceCNN(**FAST).fit(frames, labels)


def test_table_one_has_11098_trainable_parameters_at_350():
    model = build_model((350, 350))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 11_098
    # the Keras layer each is (some are Keras layers computed faster: hitbench.methods.cnn_layers; each stage's
    # row batch normalisation and max pooling are one layer, the first one with the dropout before it)
    kinds = [next(c.__name__ for c in type(ly).__mro__ if c.__module__.startswith("keras")) for ly in model.layers]
    kinds = [
        ("Dropout + " if getattr(layer, "dropout", 0) else "")
        + kind
        + (" + MaxPooling2D" * hasattr(layer, "pool_size"))
        for kind, layer in zip(kinds, model.layers, strict=True)
    ]
    assert [(kind, tuple(layer.output.shape[1:])) for kind, layer in zip(kinds, model.layers, strict=True)] == [
        ("Conv2D", (344, 344, 4)),
        ("Dropout + BatchNormalization + MaxPooling2D", (68, 68, 4)),
        ("ReLU", (68, 68, 4)),  # after the pooling: the same values (test_relu_after_pooling_...)
        ("Conv2D", (62, 62, 4)),
        ("BatchNormalization + MaxPooling2D", (12, 12, 4)),
        ("ReLU", (12, 12, 4)),
        ("Dropout", (12, 12, 4)),
        ("Flatten", (576,)),
        ("Dense", (16,)),
        ("BatchNormalization", (16,)),
        ("ReLU", (16,)),
        ("Dropout", (16,)),
        ("Dense", (2,)),
    ]
    # batch normalisation over image rows: one gamma and beta per row
    assert model.get_layer("bn_rows_pool1").count_params() == 4 * 344
    assert [int(w.shape[0]) for w in model.get_layer("bn_rows_pool1").trainable_weights] == [344, 344]


def test_fast_layers_compute_what_the_keras_layers_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """ColumnBlockConv2D (with every block size a CPU may get), RowBatchNormalization, RowBatchNormMaxPooling and
    ByteDropout against Keras's Conv2D, BatchNormalization(axis=1), BatchNormalization(axis=1) then MaxPooling2D,
    and Dropout."""
    import keras
    import tensorflow as tf

    from hitbench.methods import cnn_layers
    from hitbench.methods.cnn_layers import (
        ByteDropout,
        ColumnBlockConv2D,
        RowBatchNormalization,
        RowBatchNormMaxPooling,
    )

    assert cnn_layers.column_block() in (2, 8)
    for block, width in ((8, 30), (4, 30), (2, 30), (8, 29)):  # 24 output columns in blocks; 23: Keras's own
        monkeypatch.setattr(cnn_layers, "column_block", lambda block=block: block)
        frames = tf.constant(np.random.default_rng(1).normal(0.0, 1.0, (3, 26, width, 1)).astype(np.float32))
        fast, plain = ColumnBlockConv2D(4, 7, bias_initializer="glorot_uniform"), keras.layers.Conv2D(4, 7)
        fast.build(frames.shape), plain.build(frames.shape)
        plain.set_weights(fast.get_weights())
        with tf.GradientTape(persistent=True) as tape:
            outputs = [layer(frames) for layer in (fast, plain)]
            losses = [tf.reduce_sum(tf.sin(out)) for out in outputs]
        np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)
        grads = [tape.gradient(loss, ly.trainable_weights) for loss, ly in zip(losses, (fast, plain), strict=True)]
        for fast_grad, plain_grad in zip(*grads, strict=True):  # kernel and bias
            np.testing.assert_allclose(fast_grad, plain_grad, rtol=1e-4, atol=1e-4)

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (6, 20, 24, 4)).astype(np.float32))
    fast, plain = RowBatchNormalization(axis=1), keras.layers.BatchNormalization(axis=1)
    for layer in (fast, plain):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 20).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outputs = [layer(x, training=True) for layer in (fast, plain)]
        losses = [tf.reduce_sum(tf.sin(out)) for out in outputs]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=2e-5)
    np.testing.assert_allclose(tape.gradient(losses[0], x), tape.gradient(losses[1], x), atol=2e-5)
    weight_grads = [tape.gradient(losses[0], fast.trainable_weights), tape.gradient(losses[1], plain.trainable_weights)]
    for fast_grad, plain_grad in zip(*weight_grads, strict=True):  # gamma and beta
        np.testing.assert_allclose(fast_grad, plain_grad, rtol=1e-4, atol=1e-3)
    for a, b in zip(fast.non_trainable_weights, plain.non_trainable_weights, strict=True):  # moving mean and variance
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast(x, training=False), plain(x, training=False), atol=1e-5)

    # batch normalisation then pooling as one layer: windows with tied values (the first maximum takes the
    # gradient, as TensorFlow's pooling), rows whose scale is negative, rows and columns no window covers
    pool = keras.layers.MaxPooling2D(5)
    for shape in ((6, 22, 27, 4), (1, 17, 15, 4)):
        x = tf.constant(np.random.default_rng(2).normal(2.0, 3.0, shape).astype(np.float32))
        x = tf.where(x > 4.0, 1.5, x)
        pooled_bn, plain_bn = RowBatchNormMaxPooling(5, axis=1), keras.layers.BatchNormalization(axis=1)
        for layer in (pooled_bn, plain_bn):
            layer.build(x.shape)
            layer.gamma.assign(np.linspace(-2.0, 2.0, shape[1]).astype(np.float32))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            outputs = [pooled_bn(x, training=True), pool(plain_bn(x, training=True))]
            losses = [tf.reduce_sum(tf.sin(out)) for out in outputs]
        assert outputs[0].shape == outputs[1].shape == (shape[0], shape[1] // 5, shape[2] // 5, 4)
        np.testing.assert_allclose(outputs[0], outputs[1], atol=2e-5)
        np.testing.assert_allclose(tape.gradient(losses[0], x), tape.gradient(losses[1], x), atol=2e-5)
        for fast_grad, plain_grad in zip(
            tape.gradient(losses[0], pooled_bn.trainable_weights),
            tape.gradient(losses[1], plain_bn.trainable_weights),
            strict=True,
        ):
            np.testing.assert_allclose(fast_grad, plain_grad, rtol=1e-4, atol=1e-3)
        for a, b in zip(pooled_bn.non_trainable_weights, plain_bn.non_trainable_weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pooled_bn(x, training=False), pool(plain_bn(x, training=False)), atol=1e-5)

    # with the dropout before the normalisation: the same masks, outputs, gradients and statistics as ByteDropout
    # then the layer, to the bit; a rate the bytes cannot draw takes Keras's dropout in both
    x = tf.constant(np.random.default_rng(3).normal(2.0, 3.0, (6, 22, 27, 4)).astype(np.float32))
    for rate in (0.25, 0.1):
        fused, dropout = RowBatchNormMaxPooling(5, rate, seed=7, axis=1), ByteDropout(rate, seed=7)
        plain = RowBatchNormMaxPooling(5, axis=1)
        for layer in (fused, plain):
            layer.build(x.shape)
            layer.gamma.assign(np.linspace(-2.0, 2.0, x.shape[1]).astype(np.float32))
        for _ in range(2):  # the seed generators advance alike
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x)
                outputs = [fused(x, training=True), plain(dropout(x, training=True), training=True)]
                losses = [tf.reduce_sum(tf.sin(out)) for out in outputs]
            np.testing.assert_array_equal(outputs[0], outputs[1])
            np.testing.assert_array_equal(tape.gradient(losses[0], x), tape.gradient(losses[1], x))
            for a, b in zip(
                tape.gradient(losses[0], fused.trainable_weights) + fused.non_trainable_weights,
                tape.gradient(losses[1], plain.trainable_weights) + plain.non_trainable_weights,
                strict=True,
            ):
                np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fused(x, training=False), plain(x, training=False))

    ones = tf.ones((50, 40, 40, 4))
    dropped = ByteDropout(0.25, seed=1)(ones, training=True).numpy()
    assert set(np.unique(dropped)) == {0.0, np.float32(1 / 0.75)}
    assert abs((dropped == 0).mean() - 0.25) < 0.005  # 320,000 draws: 5 standard deviations
    assert not np.array_equal(dropped, ByteDropout(0.25, seed=2)(ones, training=True).numpy())
    np.testing.assert_array_equal(ByteDropout(0.25)(ones, training=False), ones)


@pytest.mark.parametrize("normalisation", ["log1p", "linear"])
def test_training_input_is_the_standardised_normalisation(normalisation: str) -> None:
    """The network's training input, one compiled pass a frame, is ``(log1p(max(x, 0)) - mean) / std`` (or without
    the logarithm) within float32 rounding, on whole ADU, negative values, fractions and saturated pixels."""
    rng = np.random.default_rng(4)
    frames = np.concatenate(
        [rng.poisson(0.1, (3, 40, 50)) * 28.0 + rng.normal(0, 4, (3, 40, 50)), np.full((1, 40, 50), 14000.0)]
    ).astype(np.float32)
    method = ReferenceCNN(normalisation=normalisation)
    method.input_mean_, method.input_std_ = 0.37, 1.9
    clipped = np.maximum(frames.astype(np.float64), 0.0)
    expected = ((np.log1p(clipped) if normalisation == "log1p" else clipped) - 0.37) / 1.9
    got = method._keras_input(frames)
    assert got.shape == (*frames.shape, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got[..., 0], expected, rtol=2e-6, atol=2e-6)
    whole = np.rint(frames[:1])  # integer frames (as read from a file) give what their float32 values give
    np.testing.assert_array_equal(method._transform(whole.astype(np.int16)), method._transform(whole))


def test_too_small_frames_are_refused():
    with pytest.raises(HitbenchError, match="at least 39x39"):
        build_model((32, 32))


def test_onnx_scores_equal_keras(fitted, data):
    _, test = data
    keras_scores = fitted.score_keras(test)
    assert np.abs(fitted.score_onnx(test) - keras_scores).max() < 1e-4
    assert np.ptp(keras_scores) > 0  # the check compares real, varying scores


def test_onnx_equal_with_negative_row_scales_and_linear_input(fitted, data):
    """The ONNX graph's column-pool-first rewrite handles rows whose batch-norm scale is negative."""
    _, test = data
    model = negative_rows_linear(fitted)
    assert np.abs(model.score_onnx(test) - model.score_keras(test)).max() < 1e-4


def test_onnx_session_follows_set_params(fitted, data):
    """A session made before set_params(normalisation=...) is not reused: its graph holds the old normalisation."""
    _, test = data
    model = pickle.loads(pickle.dumps(fitted))
    before = model.score_onnx(test)
    model.set_params(normalisation="linear")
    after = model.score_onnx(test)
    assert np.abs(after - model.score_keras(test)).max() < 1e-4
    assert np.abs(after - before).max() > 1e-3  # the two normalisations do score differently


def test_numba_scores_equal_onnx_on_any_frame_shape_and_thread_count(fitted, data):
    """The kernel on 64x64 frames (stage widths that are not whole vectors) and on 97x64 frames (a padded
    second stage), split over 1 to 5 threads: the same scores on every split, equal to ONNX Runtime's."""
    _, test = data
    scores = fitted.score_numba(test, threads=1)
    assert np.abs(scores - fitted.score_onnx(test)).max() < 1e-6
    for threads in (2, 5, 100):
        np.testing.assert_array_equal(fitted.score_numba(test, threads=threads), scores)
    np.testing.assert_array_equal(fitted.score_numba(test[3:4]), scores[3:4])
    frames, labels = synthetic_frames(20, size=97, seed=2)
    oblong = ReferenceCNN(epochs=1, batch_size=10).fit(frames[:, :64], labels)
    assert np.abs(oblong.score_numba(frames[:, :64]) - oblong.score_onnx(frames[:, :64])).max() < 1e-6


def test_numba_refuses_nan_and_inf_from_its_own_pass(fitted, data):
    """decision_function through numba checks NaN and Inf in the kernel's pass over the pixels (no pass of its
    own): one bad pixel in one frame is refused with the one-line error; huge finite values are scored."""
    _, test = data
    fitted.set_params(backend="numba")
    for bad in (np.nan, np.inf, -np.inf):
        frames = test.copy()
        frames[2, 40, 7] = bad
        with pytest.raises(HitbenchError, match=r"1 frame\(s\) contain NaN or Inf"):
            fitted.decision_function(frames)
        with pytest.raises(HitbenchError, match=r"1 frame\(s\) contain NaN or Inf"):
            fitted.set_params(normalisation="linear").decision_function(frames)
        fitted.set_params(normalisation="log1p")
    huge = np.full_like(test[:2], 3e38)  # the frame's float32 sum overflows; every pixel is finite
    assert np.isfinite(fitted.decision_function(huge)).all()
    fitted.set_params(backend="auto")


def test_backend_choice(fitted, data):
    _, test = data
    for backend, path in (("keras", fitted.score_keras), ("onnx", fitted.score_onnx), ("numba", fitted.score_numba)):
        fitted.set_params(backend=backend)
        np.testing.assert_array_equal(fitted.decision_function(test), path(test).astype(np.float64))
    fitted.set_params(backend="auto")
    with pytest.raises(HitbenchError, match="backend"):
        fitted.set_params(backend="tensorrt").predict(test)
    fitted.set_params(backend="auto")


def test_save_and_load_keras_file(fitted, data, tmp_path):
    import keras

    _, test = data
    path = save_keras(fitted, tmp_path / "model.keras")
    loaded = load_model(path)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.input_mean_ == fitted.input_mean_ and loaded.frame_shape_ == fitted.frame_shape_
    np.testing.assert_array_equal(loaded.decision_function(test), fitted.decision_function(test))
    np.testing.assert_array_equal(loaded.score_keras(test), fitted.score_keras(test))
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temporary file left behind
    network = keras.saving.load_model(path)  # Keras users read the same file
    inputs = fitted._keras_input(test)
    np.testing.assert_allclose(network.predict_on_batch(inputs), fitted.model_.predict_on_batch(inputs), atol=1e-6)
    with pytest.raises(HitbenchError, match=r"\.keras"):
        save_keras(fitted, tmp_path / "model.h5")
    with pytest.raises(HitbenchError, match="no such model file"):
        load_model(tmp_path / "missing.keras")
    with pytest.raises(HitbenchError, match="not fitted"):
        save_keras(ReferenceCNN(), tmp_path / "unfitted.keras")


def test_cnn_robust_round_trips_through_a_keras_file(tmp_path):
    frames, labels = _spot_frames(20)
    fitted = registry.get("cnn-robust", method__epochs=1, method__batch_size=10).fit(frames, labels)
    path = save_keras(fitted, tmp_path / "robust.keras", name="cnn-robust")
    loaded = load_model(path)
    assert leaf_params(loaded) == leaf_params(fitted)
    np.testing.assert_array_equal(loaded.decision_function(frames), fitted.decision_function(frames))
    with pytest.raises(HitbenchError, match="no fitted cnn network"):
        save_keras(registry.get("litpix").fit(frames, labels), tmp_path / "litpix.keras", name="litpix")


def test_joblib_round_trip(fitted, data, tmp_path):
    _, test = data
    joblib.dump(fitted, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict(test), fitted.predict(test))
    np.testing.assert_array_equal(loaded.score_keras(test), fitted.score_keras(test))
    np.testing.assert_array_equal(loaded.score_onnx(test), fitted.score_onnx(test))


def test_same_seed_same_predictions(fitted, data):
    (frames, labels), test = data
    again = ReferenceCNN(**FAST).fit(frames, labels)
    assert again.history_ == fitted.history_
    np.testing.assert_array_equal(again.score_keras(test), fitted.score_keras(test))


def test_flipped_batches_show_every_frame_once_per_epoch_in_one_of_four_orientations():
    rng = np.random.default_rng(0)
    stored = ArrayFrames(rng.random((23, 9, 9), dtype=np.float32))
    original = stored.frames.copy()
    x = original[..., np.newaxis]
    y = np.eye(2, dtype=np.float32)[np.arange(23) % 2]
    batches = training_batches(stored, np.arange(23), y, 5, standardise=lambda f: f[..., np.newaxis], seed=1, flip=True)
    orientations = [lambda f: f, lambda f: f[:, ::-1], lambda f: f[::-1], lambda f: f[::-1, ::-1]]
    used = set()
    for _ in range(3):
        seen = []
        assert len(batches) == 5
        for i in range(len(batches)):
            frames, labels = batches[i]
            assert len(frames) == (3 if i == 4 else 5)
            for frame, label in zip(frames, labels, strict=True):
                matches = [
                    (source, k)
                    for source in range(len(x))
                    for k, flip in enumerate(orientations)
                    if np.array_equal(frame, flip(x[source]))
                ]
                assert len(matches) == 1  # random frames: one source frame in one orientation
                source, orientation = matches[0]
                np.testing.assert_array_equal(label, y[source])
                used.add(orientation)
                seen.append(source)
        assert sorted(seen) == list(range(23))
        batches.on_epoch_end()
    assert used == {0, 1, 2, 3}
    np.testing.assert_array_equal(stored.frames, original)  # the training frames themselves are never flipped


def test_flip_augment_trains_repeatably(data):
    (frames, labels), test = data
    params = {**FAST, "validation_split": 0.0, "flip_augment": True}
    first, second = ReferenceCNN(**params).fit(frames, labels), ReferenceCNN(**params).fit(frames, labels)
    assert first.history_ == second.history_
    np.testing.assert_array_equal(first.score_onnx(test), second.score_onnx(test))


def test_importing_the_module_does_not_import_tensorflow_or_numba():
    code = (
        "import sys, hitbench.methods.cnn;"
        " sys.exit(int(any(m in sys.modules for m in ('tensorflow', 'keras', 'numba'))))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bad_parameters_give_one_line_errors(data):
    (frames, labels), _ = data
    with pytest.raises(HitbenchError, match="normalisation"):
        ReferenceCNN(normalisation="sqrt").fit(frames, labels)
    with pytest.raises(HitbenchError, match="validation_split"):
        ReferenceCNN(validation_split=0.9, epochs=1).fit(frames[:6], labels[:6])


def test_training_touches_nothing_of_the_process():
    """No TensorFlow C++ log lines once it is loaded, other threads' stderr kept, global generators untouched."""
    code = (
        "import os, random, sys, threading, warnings, numpy as np\n"
        "from hitbench.methods import tf_runtime\n"
        "from hitbench.methods.cnn import ReferenceCNN\n"
        "tf_runtime.keras()\n"
        "print('loaded', file=sys.stderr, flush=True)\n"
        "x = np.random.default_rng(0).poisson(0.4, (20, 64, 64)).astype(np.float32); y = np.arange(20) % 2\n"
        "before = random.getstate(), np.random.get_state()[1].copy()\n"
        "talk = threading.Thread(target=lambda: os.write(2, b'other thread\\n')); talk.start()\n"
        "ReferenceCNN(epochs=1, batch_size=10, flip_augment=True).fit(x, y); talk.join()\n"
        "assert random.getstate() == before[0] and (np.random.get_state()[1] == before[1]).all()\n"
        "warnings.warn('still shown')"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    after_loading = result.stderr.split("loaded\n", 1)[1]
    assert "still shown" in after_loading and "other thread" in after_loading
    assert "] " not in after_loading and "cuda" not in after_loading.lower(), after_loading
    assert "cuda drivers" not in result.stderr and "oneDNN" not in result.stderr, result.stderr


def test_tensorflow_load_notices_dropped_and_other_output_kept(capfd: pytest.CaptureFixture) -> None:
    """While TensorFlow loads, its absl INFO notices are dropped; every other line on fd 2 is written back."""
    from hitbench.methods.tf_runtime import _load_notices_dropped

    with _load_notices_dropped(quiet=True):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796212038.448482   31700 cudart_stub.cc:31] Could not find cuda drivers\n")
        os.write(2, b"another thread's line\n")
        os.write(2, b"I0000 00:00:1796212038.5   31700 cpu_feature_guard.cc:210] This TensorFlow binary is optimized\n")
        os.write(2, b"To enable the following instructions: AVX2, rebuild TensorFlow\n")  # the record goes on
        os.write(2, b"E0000 00:00:1796212038.6   31700 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR\n")
        os.write(2, b"W0000 00:00:1796212038.448482   31700 port.cc:1] a warning\n")
        os.write(2, b"and its second line\n")
    kept = capfd.readouterr().err.splitlines()
    assert kept == [
        "another thread's line",
        "W0000 00:00:1796212038.448482   31700 port.cc:1] a warning",
        "and its second line",
    ]
    with _load_notices_dropped(quiet=False):
        os.write(2, b"I0000 00:00:1.5  1 port.cc:1] shown when the user asks for TensorFlow's log\n")
    assert "shown" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("variable", "users", "expected"),
    [
        ("TF_CPP_MIN_LOG_LEVEL", "1", "1"),
        ("TF_ENABLE_ONEDNN_OPTS", "0", "0"),
        ("TF_ENABLE_ONEDNN_OPTS", None, "1"),  # oneDNN on where TensorFlow would leave it off (CPUs without AVX-512)
    ],
)
def test_tensorflow_settings_default_and_users_kept(variable: str, users: str | None, expected: str) -> None:
    code = f"import os; from hitbench.methods import tf_runtime; tf_runtime.keras(); print(os.environ['{variable}'])"
    env = {k: v for k, v in os.environ.items() if k != variable}
    if users is not None:
        env[variable] = users
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == expected


def _spot_frames(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CSPAD-like photon frames (28 ADU per photon); every hit has ten two-pixel spots."""
    rng = np.random.default_rng(seed)
    frames = rng.poisson(2, (n, 64, 64)).astype(np.float32) * 28
    labels = np.arange(n) % 2
    for i in np.flatnonzero(labels):
        rows, cols = rng.integers(5, 59, (2, 10))
        frames[i, rows, cols] += 3000
        frames[i, rows + 1, cols] += 2000
    return frames, labels


def test_cnn_robust_fits_its_cut_between_the_training_classes():
    frames, labels = _spot_frames()
    fitted = registry.get(
        "cnn-robust",
        method__epochs=10,
        method__batch_size=10,
        method__decision_threshold="fitted",
        method__validation_split=0.0,  # the cut on every training frame, the network trained on all of them
        # a flat background gives the photon transfer curve no slope to estimate the gain from
        preprocess__adu_per_photon=28.0,
    ).fit(frames, labels)
    scores = fitted.decision_function(frames)
    assert scores[labels == 0].max() < fitted.method_.threshold_ < scores[labels == 1].min()
    np.testing.assert_array_equal(fitted.predict(frames), labels)
    fixed = ReferenceCNN(epochs=1, batch_size=10, decision_threshold=0.3).fit(frames, labels)
    assert fixed.threshold_ == 0.3
    with pytest.raises(HitbenchError, match="decision_threshold"):
        ReferenceCNN(epochs=1, decision_threshold=1.5).fit(frames, labels)


def test_relu_after_pooling_computes_table_one_exactly() -> None:
    """Each stage pools before its ReLU; in Table I's order (batch normalisation, ReLU, then pooling) Keras's
    layers with the same weights give the same outputs and gradients: to the bit at inference, and to float
    rounding in training, where the stage's normalisation and pooling are compiled passes."""
    import tensorflow as tf

    from hitbench.methods import tf_runtime
    from hitbench.methods.cnn_layers import RowBatchNormMaxPooling

    keras = tf_runtime.keras()
    x = tf.constant(np.random.default_rng(0).normal(0.5, 2.0, (6, 22, 27, 4)).astype(np.float32))
    ours, theirs = RowBatchNormMaxPooling(5, axis=1), keras.layers.BatchNormalization(axis=1)
    relu, pool = keras.layers.ReLU(), keras.layers.MaxPooling2D(5)
    gamma = np.linspace(0.5, 2.0, 22).astype(np.float32)
    gamma[::3] *= -1  # a negative scale turns a row's maximum into its minimum: the order matters there
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.set_weights([gamma, np.linspace(-1.0, 1.0, 22).astype(np.float32), *layer.get_weights()[2:]])
    for training in (False, True):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            outputs = relu(ours(x, training=training)), pool(relu(theirs(x, training=training)))
            losses = [tf.reduce_sum(tf.sin(out)) for out in outputs]
        grads = [
            tape.gradient(loss, [x, *layer.trainable_weights])
            for loss, layer in zip(losses, (ours, theirs), strict=True)
        ]
        if not training:
            assert np.array_equal(outputs[0].numpy(), outputs[1].numpy())
            assert np.array_equal(grads[0][0].numpy(), grads[1][0].numpy())
            continue
        np.testing.assert_allclose(outputs[0], outputs[1], atol=2e-5)
        for a, b in zip(*grads, strict=True):  # x, gamma, beta
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- golden scores
GOLDEN = Path(__file__).parent / "data" / "golden_cnn"


def golden_frames() -> np.ndarray:
    """The golden file's inputs: ten 350x350 frames of whole ADU (int16): Poisson backgrounds with a few
    negative pixels, hits with 8 to 40 bright pixels (up to 30,000 ADU), and two 0/1 maps as cnn-robust feeds
    its network."""
    rng = np.random.default_rng(19)
    frames = rng.poisson(0.4, (10, 350, 350)) - (rng.random((10, 350, 350)) < 0.03)
    frames[6:8] *= 28  # CSPAD-like ADU per photon
    for i, n_bright in ((1, 8), (3, 40), (5, 20), (7, 30)):
        rows, cols = rng.integers(2, 348, (2, n_bright))
        frames[i, rows, cols] += rng.integers(20, 30_000, n_bright)
    frames[8:] = rng.random((2, 350, 350)) < np.array([0.001, 0.01])[:, None, None]
    return frames.astype(np.int16)


def negative_rows_linear(method: ReferenceCNN) -> ReferenceCNN:
    """A copy of a fitted cnn with every third row's batch-norm scale negated in both row stages and
    ``normalisation="linear"``: the paths a trained network rarely takes (a negative row scale flips the
    pooled maximum into a minimum)."""
    model = pickle.loads(pickle.dumps(method))
    model.set_params(normalisation="linear")
    for name in ("bn_rows_pool1", "bn_rows_pool2"):
        layer = model.model_.get_layer(name)
        gamma, *rest = layer.get_weights()
        gamma[::3] *= -1
        layer.set_weights([gamma, *rest])
    return model


def write_golden() -> None:
    """Write tests/data/golden_cnn.hbm (a cnn trained 2 epochs on 40 synthetic 350x350 frames) and
    tests/data/golden_cnn.npz (its inputs, and the scores of the ONNX and Keras paths of the model and of
    :func:`negative_rows_linear` of it): ``python -c "import test_cnn as t; t.write_golden()"`` in tests/."""
    from hitbench.modelfile import save_model

    frames, labels = synthetic_frames(40, size=350, seed=19)
    method = ReferenceCNN(epochs=2, batch_size=10, random_state=19).fit(frames, labels)
    save_model(method, GOLDEN.with_suffix(".hbm"))
    inputs = golden_frames().astype(np.float32)
    variant = negative_rows_linear(method)
    np.savez_compressed(
        GOLDEN.with_suffix(".npz"),
        frames=golden_frames(),
        onnx=method.score_onnx(inputs),
        keras=method.score_keras(inputs),
        variant_onnx=variant.score_onnx(inputs),
        variant_keras=variant.score_keras(inputs),
    )


@pytest.mark.parametrize("backend", ["numba", "onnx", "keras"])
def test_scores_are_golden(backend):
    """Every backend reproduces tests/data/golden_cnn.npz, written by the ONNX and Keras paths of commit 92be110
    (their own difference there: 3e-7), within 1e-6: the model and :func:`negative_rows_linear` of it."""
    method = load_model(GOLDEN.with_suffix(".hbm"))
    with np.load(GOLDEN.with_suffix(".npz")) as golden:
        stored = dict(golden)
    frames = stored["frames"].astype(np.float32)
    for model, key in ((method, "onnx"), (negative_rows_linear(method), "variant_onnx")):
        scores = model.set_params(backend=backend).decision_function(frames)
        np.testing.assert_allclose(scores, stored[key], rtol=0, atol=1e-6, err_msg=key)


def test_a_loaded_model_scores_without_tensorflow():
    """Loading a model file and scoring frames (numba, the default on a CPU) imports no TensorFlow; the Keras network
    is built, from the same weights, only when asked for."""
    code = (
        "import sys, numpy as np; from hitbench.modelfile import load_model;"
        f" m = load_model({str(GOLDEN.with_suffix('.hbm'))!r}); scores = m.decision_function(np.ones((2, 350, 350)));"
        " loaded = 'tensorflow' in sys.modules;"
        " np.testing.assert_allclose(m.score_keras(np.ones((2, 350, 350), np.float32)), scores, atol=1e-6);"
        " sys.exit(int(loaded))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
