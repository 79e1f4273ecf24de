"""Every registered method (entry-point group ``hitbench.methods``) goes through the same checks.

A method added later, by hitbench or by a third-party package, is covered by its entry
point alone: the tests are parametrised over ``registry.names()``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.methods.base import MethodNotFittedError, leaf_params
from hitbench.modelfile import load_model, save_model

#: Held-out balanced accuracy every method must reach on the small simulated run.
MIN_BALANCED_ACCURACY = 0.75
#: Held-out ROC AUC of the hit score.
MIN_AUC = 0.8

NAMES = registry.names()


@pytest.fixture(scope="module", params=NAMES)
def method_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def make(method_name, fast_params):
    """A function giving a fresh, unfitted instance of the method under test."""
    return lambda: registry.get(method_name, **fast_params(method_name))


@pytest.fixture(scope="module")
def fitted(make, frame_set):
    return make().fit(frame_set.train_frames, frame_set.train_labels)


def test_registry_lists_the_builtin_methods():
    assert {"intensity", "litpix", "svm", "peaks"} <= set(NAMES)


def test_compositions_list_their_nested_parameters():
    params = registry.parameters("cnn-robust")
    assert params["preprocess__gate"] == 3.0 and params["method__epochs"] == 40 and params["n_augment"] == 0
    assert params["preprocess__lone_false_alarms"] == 0.1 and params["method__decision_threshold"] == "validation"
    assert "method" not in params and "preprocess" not in params
    assert registry.get("cnn-robust", preprocess__gate=5.0).preprocess.gate == 5.0
    with pytest.raises(HitbenchError, match="bad parameter"):
        registry.get("cnn-robust", epochs=5)


def test_description_is_one_line(method_name):
    text = registry.describe(method_name)
    assert text and "\n" not in text


def test_beats_chance_on_held_out_frames(fitted, frame_set):
    predicted = fitted.predict(frame_set.test_frames)
    assert balanced_accuracy_score(frame_set.test_labels, predicted) >= MIN_BALANCED_ACCURACY


def test_predict_gives_one_label_per_frame(fitted, frame_set):
    predicted = fitted.predict(frame_set.test_frames)
    assert predicted.shape == (len(frame_set.test_frames),)
    assert set(np.unique(predicted)) <= {0, 1}


def test_scores_rank_hits_above_misses(fitted, frame_set):
    scores = fitted.decision_function(frame_set.test_frames)
    assert scores.shape == (len(frame_set.test_frames),)
    assert roc_auc_score(frame_set.test_labels, scores) >= MIN_AUC


def test_get_params_and_clone(make, fitted, frame_set):
    params = leaf_params(fitted)
    copy = clone(fitted)
    assert leaf_params(copy) == params
    assert leaf_params(copy) == leaf_params(make())
    with pytest.raises(MethodNotFittedError):
        copy.predict(frame_set.test_frames)


def test_joblib_round_trip_gives_identical_predictions(fitted, frame_set, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(
        loaded.decision_function(frame_set.test_frames), fitted.decision_function(frame_set.test_frames)
    )
    np.testing.assert_array_equal(loaded.predict(frame_set.test_frames), fitted.predict(frame_set.test_frames))


def test_model_file_round_trip_gives_identical_predictions(method_name, fitted, frame_set, tmp_path):
    path = save_model(fitted, tmp_path / "model.hbm", name=method_name)
    with zipfile.ZipFile(path) as archive:
        assert all(name == "model.json" or name.endswith(".npy") for name in archive.namelist())
        assert json.loads(archive.read("model.json"))["method"] == method_name
    loaded = load_model(path)
    assert type(loaded) is type(fitted) and leaf_params(loaded) == leaf_params(fitted)
    np.testing.assert_array_equal(
        loaded.decision_function(frame_set.test_frames), fitted.decision_function(frame_set.test_frames)
    )
    np.testing.assert_array_equal(loaded.predict(frame_set.test_frames), fitted.predict(frame_set.test_frames))


def test_same_seed_gives_same_predictions(make, fitted, frame_set):
    again = make().fit(frame_set.train_frames, frame_set.train_labels)
    np.testing.assert_array_equal(
        again.decision_function(frame_set.test_frames), fitted.decision_function(frame_set.test_frames)
    )


def test_one_class_labels_are_refused(make, frame_set):
    with pytest.raises(HitbenchError, match="both hits and misses"):
        make().fit(frame_set.train_frames, np.ones(len(frame_set.train_frames), dtype=int))


def test_wrong_number_of_dimensions_is_refused(make, fitted, frame_set):
    with pytest.raises(HitbenchError, match="3 dimensions"):
        make().fit(frame_set.train_frames[:, 0], frame_set.train_labels)
    with pytest.raises(HitbenchError, match="3 dimensions"):
        fitted.predict(frame_set.test_frames[0])


def test_nan_frames_are_refused(make, fitted, frame_set):
    frames = frame_set.train_frames.astype(np.float32)
    frames[3, 5, 7] = np.nan
    with pytest.raises(HitbenchError, match="NaN"):
        make().fit(frames, frame_set.train_labels)
    with pytest.raises(HitbenchError, match="NaN"):
        fitted.predict(frames[:5])


def test_wrong_frame_size_at_predict_is_refused(fitted, frame_set):
    with pytest.raises(HitbenchError, match="trained on"):
        fitted.predict(frame_set.test_frames[:, :-4, :])


def test_predict_before_fit_is_refused(make, frame_set):
    method = make()
    with pytest.raises(MethodNotFittedError):
        method.predict(frame_set.test_frames)
    with pytest.raises(MethodNotFittedError):
        method.decision_function(frame_set.test_frames)


def test_cli_lists_every_method():
    from hitbench.cli import main

    result = CliRunner().invoke(main, ["methods"])
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.output


def test_listing_methods_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from hitbench.cli import main\n"
        "result = CliRunner().invoke(main, ['methods'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
