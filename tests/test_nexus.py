"""Facility HDF5: NeXus/Eiger master files linking bitshuffle-LZ4 data files, and --data-path for other layouts."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error

from hitbench.cli import main
from hitbench.data.cxi import CXIRun
from hitbench.data.nexus import MasterRun, open_run
from hitbench.methods import registry
from hitbench.modelfile import save_model


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run 1 of the tiny preset (24 frames of 96 x 96), labelled as a CXI file."""
    root = tmp_path_factory.mktemp("nexus")
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["simulate", "--preset", "tiny", "--out", str(root), "--runs", "1", "--scale", "0.2"]
        ).exit_code
        == 0
    )
    assert runner.invoke(main, ["label", str(root / "run_0001.cxi")]).exit_code == 0
    return root / "run_0001.cxi"


def _eiger(folder: Path, run: CXIRun, split: int = 10, stem: str = "series") -> Path:
    """An Eiger-style master (links, pixel mask, geometry, beam centre) and two bitshuffle-LZ4 data files."""
    frames = run.read(apply_mask=False).astype(np.int32)  # tiny is an integrating detector: ADU below 0 too
    parts = [frames[:split], frames[split:]]
    for k, part in enumerate(parts, start=1):
        with h5py.File(folder / f"{stem}_data_{k:06d}.h5", "w") as h5:
            h5.create_dataset(
                "/entry/data/data", data=part, chunks=(1, *part.shape[1:]), **hdf5plugin.Bitshuffle(cname="lz4")
            )
    master = folder / f"{stem}_master.h5"
    with h5py.File(master, "w") as h5:
        for k in range(1, len(parts) + 1):
            h5[f"/entry/data/data_{k:06d}"] = h5py.ExternalLink(f"{stem}_data_{k:06d}.h5", "/entry/data/data")
        det = h5.create_group("/entry/instrument/detector")
        det["detectorSpecific/pixel_mask"] = (~run.mask).astype(np.uint32)
        det["detector_distance"] = run.geometry.distance
        det["x_pixel_size"] = run.geometry.x_pixel_size
        det["y_pixel_size"] = run.geometry.y_pixel_size
        det["beam_center_x"] = run.attrs["beam_centre_x"]
        det["beam_center_y"] = run.attrs["beam_centre_y"]
        h5["/entry/instrument/beam/incident_wavelength"] = run.attrs["wavelength_angstrom"]
    return master


def test_master_reads_the_linked_frames(tiny_run: Path, tmp_path: Path) -> None:
    run = CXIRun(tiny_run)
    master = open_run(_eiger(tmp_path, run))
    assert isinstance(master, MasterRun)
    assert master.n_frames == run.n_frames and master.frame_shape == run.frame_shape
    assert np.array_equal(master.mask, run.mask)
    np.testing.assert_array_equal(master.read(), run.read())
    np.testing.assert_array_equal(master.read(8, 13), run.read(8, 13))  # across the two data files
    np.testing.assert_array_equal(master.read_at(np.array([0, 9, 10, 17])), run.read_at(np.array([0, 9, 10, 17])))
    into = np.empty((2, *run.frame_shape), dtype=np.float32)
    assert master.read_at(np.array([9, 10]), out=into) is into and np.array_equal(into, run.read(9, 11))
    assert master.geometry.distance == run.geometry.distance
    assert master.geometry.photon_energy == pytest.approx(run.geometry.photon_energy, rel=1e-6)
    assert master.beam_center == (run.attrs["beam_centre_x"], run.attrs["beam_centre_y"])
    with h5py.File(tmp_path / "series_data_000001.h5") as h5:
        assert str(hdf5plugin.BSHUF_ID) in h5["/entry/data/data"]._filters  # bitshuffle on disk


def test_label_and_info_of_a_master(tiny_run: Path, tmp_path: Path) -> None:
    run = CXIRun(tiny_run)
    master = _eiger(tmp_path, run)
    runner = CliRunner()
    result = runner.invoke(main, ["info", str(master)])
    assert result.exit_code == 0 and "NeXus master + data files" in result.output, result.output
    result = runner.invoke(main, ["label", str(master)])
    assert result.exit_code == 0, result.output
    labelled = open_run(master)
    # the beam centre the master records is where the CXI run's finder centred: the same peaks
    np.testing.assert_array_equal(labelled.field("n_peaks"), run.field("n_peaks"))
    np.testing.assert_allclose(labelled.peaks.x, run.peaks.x, atol=1e-4)


def test_data_path_for_another_layout(tiny_run: Path, tmp_path: Path) -> None:
    run = CXIRun(tiny_run)
    path = tmp_path / "jungfrau.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset(
            "/data/JF06T08V01/data",
            data=run.read(apply_mask=False).astype(np.float32),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
    runner = CliRunner()
    result = runner.invoke(main, ["label", str(path)])
    assert_one_line_error(result, "jungfrau.h5: no frames at '/entry_1/data_1/data'", "data path")
    result = runner.invoke(main, ["label", str(path), "--data-path", "/data/JF06T08V01/data"])
    assert result.exit_code == 0, result.output
    assert int((CXIRun(path, "/data/JF06T08V01/data").field("label") == 1).sum()) > 0
    result = runner.invoke(main, ["info", str(path), "--data-path", "/data/JF06T08V01"])
    assert_one_line_error(result, "no frames at '/data/JF06T08V01'")


def test_missing_data_file_is_one_line(tiny_run: Path, tmp_path: Path) -> None:
    master = _eiger(tmp_path, CXIRun(tiny_run))
    (tmp_path / "series_data_000002.h5").unlink()
    result = CliRunner().invoke(main, ["info", str(master)])
    assert_one_line_error(
        result, "series_master.h5:/entry/data/data_000002 is an external link to series_data_000002.h5", "missing"
    )


def test_predict_reads_masters_and_other_layouts(tiny_run: Path, tmp_path: Path) -> None:
    """`hitbench predict` scores a NeXus master and a --data-path file as it scores the CXI run of the same frames."""
    run = CXIRun(tiny_run)
    model = registry.get("litpix").fit(run.read(), (run.field("hit") == 1).astype(int))
    model_path = save_model(model, tmp_path / "litpix.hbm", {"fit_seconds": 0.0, "n_train": 24, "n_train_hits": 0})
    master = _eiger(tmp_path, run)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["/data/frames"] = run.read(apply_mask=False)
        h5["/entry_1/instrument_1/detector_1/mask"] = (~run.mask).astype(np.uint16)
    scores = {}
    for name, args in {
        "cxi": [str(tiny_run)],
        "master": [str(master)],
        "other": [str(other), "--data-path", "/data/frames"],
    }.items():
        out = tmp_path / name
        result = CliRunner().invoke(main, ["predict", "--model", str(model_path), "--out", str(out), *args])
        assert result.exit_code == 0, result.output
        scores[name] = pd.read_csv(next(out.glob("*.hits.csv"))).score.to_numpy()
    np.testing.assert_allclose(scores["master"], scores["cxi"], rtol=1e-6)
    np.testing.assert_allclose(scores["other"], scores["cxi"], rtol=1e-6)


def test_compare_on_masters_through_a_single_panel_geometry(tiny_run: Path, tmp_path: Path) -> None:
    """A folder of Eiger-style masters, labelled and compared through a one-panel .geom that places the beam."""
    run = CXIRun(tiny_run)
    cx, cy = run.attrs["beam_centre_x"], run.attrs["beam_centre_y"]
    geom = tmp_path / "eiger.geom"
    geom.write_text(
        f"clen = 0.03\nres = 9090.91\ndata = /entry/data/data\ndim0 = %\ndim1 = ss\ndim2 = fs\n"
        f"p0/min_fs = 0\np0/max_fs = 95\np0/min_ss = 0\np0/max_ss = 95\np0/fs = +1.0x\np0/ss = +1.0y\n"
        f"p0/corner_x = {-(cx + 0.5)}\np0/corner_y = {-(cy + 0.5)}\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    masters = [_eiger(data, run, split=5 * k, stem=f"run{k}") for k in (1, 2)]  # data files beside their masters
    runner = CliRunner()
    result = runner.invoke(main, ["label", *map(str, masters), "--geometry", str(geom)])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(open_run(masters[0]).field("n_peaks"), run.field("n_peaks"))  # same beam, peaks
    result = runner.invoke(
        main,
        [
            "compare",
            "--data",
            str(data),
            "--geometry",
            str(geom),
            "--methods",
            "intensity,litpix",
            "--train-runs",
            "run1_master",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "out" / "scores.csv.gz")
    assert set(scores.run.astype(str)) == {"run1_master", "run2_master"}
