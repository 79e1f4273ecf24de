"""Tests of the peakfinder8-style peak finder, the peak-count labels and the `label` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hitbench.errors import HitbenchError
from hitbench.labelrule import peak_labels
from hitbench.peaks import PeakFinder8

SHAPE = (96, 112)
NOISE = 2.0  # readout-noise rms of the test frames, ADU
# A 3x3 spot with an off-centre profile, so the centroid falls between pixels.
SPOT = np.array([[60.0, 120.0, 80.0], [150.0, 400.0, 260.0], [70.0, 140.0, 90.0]])
SPOTS_RC = [(20, 25), (30, 80), (60, 75), (70, 30), (80, 95)]  # centre pixel (row, col) of each planted spot


def finder(**params: object) -> PeakFinder8:
    return PeakFinder8(**{"adc_threshold": 20.0, "min_snr": 6.0, "min_pixel_count": 2, **params})


def noise_frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, NOISE, SHAPE).astype(np.float32)


def planted_frame(seed: int = 0, scales: tuple[float, ...] = (1.0, 1.5, 2.0, 0.8, 3.0)) -> tuple[np.ndarray, list]:
    """Noise plus SPOT copies; returns the frame and the true (x, y, intensity) of each spot."""
    frame = noise_frame(seed)
    truth = []
    rows, cols = np.mgrid[-1:2, -1:2]
    for (r, c), scale in zip(SPOTS_RC, scales, strict=True):
        if scale == 0:
            continue
        spot = SPOT * scale
        frame[r - 1 : r + 2, c - 1 : c + 2] += spot
        total = spot.sum()
        truth.append((c + (spot * cols).sum() / total, r + (spot * rows).sum() / total, total))
    return frame, truth


def match(peaks, x: float, y: float, tol: float = 1.5) -> int | None:
    d = np.hypot(peaks.x - x, peaks.y - y)
    return int(np.argmin(d)) if d.size and d.min() < tol else None


def test_planted_peaks_found_exactly():
    frame, truth = planted_frame()
    peaks = finder().find(frame)
    assert len(peaks) == len(truth)
    for x, y, intensity in truth:
        i = match(peaks, x, y)
        assert i is not None
        assert abs(peaks.x[i] - x) < 0.1 and abs(peaks.y[i] - y) < 0.1
        assert peaks.intensity[i] == pytest.approx(intensity, rel=0.03)
        assert peaks.npix[i] == 9
        assert peaks.snr[i] > 6.0


def test_peaks_on_integrating_background_with_offset():
    """A constant pedestal is removed by the local background: intensities stay right."""
    frame, truth = planted_frame(seed=3)
    peaks = finder(adc_threshold=70.0).find(frame + 50.0)
    assert len(peaks) == len(truth)
    for x, y, intensity in truth:
        i = match(peaks, x, y)
        assert peaks.intensity[i] == pytest.approx(intensity, rel=0.03)


def test_masked_peak_rejected():
    frame, truth = planted_frame()
    mask = np.ones(SHAPE, dtype=bool)
    r, c = SPOTS_RC[2]
    mask[r - 1 : r + 2, c - 1 : c + 2] = False
    peaks = finder().find(frame, mask=mask)
    assert len(peaks) == len(truth) - 1
    assert match(peaks, *truth[2][:2]) is None


def test_out_of_resolution_peaks_rejected():
    frame, truth = planted_frame()
    cx, cy = (SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2
    radius = np.array([np.hypot(x - cx, y - cy) for x, y, _ in truth])
    low, high = np.sort(radius)[[1, -2]]
    peaks = finder(min_res=low - 2, max_res=high + 2).find(frame)
    inside = (radius >= low - 2) & (radius <= high + 2)
    assert inside.sum() == len(truth) - 2
    assert len(peaks) == inside.sum()
    for (x, y, _), keep in zip(truth, inside, strict=True):
        assert (match(peaks, x, y) is not None) == keep


def test_beam_centre_and_radius_map_are_equivalent():
    frame, _ = planted_frame()
    centre = (40.0, 60.0)
    rows, cols = np.indices(SHAPE)
    by_centre = finder(center=centre, max_res=45.0).find(frame)
    by_map = finder(radius_map=np.hypot(cols - centre[0], rows - centre[1]), max_res=45.0).find(frame)
    np.testing.assert_array_equal(by_centre.x, by_map.x)
    assert 0 < len(by_centre) < len(SPOTS_RC)


def test_flat_noise_frame_has_no_peaks():
    frames = np.stack([noise_frame(seed) for seed in range(4)])
    assert finder().count(frames).sum() <= 1


def test_photon_sparse_background_has_no_peaks():
    """Single-photon 'salt and pepper' on an integrating detector stays below an ADC threshold above one photon."""
    rng = np.random.default_rng(1)
    gain = 30.0
    frames = (rng.poisson(0.05, (4, *SHAPE)) * gain + rng.normal(0.0, NOISE, (4, *SHAPE))).astype(np.float32)
    assert finder(adc_threshold=1.5 * gain).count(frames).sum() <= 1


def test_background_above_adc_threshold_measured_as_peakfinder8_does():
    """A photon-counting frame of 7 counts a pixel, threshold 1.79 counts: a few pixels fall below the threshold,
    and a first radial pass over those alone would stop at the threshold (every pixel a peak pixel); the pass takes
    every pixel of such a bin instead, as peakfinder8's first pass does."""
    rng = np.random.default_rng(2)
    frames = rng.poisson(7.0, (4, *SHAPE)).astype(np.float32)
    assert 0 < (frames < 1.79).sum() < 0.01 * frames.size
    pf = finder(adc_threshold=1.79, min_snr=7.0)
    assert pf.count(frames).tolist() == [0, 0, 0, 0]
    planted = frames[0] + planted_frame(0)[0] - noise_frame(0)
    peaks = pf.find(planted)
    assert len(peaks) == len(SPOTS_RC)
    for r, c in SPOTS_RC:
        assert match(peaks, c, r) is not None


def test_hot_pixel_follows_min_pixel_count():
    frame = noise_frame()
    frame[40, 40] = 5000.0  # one hot pixel
    assert len(finder(min_pixel_count=2).find(frame)) == 0
    peaks = finder(min_pixel_count=1).find(frame)
    assert len(peaks) == 1
    assert (peaks.x[0], peaks.y[0], peaks.npix[0]) == (pytest.approx(40.0, abs=0.01), pytest.approx(40.0, abs=0.01), 1)


def test_large_blob_follows_max_pixel_count():
    frame = noise_frame()
    frame[8:14, 10:15] += 300.0  # 30 pixels
    assert len(finder(max_pixel_count=29).find(frame)) == 0
    assert finder(max_pixel_count=30).find(frame).npix.tolist() == [30]


def test_diagonal_pixels_form_one_peak():
    """Grouping is 8-connected: diagonal neighbours join, pixels two apart do not."""
    frame = noise_frame()
    frame[[10, 11, 12], [10, 11, 12]] += 300.0
    frame[[10, 10], [30, 32]] += 300.0
    peaks = finder(min_pixel_count=1).find(frame)
    assert sorted(peaks.npix.tolist()) == [1, 1, 3]


def test_max_num_peaks_keeps_first_in_scan_order():
    frame, truth = planted_frame()
    peaks = finder(max_num_peaks=2).find(frame)
    assert len(peaks) == 2
    np.testing.assert_allclose(peaks.y, [truth[0][1], truth[1][1]], atol=0.1)
    assert finder(max_num_peaks=2).count(frame[None]).tolist() == [2]


def test_stack_and_count_agree_with_find():
    frames = np.stack(
        [
            planted_frame(seed, scales)[0]
            for seed, scales in [(0, (1, 1, 1, 1, 1)), (1, (1, 0, 0, 2, 0)), (2, (0, 0, 0, 0, 0))]
        ]
    )
    frames[2] = noise_frame(9)
    pf = finder()
    single = [pf.find(frame) for frame in frames]
    table = pf.find_stack(frames)
    counts = pf.count(frames)
    assert counts.tolist() == [len(p) for p in single] == table.n_peaks.tolist() == [5, 2, 0]
    for i, peaks in enumerate(single):
        n = len(peaks)
        np.testing.assert_allclose(table.x[i, :n], peaks.x, rtol=1e-6)
        np.testing.assert_allclose(table.y[i, :n], peaks.y, rtol=1e-6)
        np.testing.assert_allclose(table.intensity[i, :n], peaks.intensity, rtol=1e-6)
        assert not table.x[i, n:].any()


def test_all_good_mask_is_no_mask():
    frame, _ = planted_frame()
    pf = finder()
    a = pf.find(frame)
    b = pf.find(frame, mask=np.ones(SHAPE, dtype=bool))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.intensity, b.intensity)


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"min_pixel_count": 0}, "min_pixel_count"),
        ({"max_pixel_count": 1, "min_pixel_count": 2}, "max_pixel_count"),
        ({"local_bg_radius": 0}, "local_bg_radius"),
        ({"min_snr": 0}, "min_snr"),
    ],
)
def test_bad_parameters_name_the_parameter(params, word):
    with pytest.raises(HitbenchError, match=word):
        finder(**params).find(noise_frame())


def test_bad_shapes_are_reported():
    with pytest.raises(HitbenchError, match="mask"):
        finder().find(noise_frame(), mask=np.ones((3, 3), dtype=bool))
    with pytest.raises(HitbenchError, match="frame"):
        finder().find(np.zeros((2, 8, 8)))


@pytest.mark.parametrize(("n_peaks", "label"), [(0, 0), (1, 0), (2, -1), (10, -1), (11, 1), (40, 1)])
def test_labels_at_the_bounds(n_peaks, label):
    assert peak_labels(np.array([n_peaks]), miss_below=2, hit_above=10).tolist() == [label]


def test_labels_configurable_bounds():
    counts = np.array([0, 3, 4, 5, 6])
    assert peak_labels(counts, miss_below=4, hit_above=5).tolist() == [0, 0, -1, -1, 1]
    with pytest.raises(HitbenchError, match="hit_above"):
        peak_labels(counts, miss_below=5, hit_above=2)


def test_label_command_writes_peaks_and_labels(tmp_path):
    import json

    import h5py
    from click.testing import CliRunner

    from hitbench.cli import main
    from hitbench.data.cxi import DATA, CXIRun
    from hitbench.data.cxi_write import write_cxi

    many = np.stack([planted_frame(seed)[0] for seed in range(3)])
    frames = np.concatenate([many, np.stack([noise_frame(seed) for seed in (5, 6)])])
    mask = np.ones(SHAPE, dtype=bool)
    mask[0, :] = False
    path = write_cxi(tmp_path / "run.cxi", frames, mask=mask)
    with h5py.File(path, "r") as h5:
        before = h5[DATA][()].tobytes()

    args = [
        str(path),
        "--adc-threshold",
        "20",
        "--min-snr",
        "6",
        "--miss-below",
        "2",
        "--hit-above",
        "4",
        "--chunk-size",
        "2",
        "--n-jobs",
        "2",
    ]
    result = CliRunner().invoke(main, ["label", *args])
    assert result.exit_code == 0, result.output

    run = CXIRun(path)
    expected = finder().find_stack(run.read(), mask=run.mask)
    assert run.peaks.n_peaks.tolist() == expected.n_peaks.tolist() == [5, 5, 5, 0, 0]
    np.testing.assert_allclose(run.peaks.x[:, :5], expected.x[:, :5], rtol=1e-6)
    assert run.field("label").tolist() == [1, 1, 1, 0, 0]
    assert run.field("n_peaks").tolist() == [5, 5, 5, 0, 0]
    assert json.loads(run.attrs["peakfinder8"])["adc_threshold"] == 20.0
    with h5py.File(path, "r") as h5:
        assert h5[DATA][()].tobytes() == before


def test_label_command_reports_a_missing_file(tmp_path):
    from click.testing import CliRunner
    from helpers import assert_one_line_error

    from hitbench.cli import main

    assert_one_line_error(CliRunner().invoke(main, ["label", str(tmp_path / "absent.cxi")]), "absent.cxi")


# ---------------------------------------------------------------- golden peaks
GOLDEN = Path(__file__).parent / "data" / "golden_peaks.npz"
#: Finders and inputs of the golden file: (name, finder parameters, which frames, mask, pedestal added to the frames).
GOLDEN_CASES = {
    "default": ({}, "frames", "mask", 0),
    "params": (
        {
            "adc_threshold": 30.0,
            "min_snr": 5.0,
            "min_pixel_count": 1,
            "max_pixel_count": 20,
            "local_bg_radius": 2,
            "min_res": 20.0,
            "max_res": 160.0,
            "max_num_peaks": 12,
            "n_iterations": 3,
        },
        "frames",
        None,
        0,
    ),
    "panels": ({"radius_map": "radius_map", "panel_map": "panel_map"}, "frames", "holes", 0),
    "pedestal": ({"adc_threshold": 120.0, "min_snr": 6.0, "center": (150.0, 200.0)}, "frames", "mask", 100),
    "crops": ({"min_snr": 6.0}, "crops", None, 0),
}


def golden_inputs() -> dict[str, np.ndarray]:
    """The golden file's inputs: three 350x350 frames of simulated run 90 (two hits, one miss), corner crops of
    two more hits, and the run's mask."""
    from hitbench.simulate import load_experiment, simulate_run

    sim = simulate_run(load_experiment("cxi-streptavidin"), run=90, n_frames=16, seed=0)
    return {"frames": sim.frames[[1, 4, 0]], "crops": sim.frames[[9, 13], :176, :176], "mask": sim.mask}


def golden_outputs(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``find`` (per frame, concatenated), ``find_stack`` and ``count`` of every golden case.

    The "panels" case adds a made-up four-panel layout (panels split at row 170 and column 181, a beam off the
    frame centre) and a mask with holes.
    """
    rows, cols = np.indices(inputs["frames"].shape[1:])
    holes = inputs["mask"].copy()
    holes[100:140, 200:260] = False
    holes[:, 60] = False
    extra = {
        "holes": holes,
        "radius_map": np.hypot(cols - 171.3, rows - 180.6),
        "panel_map": np.where(rows < 170, np.where(cols < 181, 5, 2), np.where(cols < 181, 0, 9)),
    }
    inputs = {**inputs, **extra}
    out = {}
    for name, (params, which, mask, pedestal) in GOLDEN_CASES.items():
        params = {k: inputs[v] if isinstance(v, str) else v for k, v in params.items()}
        pf = PeakFinder8(**params)
        frames = inputs[which].astype(np.float32) + pedestal
        mask = None if mask is None else inputs[mask]
        found = [pf.find(frame, mask) for frame in frames]
        out[f"{name}/n"] = np.array([len(p) for p in found])
        for field in ("x", "y", "intensity", "snr", "npix"):
            out[f"{name}/{field}"] = np.concatenate([getattr(p, field) for p in found])
        table = pf.find_stack(frames, mask)
        for field in ("n_peaks", "x", "y", "intensity"):
            out[f"{name}/stack_{field}"] = getattr(table, field)
        out[f"{name}/count"] = pf.count(frames, mask)
    return out


def write_golden() -> None:
    """Write tests/data/golden_peaks.npz from the current code: ``python -c "import test_peaks as t; t.write_golden()"``
    in tests/."""
    inputs = golden_inputs()
    np.savez_compressed(GOLDEN, **inputs, **{f"out/{k}": v for k, v in golden_outputs(inputs).items()})


def test_peaks_are_golden():
    """find, find_stack and count reproduce tests/data/golden_peaks.npz, written by the numpy/scipy finder of
    commit 92be110: counts and pixel counts equal, centroids, intensities and SNR within 1e-9 relative
    (the frames are whole numbers of ADU, so every sum is exact and the compiled finder gives the same values)."""
    with np.load(GOLDEN) as golden:
        stored = dict(golden)
    inputs = {k: v for k, v in stored.items() if not k.startswith("out/")}
    for key, value in golden_outputs(inputs).items():
        expected = stored[f"out/{key}"]
        if expected.dtype.kind in "iu":
            np.testing.assert_array_equal(value, expected, err_msg=key)
        else:
            np.testing.assert_allclose(value, expected, rtol=1e-9, atol=0, err_msg=key)


def test_importing_the_finder_leaves_numba_out():
    """The compiled kernel is imported when a frame is searched, not with hitbench.peaks."""
    import subprocess
    import sys

    code = "import sys, hitbench.peaks; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_label_finder_takes_the_default_threshold_in_photons():
    from hitbench.peaks.labels import DEFAULTS_ADU_PER_PHOTON, label_finder

    assert label_finder(DEFAULTS_ADU_PER_PHOTON).get_params() == PeakFinder8().get_params()
    for adu_per_photon in (12.4, 1.0):  # a Jungfrau in keV at 12.4 keV, a photon-counting detector
        photons = label_finder(adu_per_photon).adc_threshold / adu_per_photon
        assert photons == pytest.approx(50.0 / 28.0)
        assert label_finder(adu_per_photon).min_snr == PeakFinder8().min_snr


def test_preset_labelled_in_its_photons_and_relabelled_after_another_finder(tmp_path):
    import json
    from importlib import resources

    from hitbench.bench.data import simulated_experiment
    from hitbench.peaks.labels import label_run

    # tiny's detector at half the gain: 14 ADU per photon, so its labeller's threshold is 25 ADU
    text = resources.files("hitbench.simulate").joinpath("presets", "tiny.toml").read_text()
    assert "gain_adu_per_photon = 28.0" in text
    preset = tmp_path / "tiny-half-gain.toml"
    preset.write_text(text.replace("gain_adu_per_photon = 28.0", "gain_adu_per_photon = 14.0"))

    def recorded() -> dict[str, float]:
        experiment = simulated_experiment(str(preset), scale=0.1, seed=0, cache_dir=tmp_path / "cache")
        return {name: json.loads(run.attrs["peakfinder8"])["adc_threshold"] for name, run in experiment.runs.items()}

    first = recorded()
    assert len(first) == 4 and set(first.values()) == {25.0}
    run = next(iter(simulated_experiment(str(preset), scale=0.1, seed=0, cache_dir=tmp_path / "cache").runs.values()))
    label_run(run.path, PeakFinder8())  # a cache labelled by an older hitbench, at 50 ADU
    others = {path: path.stat().st_mtime_ns for path in run.path.parent.glob("*.cxi") if path != run.path}
    assert recorded() == first  # that run labelled again, in photons
    assert {path: path.stat().st_mtime_ns for path in others} == others  # the others left alone


def test_cached_run_labelled_by_other_finder_code_is_labelled_again(tmp_path):
    from hitbench.bench.data import simulated_experiment
    from hitbench.data.cxi_write import update_cxi
    from hitbench.peaks.labels import finder_code

    def runs() -> dict:
        return simulated_experiment("tiny", scale=0.1, seed=0, cache_dir=tmp_path).runs

    first = runs()
    assert {run.attrs["peakfinder8_code"] for run in first.values()} == {finder_code()}
    stale = next(iter(first.values())).path
    update_cxi(stale, attrs={"peakfinder8_code": "labelled by other code"})  # as an older hitbench's cache
    others = {run.path: run.path.stat().st_mtime_ns for run in first.values() if run.path != stale}
    again = runs()
    assert {run.attrs["peakfinder8_code"] for run in again.values()} == {finder_code()}  # that run labelled again
    assert {path: path.stat().st_mtime_ns for path in others} == others  # the others left alone
