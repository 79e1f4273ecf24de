"""Bad input (issue 21): one line naming the file or option and the fix, never a traceback, a hang or a
silently wrong result; workers that do not outlive the command."""

from __future__ import annotations

import builtins
import bz2
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import h5py
import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error

from hitbench.cli import main
from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import write_cxi
from hitbench.data.dataset import open_experiment, read_labels_csv
from hitbench.data.formats import CBF_BINARY_START, read_image
from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.parallel import WORKER_REPLACED, available_cores, check_n_jobs, cpu_info

HITBENCH = str(Path(sys.executable).with_name("hitbench"))


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The "tiny" preset's four runs (simulated truth labels), as a data folder."""
    folder = tmp_path_factory.mktemp("tiny") / "runs"
    result = _run("simulate", "--preset", "tiny", "--out", folder)
    assert result.exit_code == 0, result.output
    return folder


def _compare(runs: Path, tmp_path: Path, *args: object):
    return _run(
        "compare",
        "--data",
        runs,
        "--labels",
        "truth",
        "--methods",
        "intensity",
        "--out",
        tmp_path / "out",
        "--cache-dir",
        tmp_path / "cache",
        *args,
    )


def _cbf(path: Path, header: str = "", data: np.ndarray | None = None) -> Path:
    import fabio.cbfimage

    image = fabio.cbfimage.CbfImage(data=np.ones((64, 64), np.int32) if data is None else data)
    if header:
        image.header["_array_data.header_contents"] = header
    image.write(str(path))
    return path


@pytest.fixture
def damaged_cbf(tmp_path: Path) -> Path:
    import fabio.cbfimage

    good = tmp_path / "good.cbf"
    fabio.cbfimage.CbfImage(data=np.arange(64 * 64, dtype=np.int32).reshape(64, 64)).write(str(good))
    assert read_image(good).frame.shape == (64, 64)
    content = good.read_bytes()
    assert content.count(CBF_BINARY_START) == 1
    path = tmp_path / "damaged.cbf"
    path.write_bytes(content.replace(CBF_BINARY_START, b"\x0c\x1a\x04\x00"))
    return path


def test_damaged_cbf_marker_is_refused_before_fabio(damaged_cbf: Path, tmp_path: Path) -> None:
    with pytest.raises(HitbenchError, match="without a binary section"):
        read_image(damaged_cbf)
    packed = tmp_path / "damaged.cbf.bz2"
    packed.write_bytes(bz2.compress(damaged_cbf.read_bytes()))
    with pytest.raises(HitbenchError, match="without a binary section"):
        read_image(packed)


def test_info_on_a_damaged_cbf_gives_one_line_in_bounded_time(damaged_cbf: Path) -> None:
    result = subprocess.run([HITBENCH, "info", str(damaged_cbf)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"hitbench: error: {damaged_cbf}: CBF file without a binary section (its start marker is missing or "
        "damaged); the file is truncated or corrupt"
    ]


# -- 4: wrong results with no word ---------------------------------------------------------------------------


def test_labels_csv_repeated_rows_read_once_and_conflicting_ones_refused(tmp_path: Path) -> None:
    for i in range(3):
        _cbf(tmp_path / f"f{i}.cbf")
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nf0.cbf,hit\nf1.cbf,miss\n./f0.cbf,hit\nf2.cbf,miss\n")
    run = read_labels_csv(csv)
    assert [f.name for f in run.files] == ["f0.cbf", "f1.cbf", "f2.cbf"] and run.labels.tolist() == [1, 0, 0]
    csv.write_text("file,label\nf0.cbf,hit\nf1.cbf,miss\nf0.cbf,miss\n")
    with pytest.raises(HitbenchError, match=r"labels.csv:4: f0.cbf is labelled 'miss' here and otherwise in row 2"):
        read_labels_csv(csv)


def test_two_files_of_the_same_run_refused_naming_both(runs: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a.cxi", "b.cxi"):
        (folder / name).write_bytes((runs / "run_0001.cxi").read_bytes())
    with pytest.raises(HitbenchError, match=r"b.cxi and .*a.cxi: both are run '1'") as info:
        open_experiment(folder)
    assert "\n" not in str(info.value)


def test_a_preset_name_means_the_preset_whatever_folder_is_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hitbench.bench import compare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "labels.csv").write_text("file,label\n")
    simulated = []
    monkeypatch.setattr(compare, "simulated_experiment", lambda source, **kwargs: simulated.append(source))
    settings = compare.CompareSettings(methods=["intensity"], out=tmp_path / "out", cache_dir=tmp_path / "cache")
    compare._experiment("tiny", settings, 350, None)
    assert simulated == ["tiny"]
    with pytest.raises(HitbenchError, match="expected a CSV with header"):  # a path: the folder
        compare._experiment(Path("tiny"), settings, 350, None)
    assert_one_line_error(_run("compare", "--preset", "./tiny"), "--preset ./tiny: is a folder", "--data ./tiny")
    result = _run("simulate", "--preset", "tiny", "--out", "sim", "--runs", "1", "--scale", "0.05")
    assert result.exit_code == 0 and (tmp_path / "sim" / "run_0001.cxi").is_file(), result.output


def test_multi_page_tiff_refused(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "stack.tif"
    with tifffile.TiffWriter(path) as tiff:
        for value in range(3):
            tiff.write(np.full((32, 32), value, np.uint16), photometric="minisblack")
    assert_one_line_error(_run("info", path), "stack.tif: holds 3 frames (pages)", "one frame per image file")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--adc-threshold", "nan"], "--adc-threshold nan: give a finite number"),
        (["--min-res", "50", "--max-res", "10"], "--min-res 50.0 and --max-res 10.0: the range is empty"),
        (["--min-pixel-count", "0"], "--min-pixel-count 0: give 1 or more"),
    ],
)
def test_label_options_that_make_every_frame_a_miss_refused(
    runs: Path, tmp_path: Path, options: list[str], fragment: str
) -> None:
    run = tmp_path / "run.cxi"
    run.write_bytes((runs / "run_0001.cxi").read_bytes())
    before = run.read_bytes()
    assert_one_line_error(_run("label", run, *options), fragment)
    assert run.read_bytes() == before


def test_peak_window_without_a_count_refused(runs: Path, tmp_path: Path) -> None:
    result = _compare(
        runs,
        tmp_path,
        "--methods",
        "peaks",
        "--param",
        "peaks.min_num_peaks_for_hit=20",
        "--param",
        "peaks.max_num_peaks_for_hit=5",
    )
    assert_one_line_error(result, "min_num_peaks_for_hit=20 and max_num_peaks_for_hit=5", "every frame would be a miss")


def test_boolean_frames_and_all_bad_mask_refused(tmp_path: Path) -> None:
    write_cxi(tmp_path / "bool.cxi", np.ones((2, 8, 8), bool))
    assert_one_line_error(_run("info", tmp_path / "bool.cxi"), "bool.cxi", "has dtype bool", "integer or float")
    write_cxi(tmp_path / "masked.cxi", np.ones((2, 8, 8), np.float32), mask=np.zeros((8, 8), bool))
    assert_one_line_error(_run("info", tmp_path / "masked.cxi"), "masked.cxi", "marks every pixel bad")
    _cbf(tmp_path / "dark.cbf", data=np.full((64, 64), -1, np.int32))
    assert_one_line_error(_run("info", tmp_path / "dark.cbf"), "dark.cbf: no good pixel")
    with pytest.raises(HitbenchError, match="X: frames are booleans"):
        registry.get("intensity").fit(np.ones((4, 8, 8), bool), np.array([0, 1, 0, 1]))


# -- 5: one line instead of a traceback ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--n-jobs", "0"], ["--n-jobs 0: give 1 to", "-1 for all of them"]),
        (["--n-jobs", "-2"], ["--n-jobs -2: give 1 to"]),
        (["--seed", "-1"], ["--seed -1: give a seed from 0 to 4294967295"]),
        (["--seed", "0,4294967296"], ["--seed 4294967296: give a seed from 0 to 4294967295"]),
        (["--holdout", "0.001"], ["--holdout 0.001: holds out 1 of run 1's 120", "give --holdout 0.017 or more"]),
        (["--holdout", "0.999"], ["--holdout 0.999: leaves 0 of run 1's 120", "give --holdout 0.983 or less"]),
        (["--methods", "cnn", "--param", "cnn.epochs=0"], ["cnn: epochs=0; give a whole number, 1 or more"]),
        (["--methods", "svm", "--param", "svm.block_size=100000"], ["svm: block_size=100000", "1 to 96"]),
        (
            [
                "--methods",
                "peaks",
                "--param",
                "peaks.min_num_peaks_for_hit=10",
                "--param",
                "peaks.max_num_peaks_for_hit=11",
            ],
            ["min_num_peaks_for_hit=10 and max_num_peaks_for_hit=11", "give max at least min + 2"],
        ),
        (["--methods", "svm", "--param", "svm.block_size='big'"], ["svm: parameters", "of the wrong kind", "--param"]),
        (["--methods", "cnn-robust", "--param", "cnn-robust.method__epochs=0"], ["cnn: epochs=0"]),
    ],
)
def test_compare_options_refused_with_one_line(
    runs: Path, tmp_path: Path, options: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(_compare(runs, tmp_path, *options), *fragments)


def test_scale_refused_with_one_line(tmp_path: Path) -> None:
    assert_one_line_error(_run("simulate", "--preset", "tiny", "--scale", "inf", "--out", tmp_path), "--scale inf")
    assert_one_line_error(_run("simulate", "--preset", "tiny", "--scale", "0", "--out", tmp_path), "--scale 0.0")
    result = _run(
        "compare",
        "--preset",
        "tiny",
        "--scale",
        "1e-9",
        "--methods",
        "intensity",
        "--out",
        tmp_path / "out",
        "--cache-dir",
        tmp_path / "cache",
    )
    assert_one_line_error(result, "run 1: 1 labelled frame(s), too few", "a larger --scale")


@pytest.mark.parametrize(
    ("name", "params", "words"),
    [
        ("cnn", {"epochs": 0}, "cnn: epochs=0; give a whole number, 1 or more"),
        ("cnn", {"batch_size": 2.5}, "cnn: batch_size=2.5"),
        ("svm", {"block_size": 100000}, "svm: block_size=100000"),
    ],
)
def test_method_parameters_checked_in_fit_too(name: str, params: dict, words: str) -> None:
    """Out of the harness, fit refuses the same values with one line (its own check_params, as the harness calls)."""
    frames = np.random.default_rng(0).random((10, 48, 48)).astype(np.float32)
    with pytest.raises(HitbenchError, match=words.replace(".", r"\.")) as caught:
        registry.get(name, **params).fit(frames, np.arange(10) % 2)
    assert "\n" not in str(caught.value)


def test_n_jobs_bounded_by_the_cores(capsys: pytest.CaptureFixture) -> None:
    cores = available_cores()
    assert check_n_jobs(-1) == cores and check_n_jobs(1) == 1
    assert check_n_jobs(1000) == cores
    warning = f"hitbench: warning: --n-jobs 1000: only {cores} cores here; using {cores} workers\n"
    assert capsys.readouterr().err == warning


def test_cpu_info_without_proc_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable /proc/cpuinfo (not Linux) gives an unknown model and no flags (column_block: blocks of 2)."""

    def unreadable(*args, **kwargs):
        raise FileNotFoundError("/proc/cpuinfo")

    monkeypatch.setattr("builtins.open", unreadable)
    assert cpu_info.__wrapped__() == ("unknown", frozenset())


def test_labels_csv_row_without_a_label(tmp_path: Path) -> None:
    _cbf(tmp_path / "f0.cbf")
    (tmp_path / "labels.csv").write_text("file,label\nf0.cbf,hit\nf0.cbf\n")
    with pytest.raises(HitbenchError, match=r"labels.csv:3: row without a file or a label"):
        open_experiment(tmp_path)


def test_cbf_header_beam_centre_beyond_float(tmp_path: Path) -> None:
    path = _cbf(tmp_path / "beam.cbf", "# Pixel_size 172e-6 m x 172e-6 m\n# Beam_xy (1e400, 30.0) pixels\n")
    assert_one_line_error(_run("info", path), "beam.cbf: header Beam_xy '1e400' is not a finite number")


def test_bad_model_files_refused(runs: Path, tmp_path: Path) -> None:
    import zipfile

    (tmp_path / "garbage.keras").write_bytes(b"garbage")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    joblib.dump(types.SimpleNamespace(threshold_=0.5), tmp_path / "other.joblib")
    expected = {
        "garbage.keras": "",
        "empty.keras": "",
        "loop1": "Too many levels of symbolic links",
        "other.joblib": "holds a SimpleNamespace, not a fitted hitbench method",
    }
    for model, fragment in expected.items():
        result = _run(
            "predict", runs / "run_0001.cxi", "--model", tmp_path / model, "--out", tmp_path / "out", "--trust-pickle"
        )
        assert_one_line_error(result, f"--model {tmp_path / model}", fragment)


def test_cache_folder_that_cannot_be_written(runs: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    if subprocess.run(["chattr", "+i", str(cache)], capture_output=True).returncode != 0:
        cache.chmod(0o555)
    try:
        try:
            (cache / "probe").touch()
        except OSError:
            pass
        else:
            pytest.skip("cannot make a folder unwritable here (chattr +i refused and running as root)")
        result = _compare(runs, tmp_path)  # its --cache-dir is this folder
        assert_one_line_error(result, str(cache), "cannot write there")
    finally:
        subprocess.run(["chattr", "-i", str(cache)], capture_output=True)
        cache.chmod(0o755)


# -- 6: workers end with the command ------------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    """Live (not zombie) processes below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if entry.name.isdigit() and fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {child for child, of in parents.items() if of == parent}
        todo += children - found
        found |= children
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
        except OSError:
            pass
    return alive


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workers_outlive_sigkill(command: list[str], cwd: Path) -> set[int]:
    """Start ``command``, wait until two busy loky workers run below it, SIGKILL it; the workers alive 5 s later."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < end, "no two busy workers within 240 s"
            workers = {
                pid
                for pid in _descendants(proc.pid)
                if b"loky" in Path(f"/proc/{pid}/cmdline").read_bytes() and _cpu_seconds(pid) > 1.0
            }
            workers -= {pid for pid in workers if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()}
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        end = time.monotonic() + 5
        while _alive(workers) and time.monotonic() < end:
            time.sleep(0.1)
        return _alive(workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


WORKERS_SCRIPT = """
import time, joblib
from hitbench.parallel import parallel_backend
def busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # holds the GIL: the watch must still get its turn
        pass
with parallel_backend():
    joblib.Parallel(n_jobs=2)(joblib.delayed(busy)(120) for _ in range(2))
"""


@pytest.mark.slow
def test_busy_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    left = _workers_outlive_sigkill([sys.executable, "-c", WORKERS_SCRIPT], tmp_path)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers kept running after their parent's SIGKILL"


REPLACED_WORKER_SCRIPT = """
import sys, time, joblib, numpy as np
from hitbench.parallel import parallel_backend
def grow():
    # 400 MB more kept by the worker process after each task, as TensorFlow in a worker that trained the cnn (on a
    # module: the task's own globals are a copy sent with each task)
    vars(sys).setdefault("kept", []).append(np.ones(50_000_000))
    time.sleep(1.2)  # loky looks at a worker's memory at most once a second
def run():
    joblib.Parallel(n_jobs=2)(joblib.delayed(grow)() for _ in range(6))
if sys.argv[1] == "hitbench":
    with parallel_backend():
        run()
else:
    with joblib.parallel_config(backend="loky"):
        run()
"""


@pytest.mark.slow
def test_replaced_worker_is_not_reported_as_a_problem() -> None:
    """loky replaces a worker whose memory grew and warns; the work goes on, and hitbench's users are not told."""
    pytest.importorskip("psutil")  # loky watches its workers' memory only with psutil

    def stderr(backend: str) -> str:
        command = [sys.executable, "-c", REPLACED_WORKER_SCRIPT, backend]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stderr

    assert WORKER_REPLACED in stderr("loky")  # the script does make loky replace a worker
    assert WORKER_REPLACED not in stderr("hitbench")


@pytest.mark.slow
def test_compare_workers_exit_when_compare_is_killed(runs: Path, tmp_path: Path) -> None:
    command = [
        HITBENCH,
        "compare",
        "--data",
        str(runs),
        "--labels",
        "truth",
        "--methods",
        "cnn",
        "--seed",
        "0,1",
        "--param",
        "cnn.epochs=100000",
        "--n-jobs",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    if available_cores() < 2:
        pytest.skip("one core: --n-jobs 2 is lowered to 1 worker")
    left = _workers_outlive_sigkill(command, tmp_path)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "compare's workers kept running after its SIGKILL"


# -- 7: messages that say what is wrong ------------------------------------------------------------------------


def test_unreadable_locked_and_broken_link_files_told_apart(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "TRUE")
    run = tmp_path / "run.cxi"
    run.write_bytes((runs / "run_0001.cxi").read_bytes())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import h5py, sys, time; f = h5py.File({str(run)!r}, 'r+'); print(flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdout.readline()
        assert_one_line_error(_run("info", run), f"{run}: locked by another process", "HDF5_USE_FILE_LOCKING=FALSE")
    finally:
        holder.kill()
        holder.wait()
    with h5py.File(tmp_path / "linked.cxi", "w") as h5:
        h5["/entry_1/data_1/data"] = h5py.ExternalLink("frames.h5", "/data")
    assert_one_line_error(
        _run("info", tmp_path / "linked.cxi"), "external link to frames.h5:/data", f"missing: {tmp_path / 'frames.h5'}"
    )
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if Path(str(file)) == run:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    assert_one_line_error(_run("info", run), f"{run}: cannot read: permission denied")


def test_info_on_a_folder(runs: Path) -> None:
    assert_one_line_error(_run("info", runs), f"{runs}: is a folder", "compare --data")


def test_labels_csv_with_byte_order_mark(tmp_path: Path) -> None:
    _cbf(tmp_path / "f0.cbf")
    (tmp_path / "labels.csv").write_text("file,label\nf0.cbf,hit\n", encoding="utf-8-sig")
    assert read_labels_csv(tmp_path / "labels.csv").labels.tolist() == [1]


def test_frames_stored_many_to_a_chunk_are_decompressed_once_per_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = np.random.default_rng(0).integers(0, 1000, (2500, 32, 32), dtype=np.uint16)
    with h5py.File(tmp_path / "chunked.cxi", "w") as h5:
        h5.create_dataset("/entry_1/data_1/data", data=frames, chunks=(1000, 32, 32), compression="gzip")
    run = CXIRun(tmp_path / "chunked.cxi")
    reads = []
    real_getitem = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda self, key: reads.append(key) or real_getitem(self, key))
    monkeypatch.setattr(h5py.Dataset, "read_direct", lambda *args, **kwargs: reads.append("direct"))
    one_by_one = np.concatenate([run.read(i, i + 1) for i in range(len(run))])
    assert len(reads) == 3  # one read (one decompression) per chunk of 1000 frames
    np.testing.assert_array_equal(one_by_one, frames.astype(np.float32))
    np.testing.assert_array_equal(run.read_at(np.array([5, 6, 1500, 2499])), frames[[5, 6, 1500, 2499]])


def test_frames_many_to_a_chunk_read_right_from_several_threads(tmp_path: Path) -> None:
    """The cnn's batch prefetch reads one run from two threads: each gets its own frames, whichever block is kept."""
    from concurrent.futures import ThreadPoolExecutor

    frames = np.random.default_rng(1).integers(0, 1000, (600, 16, 16), dtype=np.uint16)
    with h5py.File(tmp_path / "chunked.cxi", "w") as h5:
        h5.create_dataset("/entry_1/data_1/data", data=frames, chunks=(50, 16, 16))
    run = CXIRun(tmp_path / "chunked.cxi")
    picks = [np.sort(np.random.default_rng(seed).choice(600, 20, replace=False)) for seed in range(64)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run.read_at, picks))
    for indices, read in zip(picks, got, strict=True):
        np.testing.assert_array_equal(read, frames[indices].astype(np.float32))
