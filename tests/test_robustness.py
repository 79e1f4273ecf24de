"""Hardening: bad input to every command that reads data, interruption, concurrent runs, determinism.

Every bad input must give ONE line on stderr ("hitbench: error: ..." naming the file or field), a non-zero
exit and no traceback, and must leave every file already on disk byte-identical.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error, interruptible, wait_until_ready

from hitbench.cli import main
from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import update_cxi, write_cxi

SHAPE = (96, 96)  # the tiny preset's frames, so a model trained on it accepts these files
COMPARE = ["compare", "--preset", "tiny", "--methods", "intensity,litpix", "--train-runs", "1-2"]
HITBENCH = str(Path(sys.executable).with_name("hitbench"))  # the installed entry point


def _hashes(*roots: Path) -> dict[Path, str]:
    """SHA-256 of every file under ``roots`` (files or folders), lock files aside."""
    files = [p for r in roots for p in ([r] if r.is_file() else sorted(r.rglob("*"))) if p.is_file()]
    files = [p for p in files if p.suffix != ".lock"]
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _invoke(args: list[object]):
    return CliRunner().invoke(main, [str(a) for a in args])


def _fails_cleanly(args: list[object], *fragments: str, watch: tuple[Path, ...] = ()) -> str:
    """Run the CLI; check one-line error naming ``fragments``, exit 1, no traceback, ``watch`` unchanged."""
    before = _hashes(*watch)
    result = _invoke(args)
    after = _hashes(*watch)
    assert_one_line_error(result, *fragments)
    assert after == before, "files on disk changed"
    return result.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny-preset comparison (cache, results folder, saved litpix model) and a folder of bad CXI files."""
    root = tmp_path_factory.mktemp("robust")
    result = _invoke([*COMPARE, "--out", root / "out", "--cache-dir", root / "cache", "--save-models"])
    assert result.exit_code == 0, result.output
    sim = next((root / "cache" / "simulated").glob("tiny-*/"))
    return {
        "root": root,
        "cache": root / "cache",
        "out": root / "out",
        "sim": sim,
        "model": root / "out" / "models" / "litpix-seed0.hbm",
        "bad": _bad_files(root / "bad", sim / "run_0003.cxi"),
    }


def _labelled(path: Path, frames: np.ndarray) -> Path:
    """A CXI file with both label classes, as `hitbench label` would leave it."""
    labels = (np.arange(frames.shape[0]) % 2).astype(np.int8)
    return write_cxi(path, frames, fields={"label": labels, "n_peaks": labels * 20, "hit": labels})


def _h5(path: Path, **datasets: object) -> Path:
    with h5py.File(path, "w") as h5:
        for key, value in datasets.items():
            h5[key.replace("__", "/")] = value
    return path


def _bad_files(folder: Path, good: Path) -> dict[str, Path]:
    """Bad CXI inputs by name (all 96x96 where they have frames)."""
    folder.mkdir()
    data = good.read_bytes()
    frames = np.random.default_rng(0).random((6, *SHAPE), dtype=np.float32) * 10
    nan, inf = frames.copy(), frames.copy()
    nan[1, 3, 3] = np.nan
    inf[2, 5, 5] = -np.inf
    flipped = bytearray(data)  # the frames' object header damaged: the file opens, the data set cannot
    with h5py.File(good, "r") as h5:
        header = h5py.h5o.get_info(h5["/entry_1/data_1/data"].id).addr
    for i in range(header, header + 64):
        flipped[i] ^= 0xFF
    ones = np.ones((2, *SHAPE), np.float32)
    det = "entry_1__instrument_1__detector_1__"
    files = {
        "missing": folder / "missing.cxi",
        "empty": folder / "empty.cxi",
        "text": folder / "text.cxi",
        "truncated_half": folder / "truncated_half.cxi",
        "truncated_head": folder / "truncated_head.cxi",
        "corrupt": folder / "corrupt.cxi",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("run 12, 3000 frames\n")
    files["truncated_half"].write_bytes(data[: len(data) // 2])
    files["truncated_head"].write_bytes(data[:4096])
    files["corrupt"].write_bytes(bytes(flipped))
    files["no_data_path"] = _h5(folder / "no_data_path.cxi", entry_1__other=np.zeros(3))
    with h5py.File(folder / "group_at_data.cxi", "w") as h5:
        h5.create_group("/entry_1/data_1/data")
    files["group_at_data"] = folder / "group_at_data.cxi"
    files["strings"] = _h5(folder / "strings.cxi", entry_1__data_1__data=np.full((2, *SHAPE), b"x", dtype="S1"))
    files["complex"] = _h5(folder / "complex.cxi", entry_1__data_1__data=ones.astype(np.complex64))
    files["2d"] = _h5(folder / "2d.cxi", entry_1__data_1__data=ones[0])
    files["4d"] = _h5(folder / "4d.cxi", entry_1__data_1__data=ones[None])
    files["mask_shape"] = _h5(folder / "mask_shape.cxi", entry_1__data_1__data=ones, **{det + "mask": np.zeros((4, 4))})
    files["mask_strings"] = _h5(
        folder / "mask_strings.cxi", entry_1__data_1__data=ones, **{det + "mask": np.full(SHAPE, b"x", dtype="S1")}
    )
    files["geometry_text"] = _h5(
        folder / "geometry_text.cxi",
        entry_1__data_1__data=ones,
        entry_1__instrument_1__source_1__energy=1e-15,
        **{det + "distance": np.array([b"far"]), det + "x_pixel_size": 1e-4, det + "y_pixel_size": 1e-4},
    )
    files["nan"] = _labelled(folder / "nan.cxi", nan)
    files["inf"] = _labelled(folder / "inf.cxi", inf)
    files["zero_frames"] = _labelled(folder / "zero_frames.cxi", np.zeros((0, *SHAPE), np.float32))
    files["zeros"] = _labelled(folder / "zeros.cxi", np.zeros((4, *SHAPE), np.float32))
    files["saturated"] = _labelled(folder / "saturated.cxi", np.full((4, *SHAPE), 65535, np.uint16))
    return files


# name -> words the error line must hold (besides the file name); None = the file must be read fine.
UNREADABLE = {
    "missing": ["no such file"],
    "empty": ["not an HDF5 file"],
    "text": ["not an HDF5 file"],
    "truncated_half": ["truncated"],
    "truncated_head": [],
    "corrupt": ["corrupt"],
    "no_data_path": ["/entry_1/data_1/data"],
    "group_at_data": ["/entry_1/data_1/data"],
    "strings": ["dtype"],
    "complex": ["complex64"],
    "2d": ["(n_frames, height, width)"],
    "mask_shape": ["mask", "shape"],
    "mask_strings": ["mask", "dtype"],
    "geometry_text": ["distance"],
}
BAD_FRAMES = {
    "nan": ["NaN or Inf"],
    "inf": ["NaN or Inf"],
    "zero_frames": ["no frames"],
    "4d": ["2 panels a frame", "--geometry"],  # (n, panel, ss, fs): readable, but not searched or cropped as one image
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_info_unreadable_file(workspace: dict, name: str) -> None:
    path = workspace["bad"][name]
    _fails_cleanly(["info", path], path.name, *UNREADABLE[name], watch=(workspace["bad"]["empty"].parent,))


@pytest.mark.parametrize("name", ["nan", "inf", "zero_frames", "zeros", "saturated"])
def test_info_describes_odd_frames(workspace: dict, name: str) -> None:
    result = _invoke(["info", workspace["bad"][name]])
    assert result.exit_code == 0, result.output
    assert "frames" in result.output and "96 x 96" in result.output


def test_info_describes_a_panel_stack(workspace: dict) -> None:
    result = _invoke(["info", workspace["bad"]["4d"]])
    assert result.exit_code == 0, result.output
    assert "2 panels stacked along ss" in " ".join(result.output.split())


@pytest.mark.parametrize("name", sorted({**UNREADABLE, **BAD_FRAMES}))
def test_label_bad_file(workspace: dict, name: str) -> None:
    path = workspace["bad"][name]
    words = {**UNREADABLE, **BAD_FRAMES}[name]
    _fails_cleanly(["label", path], path.name, *words, watch=(path.parent,))


@pytest.mark.parametrize("name", ["zeros", "saturated"])
def test_label_flat_frames(workspace: dict, tmp_path: Path, name: str) -> None:
    path = shutil.copy(workspace["bad"][name], tmp_path / "run.cxi")
    result = _invoke(["label", path])
    assert result.exit_code == 0, result.output
    # flat frames, dark or saturated, hold no Bragg peaks: every one is a miss
    np.testing.assert_array_equal(CXIRun(path).field("label"), 0)


@pytest.mark.parametrize("name", sorted({**UNREADABLE, **BAD_FRAMES}))
def test_predict_bad_file(workspace: dict, tmp_path: Path, name: str) -> None:
    path = workspace["bad"][name]
    words = {**UNREADABLE, **BAD_FRAMES}[name]
    out = tmp_path / "pred"
    _fails_cleanly(
        ["predict", path, "--model", workspace["model"], "--out", out, "--hits-cxi"],
        path.name,
        *words,
        watch=(path.parent, workspace["model"]),
    )
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["zeros", "saturated"])
def test_predict_flat_frames(workspace: dict, tmp_path: Path, name: str) -> None:
    result = _invoke(["predict", workspace["bad"][name], "--model", workspace["model"], "--out", tmp_path])
    assert result.exit_code == 0, result.output
    hits = pd.read_csv(tmp_path / f"{name}.hits.csv")
    assert len(hits) == 4 and np.isfinite(hits["score"]).all()
    assert set(hits["label"]) == ({0} if name == "zeros" else {1})


@pytest.mark.parametrize("name", sorted({**UNREADABLE, **BAD_FRAMES}))
@pytest.mark.parametrize("option", ["--data", "--cross-experiment"])
def test_compare_bad_data(workspace: dict, tmp_path: Path, name: str, option: str) -> None:
    path = workspace["bad"][name]
    folder = tmp_path / "data"
    folder.mkdir()
    if path.exists():
        shutil.copy(path, folder / path.name)
    args = ["compare", "--methods", "intensity,litpix", "--cache-dir", workspace["cache"], "--out", tmp_path / "out"]
    if option == "--data":
        args += ["--data", folder]
    else:
        args += ["--preset", "tiny", "--train-runs", "1-2", "--cross-experiment", folder]
    words = {**UNREADABLE, **BAD_FRAMES}[name] if path.exists() else ["no *.cxi files"]
    _fails_cleanly(args, *words, watch=(folder, workspace["cache"]))
    assert not (tmp_path / "out" / "results.csv").exists()


def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.fixture
def afile(tmp_path: Path) -> Path:
    """A regular file: any output path under it cannot be written, even as root (chmod does not stop root)."""
    return _write(tmp_path / "afile", "x")


def test_compare_one_class_training(workspace: dict, tmp_path: Path) -> None:
    data = shutil.copytree(workspace["sim"], tmp_path / "misses")
    for path in data.glob("*.cxi"):
        update_cxi(path, fields={"label": np.zeros(CXIRun(path).n_frames, np.int8)})
    args = ["compare", "--data", data, "--methods", "intensity", "--out", tmp_path / "o", "--cache-dir", tmp_path / "c"]
    _fails_cleanly(args, "run_0001.cxi", "all misses", watch=(data,))


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--param", "garbage"], ["METHOD.NAME=VALUE"]),
        (["--param", "intensity.=3"], ["METHOD.NAME=VALUE"]),
        (["--param", "intensity.threshold"], ["METHOD.NAME=VALUE"]),
        (["--param", "intensity.nosuch=1"], ["no such parameter", "has none"]),
        (["--param", "svm.C=1"], ["not among --methods"]),
        (["--param", "litpix.adc_threshold=abc"], ["litpix", "adc_threshold", "check --param"]),
        (["--param", "litpix.adc_threshold=[1,"], ["litpix", "check --param"]),
        (["--methods", "nosuch"], ["nosuch"]),
        (["--cross-experiment", "nosuch-preset"], ["nosuch-preset"]),
        (["--holdout", "1.5"], ["--holdout"]),
        (["--scale", "-1"], ["scale"]),
        (["--test-runs", "99"], ["--test-runs", "99"]),
    ],
)
def test_compare_bad_options(workspace: dict, tmp_path: Path, extra: list[str], words: list[str]) -> None:
    args = [*COMPARE, "--cache-dir", workspace["cache"], "--out", tmp_path / "o", *extra]
    _fails_cleanly(args, *words, watch=(workspace["cache"],))


def test_compare_bad_preset_files(workspace: dict, tmp_path: Path) -> None:
    base = ["compare", "--methods", "intensity", "--cache-dir", workspace["cache"], "--out", tmp_path / "o"]
    _fails_cleanly([*base, "--preset", "nosuch"], "nosuch", "presets:")
    bad = _write(tmp_path / "bad.toml", "name = [\n")
    _fails_cleanly([*base, "--preset", bad], "bad.toml", "not valid TOML")  # a TOML file, not read as data
    _fails_cleanly([*base, "--preset", "tiny", "--cross-experiment", bad], "bad.toml", "not valid TOML")


def test_compare_unwritable_out_and_cache(workspace: dict, afile: Path) -> None:
    _fails_cleanly([*COMPARE, "--cache-dir", workspace["cache"], "--out", afile / "o"], "afile", "not writable")
    _fails_cleanly([*COMPARE, "--cache-dir", afile / "c", "--out", afile.parent / "o"], "afile", "cache")


def test_compare_bad_labels_csv(workspace: dict, tmp_path: Path) -> None:
    base = ["compare", "--methods", "intensity", "--cache-dir", tmp_path / "c", "--out", tmp_path / "o", "--data"]
    for content, words in [
        (b"\xff\xfe\x00binary", ["not a text CSV"]),
        (b"", ["header columns"]),
        (b"a,b\n1,2\n", ["header columns"]),
        (b"file,label\nx.cbf,maybe\n", ["label 'maybe'"]),
        (b"file,label\nx.cbf,hit\n", ["x.cbf", "no such file"]),
    ]:
        csv = _write(tmp_path / "labels.csv", content)
        _fails_cleanly([*base, csv], *words, watch=(csv,))


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        (None, ["neither a preset nor"]),
        ("", ["name", "required"]),
        ("name = [\n", ["not valid TOML"]),
        (bytes(range(256)), ["not a text file"]),
        ('frame_shape = ["a", 96]', ["frame_shape[0]"]),
        ("frame_shape = [96, 96, 3]", ["frame_shape"]),
        ("photon_energy_ev = nan", ["photon_energy_ev", "finite"]),
        ('photon_energy_ev = "x"', ["photon_energy_ev"]),
        ("events = 0", ["events"]),
        ("hit_fraction = 1.5", ["hit_fraction"]),
    ],
)
def test_simulate_bad_experiment(tmp_path: Path, toml: str | bytes | None, words: list[str]) -> None:
    tiny = (Path(__file__).parents[1] / "hitbench" / "simulate" / "presets" / "tiny.toml").read_text()
    path = tmp_path / "exp.toml"
    if isinstance(toml, bytes) or toml in ("", "name = [\n"):
        _write(path, toml)
    elif toml is not None:
        key = toml.split(" =")[0]
        line = next(line for line in tiny.splitlines() if line.startswith(f"{key} ="))
        _write(path, tiny.replace(line, toml, 1))
    words = [w.replace("neither a preset nor", "neither a preset") for w in words]
    _fails_cleanly(["simulate", "--experiment", path, "--out", tmp_path / "out"], "exp.toml", *words)
    assert not (tmp_path / "out").exists()


def test_simulate_bad_options(tmp_path: Path, afile: Path) -> None:
    out = ["--out", tmp_path / "out"]
    _fails_cleanly(["simulate", "--preset", "nosuch", *out], "nosuch")
    _fails_cleanly(["simulate", *out], "exactly one of --preset")
    _fails_cleanly(["simulate", "--preset", "tiny", "--runs", "x", *out], "--runs x")
    _fails_cleanly(["simulate", "--preset", "tiny", "--runs", "99", *out], "--runs 99")
    _fails_cleanly(["simulate", "--preset", "tiny", "--scale", "-1", *out], "scale")
    _fails_cleanly(["simulate", "--preset", "tiny", "--runs", "1", "--scale", "0.05", "--out", afile / "s"], "afile")


def test_report_bad_results(workspace: dict, tmp_path: Path, afile: Path) -> None:
    docs = ["--docs", tmp_path / "docs"]
    _fails_cleanly(["report", tmp_path / "nope", *docs], "results.csv", "missing")
    good = workspace["out"]
    for name, content, words in [
        ("results.csv", b"", ["unreadable"]),
        ("results.csv", (good / "results.csv").read_bytes()[:400], ["results.csv", "truncated"]),
        ("results.csv", b"a,b\n1,2\n", ["results.csv", "no column(s) method"]),
        ("scores.csv.gz", b"\x1f\x8b\x08garbage", ["unreadable"]),
        ("scores.csv.gz", b"not gzip", ["unreadable"]),
        ("meta.json", b"{bad json", ["meta.json", "not valid JSON"]),
    ]:
        folder = shutil.copytree(good, tmp_path / f"r-{name}-{len(content)}")
        _write(folder / name, content)
        _fails_cleanly(["report", folder, *docs], *words, watch=(folder,))
    assert not (tmp_path / "docs").exists()
    _fails_cleanly(["report", good, "--docs", afile / "docs"], "afile", "cannot write", watch=(good,))


def test_predict_bad_model_and_out(workspace: dict, tmp_path: Path, afile: Path) -> None:
    run = workspace["sim"] / "run_0003.cxi"
    out = ["--out", tmp_path / "p"]
    model = workspace["model"]
    for content, words in [
        (b"garbage", ["not a hitbench model file"]),
        (model.read_bytes()[:100], ["not a hitbench model file"]),
    ]:
        path = _write(tmp_path / "m.joblib", content)
        _fails_cleanly(["predict", run, "--model", path, *out], "m.joblib", *words, watch=(run,))
    _fails_cleanly(["predict", run, "--model", tmp_path / "none.joblib", *out], "none.joblib", "no such file")
    _fails_cleanly(["predict", run, "--model", model, "--out", afile / "p"], "afile", watch=(run,))
    _fails_cleanly(["predict", run, "--model", model, "--chunk-size", "0", *out], "--chunk-size")


def _hitbench(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [HITBENCH, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _no_partial_files(*roots: Path) -> None:
    leftovers = [p for r in roots for p in r.rglob("*") if p.name.endswith(".part") or ".hitbench_staging" in p.name]
    assert leftovers == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_compare_resumes_from_cache(workspace: dict, tmp_path: Path, sig: signal.Signals) -> None:
    cache = shutil.copytree(workspace["cache"], tmp_path / "cache", ignore=shutil.ignore_patterns("models", "scores"))
    out, ready = tmp_path / "out", tmp_path / "ready"
    # the child pauses once the first of the two models is in the cache: the signal always comes mid-way
    proc = interruptible([*COMPARE, "--cache-dir", cache, "--out", out], "hitbench.bench.runner.save_model", ready)
    wait_until_ready(proc, ready)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    _interrupted_cleanly(proc, err)
    _no_partial_files(cache, tmp_path)
    assert not (out / "results.csv").exists() and not (out / "tables").exists()
    assert len(list((cache / "models").glob("*.hbm"))) == 1
    again = subprocess.run(
        [HITBENCH, *map(str, COMPARE), "--cache-dir", cache, "--out", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "trained 1 model(s)" in again.stdout  # the first model came from the cache
    assert (out / "tables" / "table2_litpix.md").read_bytes() == (
        workspace["out"] / "tables" / "table2_litpix.md"
    ).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_predict_leaves_no_output(workspace: dict, tmp_path: Path, sig: signal.Signals) -> None:
    run = workspace["sim"] / "run_0004.cxi"
    out, ready = tmp_path / "pred", tmp_path / "ready"
    args = ["predict", run, "--model", workspace["model"], "--out", out, "--hits-cxi", "--chunk-size", "1"]
    # the child pauses after its first chunk, with the hit list and hits file being written
    proc = interruptible(args, "hitbench.predict.predict_chunk", ready)
    wait_until_ready(proc, ready)
    assert any(out.iterdir())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    _interrupted_cleanly(proc, err)
    assert list(out.iterdir()) == []
    shutil.rmtree(out)
    assert subprocess.run([HITBENCH, *map(str, args)], capture_output=True).returncode == 0
    assert len(pd.read_csv(out / "run_0004.hits.csv")) == CXIRun(run).n_frames


def _interrupted_cleanly(proc: subprocess.Popen, err: str) -> None:
    """Exit 130 with the one interruption line last on stderr, and no traceback."""
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("hitbench: interrupted"), err
    assert "Traceback" not in err


@pytest.mark.slow
def test_two_compares_share_a_cache(workspace: dict, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    procs = [_hitbench(*COMPARE, "--cache-dir", cache, "--out", tmp_path / f"out{i}") for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    _no_partial_files(cache)
    for i in range(2):
        for name in ("table2_intensity.md", "table2_litpix.md", "summary.md"):
            expected = (workspace["out"] / "tables" / name).read_bytes()
            assert (tmp_path / f"out{i}" / "tables" / name).read_bytes() == expected, name
