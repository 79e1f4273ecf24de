"""The CLI front door: version, info, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error

from hitbench import __version__
from hitbench.cli import main
from hitbench.data.cxi_write import write_cxi
from hitbench.geometry import Geometry
from hitbench.methods import registry


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_info_cxi(tmp_path: Path) -> None:
    path = write_cxi(
        tmp_path / "r.cxi",
        np.zeros((3, 16, 20), np.float32),
        geometry=Geometry(0.1, 1e-4, 1e-4, 9500),
        fields={"label": np.array([1, 0, -1])},
        attrs={"run": 7},
    )
    result = _run("info", str(path))
    assert result.exit_code == 0, result.output
    for text in ("frames", "16 x 20", "9500 eV", "label", "100.0 mm"):
        assert text in result.output


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(_run("info", str(tmp_path / "nope.cxi")), "nope.cxi", "no such file")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "run.cxi"
    path.write_text("not hdf5 at all\n")
    assert_one_line_error(_run("info", str(path)), "run.cxi", "not an HDF5 file")


def test_hdf5_without_data(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as h5:
        h5["/entry_1/other"] = np.zeros(3)
    assert_one_line_error(_run("info", str(path)), "run.h5", "/entry_1/data_1/data")


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    path = write_cxi(tmp_path / "full.cxi", np.random.default_rng(0).random((20, 32, 32), dtype=np.float32))
    data = path.read_bytes()
    cut = tmp_path / "cut.cxi"
    cut.write_bytes(data[: int(len(data) * keep)])
    assert_one_line_error(_run("info", str(cut)), "cut.cxi")


def test_corrupt_image(tmp_path: Path) -> None:
    path = tmp_path / "frame.cbf"
    path.write_bytes(b"###CBF: VERSION 1.5\r\n garbage" + bytes(range(256)) * 4)
    assert_one_line_error(_run("info", str(path)), "frame.cbf")


def test_wrong_dimensionality(tmp_path: Path) -> None:
    path = tmp_path / "run.cxi"
    with h5py.File(path, "w") as h5:
        h5["/entry_1/data_1/data"] = np.zeros((10, 10))
    assert_one_line_error(_run("info", str(path)), "run.cxi", "(n_frames, height, width)")


@pytest.fixture
def kept_catalogue(tmp_path, monkeypatch):
    """The methods' catalogue kept in a temporary file instead of beside the registry."""
    path = tmp_path / "catalogue.json"
    monkeypatch.setattr(registry, "_catalogue_path", lambda: path)
    return path


def test_methods_lists_the_kept_catalogue_while_its_sources_are_unchanged(kept_catalogue, tmp_path, monkeypatch):
    source = tmp_path / "plugin_source.py"
    source.write_text("x = 1\n")
    module = types.ModuleType("plugin_source")
    module.__file__ = str(source)
    monkeypatch.setitem(sys.modules, "plugin_source", module)
    built = _run("methods")
    assert built.exit_code == 0 and kept_catalogue.is_file()
    assert str(source) in kept_catalogue.read_text()
    monkeypatch.setattr(registry, "parameters", lambda name: {"changed": 1})
    assert _run("methods").output == built.output  # kept: no method imported
    source.write_text("x = 22\n")  # a module it was built from changed: built anew
    assert "changed=1" in _run("methods").output


def test_a_broken_plugin_is_listed_as_its_error_and_nothing_is_kept(kept_catalogue, monkeypatch):
    points = registry._entry_points()
    broken = EntryPoint("broken", "no_such_module_hitbench:Method", registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: {**points, "broken": broken})
    monkeypatch.setattr(registry, "entry_points", lambda group: [*points.values(), broken])
    result = _run("methods")
    assert result.exit_code == 0
    assert "failed to load" in result.output and "intensity" in result.output
    assert not kept_catalogue.exists()


def test_methods_kept_lists_without_importing_scikit_learn():
    code = (
        "import sys; from hitbench.cli import main; main(['methods'], standalone_mode=False); print(list(sys.modules))"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    table = second.stdout.rsplit("\n", 2)[0]
    assert table == first.stdout.rsplit("\n", 2)[0] and "litpix" in table
    assert "'sklearn'" not in second.stdout.splitlines()[-1]
