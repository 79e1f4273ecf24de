"""Multi-panel detectors: CrystFEL .geom files, peakfinder8 on raw frames, the assembled crop, `--geometry`."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error
from scipy.spatial import cKDTree
from test_crystfel import INDEXAMAJIG, _check_indexing, _index

from hitbench.cli import main
from hitbench.data.assembled import AssembledRun, assembled_experiment
from hitbench.data.cxi import CXIRun
from hitbench.data.dataset import open_experiment
from hitbench.data.geom import read_geom
from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.peaks import PeakFinder8
from hitbench.peaks.labels import raw_finder
from hitbench.simulate import load_experiment, simulate_run
from hitbench.simulate.runs import layout

#: Two 4 x 6 (ss x fs) panels stacked in the raw frame: p0 upright left of the beam, p1 turned 90 degrees to its right.
GEOM = """\
; two panels, global defaults first
clen = 0.1        ; metres
res = 10000
photon_energy = 9500
data = /entry_1/data_1/data
dim0 = %
dim1 = ss
dim2 = fs

p0/min_fs = 0
p0/max_fs = 5
p0/min_ss = 0
p0/max_ss = 3
p0/corner_x = -7
p0/corner_y = -2
p0/fs = +1.0000x +0.0000y
p0/ss = +0.0000x +1.0000y

p1/min_fs = 0
p1/max_fs = 5
p1/min_ss = 4
p1/max_ss = 7
p1/corner_x = 5
p1/corner_y = -3
p1/fs = +0.0000x +1.0000y
p1/ss = -1.0000x +0.0000y
p1/coffset = 0.001

bad_corner/min_fs = 0
bad_corner/max_fs = 0
bad_corner/min_ss = 0
bad_corner/max_ss = 0
bad_corner/panel = p0
bad_far/min_x = 3.5
bad_far/max_x = 10
bad_far/min_y = 2.4
bad_far/max_y = 10
"""


def _write(tmp_path: Path, text: str, name: str = "det.geom") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_panels_defaults_bad_regions(tmp_path: Path) -> None:
    geom = read_geom(_write(tmp_path, GEOM))
    assert geom.raw_shape == (8, 6)
    assert [p.name for p in geom.panels] == ["p0", "p1"]
    assert geom.panels[0].clen == 0.1 and geom.panels[1].res == 10000  # the defaults before the panels
    assert geom.data == "/entry_1/data_1/data" and geom.photon_energy == 9500
    # p0 pixel (fs 0, ss 0): centre at the corner + half a step along fs and ss
    assert (geom.x[0, 0], geom.y[0, 0]) == (-6.5, -1.5)
    # p1 pixel (fs 2, ss 5 = its second row): fs runs along +y, ss along -x
    assert (geom.x[5, 2], geom.y[5, 2]) == (5 - 0.5 - 1, -3 + 0.5 + 2)
    assert geom.radius[5, 2] == pytest.approx(np.hypot(3.5, -0.5))
    assert geom.x_m[0, 0] == pytest.approx(-6.5e-4)
    assert (geom.panel_index[:4] == 0).all() and (geom.panel_index[4:] == 1).all()
    bad = ~geom.mask
    assert bad[0, 0]  # bad_corner, raw fs/ss
    far = (geom.x >= 3.5) & (geom.y >= 2.4)  # bad_far, lab x/y
    assert far.any() and (bad == far | (np.indices(bad.shape).sum(0) == 0)).all()


def test_raw_positions_map_to_lab_and_back(tmp_path: Path) -> None:
    geom = read_geom(_write(tmp_path, GEOM))
    fs = np.array([0.0, 2.3, 5.0, 1.0])
    ss = np.array([0.0, 5.2, 7.4, 3.0])
    x, y = geom.to_lab(fs, ss)
    for k, (f, s) in enumerate(zip(fs, ss, strict=True)):
        panel = geom.panels[geom.panel_of(f, s)]
        assert panel.raw(x[k], y[k]) == pytest.approx((f, s))
    assert np.isnan(geom.to_lab(np.array([9.0]), np.array([0.0]))[0]).all()  # off the frame


def test_crop_assembles_the_panels_around_the_beam(tmp_path: Path) -> None:
    geom = read_geom(_write(tmp_path, GEOM))
    frames = np.arange(2 * 8 * 6, dtype=np.float32).reshape(2, 8, 6) + 1
    crop = geom.crop(frames, side=16)
    assert crop.shape == (2, 16, 16)
    # every good raw pixel appears once, at its lab position in the crop
    x0, y0 = geom.crop_origin(16)
    ss, fs = np.nonzero(geom.mask)
    cx, cy = geom.to_crop(fs.astype(float), ss.astype(float), side=16)
    assert np.allclose(cx, np.rint(cx)) and np.allclose(cy, np.rint(cy))
    assert np.array_equal(crop[:, np.rint(cy).astype(int), np.rint(cx).astype(int)], frames[:, ss, fs])
    assert np.count_nonzero(crop[0]) == np.count_nonzero(geom.mask)  # gaps and bad pixels are 0
    assert geom.crop_map(16) is geom.crop_map(16)  # built once per side


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (GEOM.replace("p0/corner_y = -2", "p0/corner_y -2"), 15, "is not 'key = value'"),
        (GEOM.replace("p1/coffset", "p1/cofset"), 27, "unknown key 'cofset'"),
        (GEOM.replace("p1/fs = +0.0000x +1.0000y", "p1/fs = up"), 25, "not a direction"),
        (GEOM.replace("p1/ss = -1.0000x +0.0000y", "p1/ss = +0.0000x +2.0000y"), 26, "parallel"),
        (GEOM.replace("p0/corner_x = -7\n", ""), 10, "has no corner_x (the beam centre"),
        (GEOM.replace("clen = 0.1        ; metres\n", ""), 9, "has no clen"),
        (GEOM.replace("p1/min_ss = 4", "p1/min_ss = 3"), 19, "share raw pixels"),
        (GEOM.replace("p1/corner_x = 5", "p1/corner_x = -4"), 19, "overlap on the detector"),
        (GEOM.replace("p0/max_fs = 5", "p0/max_fs = -1"), 11, "give 0 or more"),
        (GEOM.replace("p0/max_ss = 3", "p0/max_ss = 2x"), 13, "not a whole number"),
        (GEOM.replace("bad_corner/panel = p0", "bad_corner/panel = q7"), 33, "no panel 'q7'"),
        (GEOM.replace("bad_far/max_y = 10\n", ""), 34, "give all four"),
        (GEOM.replace("dim1 = ss", "dim1 = 3"), 7, "panel p0: dims % 3 fs"),
        (GEOM.replace("p1/coffset = 0.001", "p1/dim1 = 1"), 27, "panel p1: dims % 1 fs"),
    ],
)
def test_bad_geometry_is_one_line_naming_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(HitbenchError) as caught:
        read_geom(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert fragment in message and "\n" not in message


def test_panels_that_do_not_fit_the_frames(tmp_path: Path) -> None:
    geom = read_geom(_write(tmp_path, GEOM))
    with pytest.raises(HitbenchError, match=r"det.geom:19: panel p1 \(fs 0-5, ss 4-7\) does not fit the 6 x 6"):
        geom.check_shape((6, 6), "run.cxi")
    with pytest.raises(HitbenchError, match="det.geom:19: the panels cover 8 x 6 .* frames of run.cxi are 8 x 9"):
        geom.check_shape((8, 9), "run.cxi")


def test_mask_file_bits(tmp_path: Path) -> None:
    bits = np.zeros((8, 6), dtype=np.uint16)
    bits[2, 3] = 4  # bad bit
    bits[6, 1] = 1 | 4
    with h5py.File(tmp_path / "mask.h5", "w") as h5:
        h5["/data/mask"] = bits
    text = GEOM + "mask0_data = /data/mask\nmask0_file = mask.h5\nmask0_badbits = 4\n"
    geom = read_geom(_write(tmp_path, text.replace("bad_", "; bad_")))
    good = geom.good_pixels()
    assert not good[2, 3] and not good[6, 1] and good.sum() == 8 * 6 - 2


def test_no_peak_spans_two_panels() -> None:
    """Two spots either side of a raw panel boundary: one peak each with the panel map, one merged peak without."""
    frame = np.random.default_rng(0).normal(10, 2, (40, 30)).astype(np.float32)
    frame[18:20, 14:16] += 400  # the last rows of panel 0
    frame[20:22, 14:16] += 400  # the first rows of panel 1 (another place on the detector)
    panels = np.repeat([0, 1], 20)[:, None] * np.ones((1, 30), dtype=int)
    plain = PeakFinder8(adc_threshold=100, center=(0, 0)).find(frame)
    aware = PeakFinder8(adc_threshold=100, center=(0, 0), panel_map=panels).find(frame)
    assert len(plain) == 1 and plain.npix[0] == 8
    assert len(aware) == 2 and sorted(aware.y.round(1)) == [18.5, 20.5]


@pytest.fixture(scope="module")
def panels_run():
    exp = load_experiment("tiny-panels")
    return exp, layout(exp), simulate_run(exp, 1, n_frames=48, seed=2)


def _match(found: np.ndarray, truth: np.ndarray, tol: float = 1.5) -> tuple[int, int]:
    """Found peaks within ``tol`` of a true spot, and true spots within ``tol`` of a found peak."""
    if not len(found) or not len(truth):
        return 0, 0
    return (int((cKDTree(truth).query(found)[0] <= tol).sum()), int((cKDTree(found).query(truth)[0] <= tol).sum()))


def test_raw_peaks_match_true_spots_as_on_the_assembled_image(panels_run) -> None:
    exp, raw, sim = panels_run
    geom = raw.geometry()
    assert sim.frames.shape[1:] == geom.raw_shape == (4 * 48, 64)
    finder = raw_finder(PeakFinder8(), geom)
    assembled = PeakFinder8(center=raw.centre)
    totals = np.zeros((2, 4))
    mapped = []
    for i in np.flatnonzero(sim.truth["hit"]):
        frame = sim.frames[i].astype(np.float32) * sim.mask
        image = np.zeros(raw.shape, np.float32)
        image.flat[raw.raw_index.ravel()] = frame.ravel()
        image_mask = np.zeros(raw.shape, bool)
        image_mask.flat[raw.raw_index.ravel()] = sim.mask.ravel()
        known = np.isfinite(sim.truth["spot_x"][i])
        p = finder.find(frame, mask=sim.mask)
        q = assembled.find(image, mask=image_mask)
        truth_raw = np.c_[sim.truth["spot_x"][i][known], sim.truth["spot_y"][i][known]]
        truth_image = np.c_[sim.truth["spot_x_image"][i][known], sim.truth["spot_y_image"][i][known]]
        totals[0] += (*_match(np.c_[p.x, p.y], truth_raw), len(p), len(truth_raw))
        totals[1] += (*_match(np.c_[q.x, q.y], truth_image), len(q), len(truth_image))
        x, y = geom.to_lab(p.x, p.y)  # raw peaks through the geometry into the assembled image
        assert len(p) == len(q)
        if len(p):
            mapped.append(cKDTree(np.c_[q.x, q.y]).query(np.c_[x + raw.centre[0], y + raw.centre[1]])[0])
        # the true spots' raw positions map to their assembled ones
        tx, ty = geom.to_lab(truth_raw[:, 0], truth_raw[:, 1])
        assert np.allclose(np.c_[tx + raw.centre[0], ty + raw.centre[1]], truth_image, atol=1e-3)
    precision, recall = totals[:, 0] / totals[:, 2], totals[:, 1] / totals[:, 3]
    assert precision[0] >= 0.95 and recall[0] >= 0.5, (precision, recall)
    assert precision[0] == pytest.approx(precision[1], abs=0.02) and recall[0] == pytest.approx(recall[1], abs=0.02)
    # the same peaks and centroids; a peak whose background annulus crosses a gap in the assembled image takes
    # another panel's pixels there, on the raw frame only its own (a thousandth of a pixel here)
    assert np.median(np.concatenate(mapped)) < 1e-9 and np.concatenate(mapped).max() < 0.01


def test_label_info_and_assembled_run(tmp_path: Path) -> None:
    runner = CliRunner()
    sim = tmp_path / "sim"
    result = runner.invoke(
        main, ["simulate", "--preset", "tiny-panels", "--out", str(sim), "--runs", "1", "--scale", "0.25"]
    )
    assert result.exit_code == 0, result.output
    geom_file = sim / "tiny-panels.geom"
    run_file = sim / "run_0001.cxi"
    result = runner.invoke(main, ["label", str(run_file), "--geometry", str(geom_file)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["info", str(run_file), "--geometry", str(geom_file)])
    assert result.exit_code == 0 and "4 panels, raw frame 192 x 64" in result.output, result.output
    run = CXIRun(run_file)
    peaks, spot_x, spot_y = run.peaks, run.field("spot_x"), run.field("spot_y")
    hit = int(np.flatnonzero(run.field("hit"))[0])
    found = np.c_[peaks.x[hit, : peaks.n_peaks[hit]], peaks.y[hit, : peaks.n_peaks[hit]]]
    truth = np.c_[spot_x[hit], spot_y[hit]][np.isfinite(spot_x[hit])]
    assert _match(found, truth)[0] >= 0.9 * len(found)  # peakXPosRaw/peakYPosRaw are raw positions
    assembled = AssembledRun(CXIRun(run_file), read_geom(geom_file), side=96)
    crops = assembled.read(0, 3)
    assert crops.shape == (3, 96, 96) and assembled.frame_shape == (96, 96)
    assert np.array_equal(assembled.read_at(np.array([1, 2])), crops[1:])
    into = np.empty((2, 96, 96), dtype=np.float32)
    assert assembled.read_at(np.array([1, 2]), out=into) is into and np.array_equal(into, crops[1:])
    # a raw peak lands on a bright pixel of the crop
    cx, cy = (np.rint(c).astype(int) for c in read_geom(geom_file).to_crop(found[:, 0], found[:, 1], side=96))
    inside = (cx >= 0) & (cx < 96) & (cy >= 0) & (cy < 96)
    frame = assembled.read(hit, hit + 1)[0]
    assert inside.sum() >= 3 and np.median(frame[cy[inside], cx[inside]]) > 100


def test_bad_geometry_on_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    sim = tmp_path / "sim"
    assert (
        runner.invoke(
            main, ["simulate", "--preset", "tiny", "--out", str(sim), "--runs", "1", "--scale", "0.1"]
        ).exit_code
        == 0
    )
    geom = _write(tmp_path, GEOM)
    result = runner.invoke(main, ["label", str(sim / "run_0001.cxi"), "--geometry", str(geom)])
    assert_one_line_error(result, "det.geom:19: the panels cover 8 x 6", "run_0001.cxi are 96 x 96")
    bad = _write(tmp_path, GEOM.replace("p1/coffset", "p1/cofset"), "typo.geom")
    result = runner.invoke(main, ["info", str(sim / "run_0001.cxi"), "--geometry", str(bad)])
    assert_one_line_error(result, "typo.geom:27: unknown key 'cofset'")
    result = runner.invoke(
        main, ["compare", "--preset", "tiny", "--geometry", str(geom), "--out", str(tmp_path / "out")]
    )
    assert_one_line_error(result, "--geometry", "goes with --data")
    result = runner.invoke(
        main, ["compare", "--data", str(sim), "--geometry", str(tmp_path / "none.geom"), "--out", str(tmp_path / "out")]
    )
    assert_one_line_error(result, "none.geom: no such geometry file")


def test_compare_on_a_preset_of_panels(tmp_path: Path) -> None:
    """A preset of whole panels is labelled on its raw frames with its own .geom; the methods see the 96x96 crop."""
    result = CliRunner().invoke(
        main,
        [
            "compare",
            "--preset",
            "tiny-panels",
            "--scale",
            "0.3",
            "--methods",
            "intensity,litpix,svm,peaks",
            "--train-runs",
            "1-2",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    folder = next(p for p in (tmp_path / "cache" / "simulated").glob("tiny-panels-*") if p.is_dir())
    run = CXIRun(folder / "run_0003.cxi")
    assert run.frame_shape == (192, 64) and run.attrs["geometry"] == str((folder / "tiny-panels.geom").resolve())
    examples = np.load(tmp_path / "out" / "examples.npz")
    assert examples["frames"].shape[1:] == (96, 96)
    scores = pd.read_csv(tmp_path / "out" / "scores.csv.gz")
    assert set(scores.method) == {"intensity", "litpix", "svm", "peaks"}


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Raw multi-panel runs of tiny-panels (a fifth of the events), labelled with their geometry."""
    root = tmp_path_factory.mktemp("raw-data")
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["simulate", "--preset", "tiny-panels", "--out", str(root / "sim"), "--scale", "0.2"]
        ).exit_code
        == 0
    )
    runs = sorted(str(p) for p in (root / "sim").glob("*.cxi"))
    geom = root / "sim" / "tiny-panels.geom"
    result = runner.invoke(main, ["label", *runs, "--geometry", str(geom)])
    assert result.exit_code == 0, result.output
    return root, geom


def test_compare_with_geometry_needs_geometry_labels(raw_data: tuple[Path, Path], tmp_path: Path) -> None:
    root, geom = raw_data
    other = tmp_path / "other"
    other.mkdir()
    for path in (root / "sim").glob("*.cxi"):
        (other / path.name).write_bytes(path.read_bytes())
    result = CliRunner().invoke(main, ["label", str(other / "run_0001.cxi")])  # raw frames as one panel
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main,
        [
            "compare",
            "--data",
            str(other),
            "--geometry",
            str(geom),
            "--methods",
            "intensity",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert_one_line_error(result, "run_0001.cxi: labelled without a geometry", "hitbench label --geometry")


@pytest.mark.slow  # trains every method, the cnn among them, on 350x350 crops
def test_compare_with_geometry_runs_every_method_and_predict_agrees(
    raw_data: tuple[Path, Path], tmp_path: Path, fast_params
) -> None:
    root, geom = raw_data
    names = registry.names()
    params = [f"--param={name}.{key}={value!r}" for name in names for key, value in fast_params(name).items()]
    result = CliRunner().invoke(
        main,
        [
            "compare",
            "--data",
            str(root / "sim"),
            "--geometry",
            str(geom),
            "--methods",
            ",".join(names),
            "--train-runs",
            "1-2",
            "--test-runs",
            "3",
            *params,
            "--param",
            "cnn.epochs=3",
            "--param",
            "cnn-robust.method__epochs=3",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--save-models",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "out" / "scores.csv.gz")
    assert set(scores.method) == set(names)
    examples = np.load(tmp_path / "out" / "examples.npz")
    assert examples["frames"].shape[1:] == (350, 350)  # the study's crop around the beam
    for name in ("svm", "cnn"):
        out = tmp_path / f"predict-{name}"
        result = CliRunner().invoke(
            main,
            [
                "predict",
                "--model",
                str(tmp_path / "out" / "models" / f"{name}-seed0.hbm"),
                "--geometry",
                str(geom),
                "--out",
                str(out),
                "--hits-cxi",
                str(root / "sim" / "run_0003.cxi"),
            ],
        )
        assert result.exit_code == 0, result.output
        predicted = pd.read_csv(out / "run_0003.hits.csv").set_index("event")
        compared = scores[(scores.method == name) & (scores.run == 3)].set_index("event")
        np.testing.assert_allclose(predicted.loc[compared.index, "score"], compared.score, rtol=1e-5, atol=1e-5)
        hits = CXIRun(out / "run_0003.hits.cxi")
        assert hits.frame_shape == (192, 64)  # the hits keep their raw frames and raw peaks, for indexamajig
        handed = (out / "run_0003.geom").read_text()  # the detector's own geometry, with the peak table added
        assert "peak_list = /entry_1/result_1" in handed and handed.endswith(geom.read_text())


def _labelled_images(
    root: Path, folder: Path, n_frames: int, name: str, write: Callable[[Path, np.ndarray], object]
) -> np.ndarray:
    """The first raw frames of run 1 under ``root``, one per image file ``name.format(i)`` in ``folder`` (written by
    ``write(path, frame)``), labelled by their truth in ``folder/labels.csv``; returns the frames."""
    run = CXIRun(root / "sim" / "run_0001.cxi")
    frames, truth = run.read(0, n_frames, apply_mask=False), run.field("hit")[:n_frames]
    rows = ["file,label"]
    for i, frame in enumerate(frames):
        write(folder / name.format(i), frame)
        rows.append(f"{name.format(i)},{'hit' if truth[i] else 'miss'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return frames


def test_image_files_of_raw_frames_with_geometry(raw_data: tuple[Path, Path], tmp_path: Path) -> None:
    """Raw multi-panel frames saved one per image file (EDF here), labelled in a CSV: assembled through the geometry."""
    import fabio.edfimage

    root, geom = raw_data

    def write_edf(path: Path, frame: np.ndarray) -> None:
        fabio.edfimage.EdfImage(data=frame.astype(np.int32)).write(str(path))

    frames = _labelled_images(root, tmp_path, 12, "frame_{:02d}.edf", write_edf)
    runner = CliRunner()
    result = runner.invoke(main, ["info", str(tmp_path / "frame_00.edf"), "--geometry", str(geom)])
    assert result.exit_code == 0 and "4 panels, raw frame 192 x 64" in result.output, result.output
    result = runner.invoke(
        main,
        [
            "compare",
            "--data",
            str(tmp_path),
            "--geometry",
            str(geom),
            "--methods",
            "intensity,litpix",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    examples = np.load(tmp_path / "out" / "examples.npz")
    assert examples["frames"].shape[1:] == (350, 350)
    image_run = next(iter(assembled_experiment(open_experiment(tmp_path), read_geom(geom), 350).runs.values()))
    expected = read_geom(geom).crop(np.maximum(frames[:1], 0), 350)[0] * image_run.mask  # negative pixels: masked
    assert image_run.mask.sum() > 4000 and np.array_equal(image_run.read(0, 1)[0], expected)


@pytest.mark.slow
@pytest.mark.skipif(INDEXAMAJIG is None, reason="CrystFEL's indexamajig not installed (../shared/crystfel/install.sh)")
def test_indexamajig_reads_raw_peaks_through_the_geometry(tmp_path: Path) -> None:
    """cxi-streptavidin on 2 x 2 whole CSPAD-sized panels turned 0, 90, 180, 270 degrees, run 90 (57 frames).

    indexamajig takes the raw peaks (``--peaks=cxi``) with the handed-off geometry; on the frames it indexes, the
    reflections it predicts lie on the simulator's raw spot positions: the panels' corners, fs/ss directions and
    the pixel-centre convention agree with CrystFEL's.
    """
    text = resources.files("hitbench.simulate").joinpath("presets/cxi-streptavidin.toml").read_text()
    text = text.replace(
        "panel_shape = [185, 194]", 'panel_shape = [185, 194]\npanels = "2x2"\npanel_rotations = [0, 90, 180, 270]'
    )
    # the geometry places the panels around the nominal beam centre: no per-run beam-centre jitter here
    text = text.replace("beam_centre_jitter_px = 1.0", "beam_centre_jitter_px = 0.0")
    experiment = tmp_path / "panels.toml"
    experiment.write_text(text.replace('name = "cxi-streptavidin"', 'name = "strep-panels"'))
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "simulate",
            "--experiment",
            str(experiment),
            "--out",
            str(tmp_path / "sim"),
            "--runs",
            "90",
            "--scale",
            "0.005",
        ],
    )
    assert result.exit_code == 0, result.output
    run_file, out = tmp_path / "sim" / "run_0090.cxi", tmp_path / "crystfel"
    result = runner.invoke(
        main,
        ["label", str(run_file), "--geometry", str(tmp_path / "sim" / "strep-panels.geom"), "--crystfel-out", str(out)],
    )
    assert result.exit_code == 0, result.output
    geom_text = (out / "run_0090.geom").read_text()
    assert "peak_list = /entry_1/result_1" in geom_text and "p3/fs = +0.000000x -1.000000y" in geom_text
    run = CXIRun(run_file)
    chunks = _index(
        out / "run_0090.lst",
        out / "run_0090.geom",
        tmp_path,
        "--peaks=cxi",
        "--no-revalidate",
        "--indexing=asdf",
        "-p",
        str(out / "run_0090.cell"),
    )
    indexed, distances = _check_indexing(chunks, run)  # predictions within 0.5 px of the raw true spots
    assert indexed >= 0.5 * len(chunks), (indexed, len(chunks))
    rms = np.sqrt(np.mean(np.square(distances)))
    print(
        f"indexamajig asdf on raw panels: {indexed}/{len(chunks)} hits indexed; predicted spots to the raw true "
        f"ones: rms {rms:.3f} px, max {max(distances):.3f} px (n={len(distances)})"
    )


def test_stack_with_a_panel_dimension(raw_data: tuple[Path, Path], tmp_path: Path) -> None:
    """(n, module, ss, fs) frames (AGIPD-style) with ``PANEL/dim1 = MODULE``: the same peaks as the panels stacked."""
    root, geom = raw_data
    run = CXIRun(root / "sim" / "run_0002.cxi")
    frames = run.read(apply_mask=False)
    path = tmp_path / "modules.h5"
    with h5py.File(path, "w") as h5:
        h5["/data/data"] = frames.reshape(len(frames), 4, 48, 64)
    text = geom.read_text().replace("data = /entry_1/data_1/data", "data = /data/data")
    text = text.replace("dim1 = ss\ndim2 = fs", "dim2 = ss\ndim3 = fs")
    for k in range(4):  # each panel is module k, its rows counted in the module
        text = text.replace(f"p{k}/min_ss = {48 * k}\n", f"p{k}/dim1 = {k}\np{k}/min_ss = 0\n")
        text = text.replace(f"p{k}/max_ss = {48 * k + 47}\n", f"p{k}/max_ss = 47\n")
    text += "bad_spot/min_fs = 3\nbad_spot/max_fs = 3\nbad_spot/min_ss = 5\nbad_spot/max_ss = 5\nbad_spot/panel = p2\n"
    modules = _write(tmp_path, text, "modules.geom")
    detector = read_geom(modules)
    assert [p.min_ss for p in detector.panels] == [0, 48, 96, 144] and not detector.mask[96 + 5, 3]
    assert np.array_equal(CXIRun(path, "/data/data").read(apply_mask=False), frames)
    result = CliRunner().invoke(main, ["label", str(path), "--geometry", str(modules)])
    assert result.exit_code == 0, result.output
    stacked = CXIRun(path, "/data/data")
    np.testing.assert_array_equal(stacked.field("label"), run.field("label"))
    assert abs(stacked.field("n_peaks") - run.field("n_peaks")).max() <= 1  # one pixel masked on p2


def test_resolution_limits_use_each_pixels_radius(panels_run) -> None:
    """--max-res/--min-res on raw frames are radii from the beam through the geometry, not from the frame's centre."""
    _, raw, sim = panels_run
    geom = raw.geometry()
    hits = np.flatnonzero(sim.truth["hit"])
    frames = sim.frames[hits].astype(np.float32) * sim.mask
    limited = raw_finder(PeakFinder8(min_res=15, max_res=40), geom)
    everything = raw_finder(PeakFinder8(), geom)
    radii, n_all = [], 0
    for frame in frames:
        peaks = limited.find(frame, sim.mask)
        x, y = geom.to_lab(peaks.x, peaks.y)
        radii.append(np.hypot(x, y))
        n_all += len(everything.find(frame, sim.mask))
    radii = np.concatenate(radii)
    assert len(radii) > 20 and 14 <= radii.min() and radii.max() <= 41 and len(radii) < n_all


def _multi_panel_cbf(path: Path, panels: list[np.ndarray]) -> Path:
    """A CBF file with one byte-offset binary section per panel, in an array_data loop (as cctbx writes CSPAD)."""
    from fabio.compression import compByteOffset

    parts = [
        b"###CBF: VERSION 1.5\r\ndata_multi_panel\r\n\r\nloop_\r\n_array_data.array_id\r\n"
        b"_array_data.binary_id\r\n_array_data.data\r\n"
    ]
    for k, panel in enumerate(panels, start=1):
        data = compByteOffset(panel.astype(np.int32))
        parts.append(
            f"ASIC{k} {k}\r\n;\r\n--CIF-BINARY-FORMAT-SECTION--\r\nContent-Type: application/octet-stream;\r\n"
            f'     conversions="x-CBF_BYTE_OFFSET"\r\nContent-Transfer-Encoding: BINARY\r\n'
            f"X-Binary-Size: {len(data)}\r\n"
            f'X-Binary-ID: {k}\r\nX-Binary-Element-Type: "signed 32-bit integer"\r\n'
            f"X-Binary-Element-Byte-Order: LITTLE_ENDIAN\r\nX-Binary-Number-of-Elements: {panel.size}\r\n"
            f"X-Binary-Size-Fastest-Dimension: {panel.shape[1]}\r\nX-Binary-Size-Second-Dimension: {panel.shape[0]}\r\n"
            "\r\n".encode()
            + b"\x0c\x1a\x04\xd5"
            + data
            + b"\r\n--CIF-BINARY-FORMAT-SECTION----\r\n;\r\n"
        )
    path.write_bytes(b"".join(parts))
    return path


def test_multi_panel_cbf_with_geometry(raw_data: tuple[Path, Path], tmp_path: Path) -> None:
    """A CBF file of one section per panel: read stacked along ss, assembled with --geometry, refused without."""
    from hitbench.data.formats import read_image

    root, geom = raw_data
    frames = _labelled_images(
        root, tmp_path, 8, "f{}.cbf", lambda path, frame: _multi_panel_cbf(path, list(frame.reshape(4, 48, 64)))
    )
    image = read_image(tmp_path / "f0.cbf")
    assert image.panels == 4 and np.array_equal(image.frame, np.maximum(frames[0], 0))
    runner = CliRunner()
    result = runner.invoke(main, ["info", str(tmp_path / "f0.cbf")])
    assert result.exit_code == 0 and "multi-panel CBF: 4 panels" in result.output, result.output
    out = ["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--methods", "intensity"]
    result = runner.invoke(main, ["compare", "--data", str(tmp_path), *out])
    assert_one_line_error(result, "f0.cbf: a multi-panel CBF (4 panels", "give its --geometry")
    result = runner.invoke(main, ["compare", "--data", str(tmp_path), "--geometry", str(geom), *out])
    assert result.exit_code == 0, result.output
