"""Model files cannot run code: crafted pickles and crafted hitbench model files are refused, never executed."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import Payload

from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.modelfile import load_model, read_record, save_model
from hitbench.predict import load_model as load_for_predict


@pytest.fixture(scope="module")
def svm_file(tmp_path_factory: pytest.TempPathFactory, frame_set) -> Path:
    model = registry.get("svm", n_components=5).fit(frame_set.train_frames, frame_set.train_labels)
    return save_model(model, tmp_path_factory.mktemp("svm") / "svm.hbm", {"n_train": 100})


def _rewrite(source: Path, target: Path, change) -> Path:
    """A copy of a model file whose model.json went through ``change``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            new.writestr(name, json.dumps(change(json.loads(data))) if name == "model.json" else data)
    return target


def test_crafted_pickle_is_not_run(tmp_path: Path) -> None:
    witness = tmp_path / "pwned"
    model = tmp_path / "model.joblib"
    model.write_bytes(pickle.dumps({"model": Payload(witness)}))
    with pytest.raises(HitbenchError, match="a pickle .* --trust-pickle"):
        load_for_predict(model)
    renamed = model.rename(tmp_path / "model.hbm")  # the suffix changes nothing
    with pytest.raises(HitbenchError, match="a pickle"):
        load_for_predict(renamed)
    assert not witness.exists()


def test_model_file_naming_an_untrusted_type_is_refused(svm_file: Path, tmp_path: Path) -> None:
    def swap(content: dict) -> dict:
        text = json.dumps(content)
        assert "sklearn.svm._classes.SVC" in text
        return json.loads(text.replace("sklearn.svm._classes.SVC", "subprocess.Popen"))

    crafted = _rewrite(svm_file, tmp_path / "crafted.hbm", swap)
    with pytest.raises(HitbenchError, match="'subprocess.Popen', a type this method does not store; refused"):
        load_model(crafted)


def test_model_file_of_an_unknown_method_is_refused(svm_file: Path, tmp_path: Path) -> None:
    crafted = _rewrite(svm_file, tmp_path / "crafted.hbm", lambda content: content | {"method": "os.system"})
    with pytest.raises(HitbenchError, match="unknown method 'os.system'"):
        load_model(crafted)


def test_record_reads_without_building_the_model(svm_file: Path) -> None:
    assert read_record(svm_file) == {"n_train": 100}


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda data: data[: len(data) // 2], "not a readable hitbench model file"),
        (lambda data: b"", "not a readable hitbench model file"),
    ],
)
def test_damaged_model_file_gives_one_line(svm_file: Path, tmp_path: Path, damage, fragment: str) -> None:
    broken = tmp_path / "broken.hbm"
    broken.write_bytes(damage(svm_file.read_bytes()))
    with pytest.raises(HitbenchError, match=fragment):
        load_model(broken)


def test_newer_format_version_says_what_to_do(svm_file: Path, tmp_path: Path) -> None:
    newer = _rewrite(svm_file, tmp_path / "newer.hbm", lambda content: content | {"version": 99})
    with pytest.raises(HitbenchError, match="version 99 .* save the model again"):
        load_model(newer)


def test_arrays_are_read_without_pickle(svm_file: Path, tmp_path: Path) -> None:
    crafted = tmp_path / "objects.hbm"
    with zipfile.ZipFile(svm_file) as old, zipfile.ZipFile(crafted, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == "arrays/0.npy":
                with new.open(name, "w") as file:
                    np.lib.format.write_array(file, np.array([Payload(tmp_path / "pwned")], dtype=object))
                continue
            new.writestr(name, data)
    with pytest.raises(HitbenchError, match="damaged hitbench model file"):
        load_model(crafted)
    assert not (tmp_path / "pwned").exists()


def test_unregistered_method_is_not_saved(tmp_path: Path, frame_set) -> None:
    class Private(registry.load("intensity")):
        name = "private"

    fitted = Private().fit(frame_set.train_frames, frame_set.train_labels)
    with pytest.raises(HitbenchError, match="registered as 'private'"):
        save_model(fitted, tmp_path / "private.hbm")
    assert list(tmp_path.iterdir()) == []


def test_composition_is_saved_only_under_the_entry_that_builds_it(tmp_path: Path, frame_set) -> None:
    fitted = registry.get("litpix-robust").fit(frame_set.train_frames, frame_set.train_labels)
    with pytest.raises(HitbenchError, match="registered as 'svm-robust'"):
        save_model(fitted, tmp_path / "wrong.hbm", name="svm-robust")
    path = save_model(fitted, tmp_path / "litpix-robust.hbm", name="litpix-robust")
    content = json.loads(zipfile.ZipFile(path).read("model.json"))
    assert content["parts"] == {
        "estimator": "hitbench.methods.compose.Preprocessed",
        "estimator__method": "hitbench.methods.litpix.LitPixels",
        "estimator__preprocess": "hitbench.preprocess.chain.RobustPreprocessing",
    }
    crafted = tmp_path / "crafted.hbm"
    content["parts"]["estimator__method"] = "hitbench.methods.svm.PCASVM"
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(crafted, "w") as new:
        for name in old.namelist():
            new.writestr(name, json.dumps(content) if name == "model.json" else old.read(name))
    with pytest.raises(HitbenchError, match="not those of the method 'litpix-robust'"):
        load_model(crafted)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04junk", b"not a zip"])
def test_malformed_keras_file_gives_one_line(tmp_path: Path, content: bytes) -> None:
    broken = tmp_path / "model.keras"
    broken.write_bytes(content)
    with pytest.raises(HitbenchError, match="not a .keras file of hitbench"):
        load_for_predict(broken)


def test_symlink_loop_as_model_gives_one_line(tmp_path: Path) -> None:
    loop = tmp_path / "loop.hbm"
    loop.symlink_to(loop)
    with pytest.raises(HitbenchError, match="cannot read it"):
        load_for_predict(loop)
