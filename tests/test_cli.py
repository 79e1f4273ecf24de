"""The CLI front door: version, info, and one-line errors for bad input."""

from __future__ import annotations

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
