"""Shared fixtures: a small simulated run split into training and held-out frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from hitbench.methods import tf_runtime

# TensorFlow reads its settings when it is imported, and some tests import tensorflow or keras before anything
# calls tf_runtime.keras(): the whole test process runs TensorFlow as hitbench does (oneDNN on, as in the
# subprocesses that tests compare with; on a CPU without AVX-512 TensorFlow alone would leave it off)
tf_runtime.set_environment()

#: Parameters that keep each method's fit fast in the test suite (only methods that need them). The cnn
#: sees linear ADU here: in its 100 updates the batch-normalisation moving averages have not settled, and
#: with log1p inputs the held-out calls were one class for 2 of the seeds 0-2 (linear: 0.958 for each).
FAST_PARAMS: dict[str, dict[str, object]] = {
    "cnn": {"epochs": 10, "batch_size": 10, "validation_split": 0.0, "learning_rate": 0.01, "normalisation": "linear"},
    "cnn-robust": {
        "method__epochs": 10,
        "method__batch_size": 10,
        "method__validation_split": 0.0,
        "method__decision_threshold": 0.5,  # the registered "validation" cut needs validation frames
        # tiny's flat, photon-sparse background gives the photon transfer curve no slope (the estimate falls
        # back to 1: frames stay in ADU, single photons look significant); its detector's gain, as given to CrystFEL
        "preprocess__adu_per_photon": 28.0,
        "method__learning_rate": 0.01,
        "n_augment": 0,
    },
}

#: Methods that train a neural network: a test parametrized with one of their names is marked slow.
TRAIN_A_NETWORK = ("cnn", "cnn-robust")

#: Frames simulated for the method tests; the first N_TRAIN train, the rest are held out.
N_FRAMES = 160
N_TRAIN = 100


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of the methods in :data:`TRAIN_A_NETWORK` slow (``-m "not slow"`` leaves them out)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any(isinstance(v, str) and v in TRAIN_A_NETWORK for v in callspec.params.values()):
            item.add_marker(pytest.mark.slow)


@dataclass(frozen=True)
class FrameSet:
    """Training and held-out frames of one simulated run."""

    train_frames: np.ndarray
    train_labels: np.ndarray
    test_frames: np.ndarray
    test_labels: np.ndarray
    mask: np.ndarray


@pytest.fixture(scope="session")
def frame_set() -> FrameSet:
    """160 frames of the first run of the "tiny" experiment (seed 0): 100 to train on, 60 held out."""
    from hitbench.simulate import load_experiment, simulate_run

    experiment = load_experiment("tiny")
    sim = simulate_run(experiment, run=experiment.runs[0], n_frames=N_FRAMES, seed=0)
    labels = np.asarray(sim.truth["hit"]).astype(np.int64)
    return FrameSet(
        train_frames=sim.frames[:N_TRAIN],
        train_labels=labels[:N_TRAIN],
        test_frames=sim.frames[N_TRAIN:],
        test_labels=labels[N_TRAIN:],
        mask=np.asarray(sim.mask),
    )


@pytest.fixture(scope="session")
def fast_params():
    """A function giving the fast test parameters of a method by registry name."""
    return lambda name: dict(FAST_PARAMS.get(name, {}))
