"""Training depends on nothing but data, parameters and seed: not on what the process trained or drew before.

The cnn trained right after cnn-robust (or after other random draws in the same process) must be the
model a fresh process trains; a comparison's cache then holds the same model whatever the method order.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # every test trains the cnn

#: Small frames and two epochs, run both here and in a fresh process; prints nothing, defines x, y and fit.
SETUP = """
import numpy as np
from hitbench.methods import registry
x = np.random.default_rng(0).poisson(0.4, (30, 64, 64)).astype(np.float32)
y = np.arange(30) % 2
x[y == 1, 10:12, 20:22] += 50
def fit(name, **params):
    return registry.get(name, epochs=2, batch_size=10, **params).fit(x, y)
def fit_robust():
    return registry.get("cnn-robust", method__epochs=2, method__batch_size=10).fit(x, y)
"""


def _weights(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.model_.get_weights()]


def test_cnn_after_other_training_equals_a_fresh_process(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.npz"
    code = SETUP + f"np.savez({str(fresh)!r}, *[np.asarray(w) for w in fit('cnn').model_.get_weights()])"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

    scope: dict = {}
    exec(SETUP, scope)  # noqa: S102 - the same set-up as the fresh process
    fit = scope["fit"]
    scope["fit_robust"]()
    fit("cnn", random_state=7, flip_augment=True)
    import keras
    import tensorflow as tf

    random.random(), np.random.random(), keras.random.normal((3,)), tf.random.uniform((3,))  # noqa: NPY002 - global draws
    after = _weights(fit("cnn"))
    with np.load(fresh) as saved:
        expected = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    assert len(after) == len(expected)
    for got, want in zip(after, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_training_order_does_not_change_the_models() -> None:
    scope: dict = {}
    exec(SETUP, scope)  # noqa: S102
    fit = scope["fit"]
    first = {seed: _weights(fit("cnn", random_state=seed)) for seed in (1, 2)}
    second = {seed: _weights(fit("cnn", random_state=seed)) for seed in (2, 1)}
    assert not all(np.array_equal(a, b) for a, b in zip(first[1], first[2], strict=True))  # the seed matters
    for seed in (1, 2):
        for got, want in zip(second[seed], first[seed], strict=True):
            np.testing.assert_array_equal(got, want)
