"""Throughput of issue 19's fast paths, each beside its baseline measured in the same run (writes JSON).

- ``hitbench methods``: wall time of the command in a fresh process, with its kept catalogue (warm) and with
  the catalogue rebuilt (cold, the first run after any change), beside a bare interpreter and
  ``python -c "import click, rich"``; best of ``--repeats``, interleaved.
- ``intensity`` and ``litpix``: frames/s of ``decision_function`` (input check included, as ``bench.runner``
  times it in ``compare``) on blocks of ``CHUNK_FRAMES`` float32 350x350 frames, beside a bare numpy float32 sum
  over the same frames (one pass: the memory-bandwidth floor); best of ``--repeats``, interleaved.
- ``hitbench predict``: frames/s and peak resident memory (VmHWM) of a fresh process for ``litpix``, ``peaks``
  and ``cnn`` on a deflate + shuffle CXI run (the run ``hitbench simulate`` writes, its stored chunks repeated
  to ``--frames``), and ``litpix`` on a run ten times longer (memory must not grow with the run) and with
  ``--hits-cxi`` (the hit frames written too); beside reading the
  same file with h5py (one thread, frames as stored, the way every reader went before) and with hitbench's reader
  (frames inflated on threads, float32). Each method's ``decision_function`` rate on the same frames in memory is
  measured too: the pipeline's overhead per frame is predict's time per frame less the method's. So is the CPU
  time (every thread of the process) per frame of the method and of hitbench's reader: their sum over the CPUs
  is the least time a frame can take in predict, reading and scoring it keeping every core busy.

The JSON records the CPU count, the platform and the load average before and after: on a shared machine the
figures are noisy, the ratios less so. Run it again on an idle machine for the final figures.

Usage: python benchmarks/bench_throughput.py [--quick] [--frames 3000] [--out benchmarks/results/throughput.json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from _common import arguments, load_average, machine, write_result

from hitbench.data.cxi import DATA, CXIRun
from hitbench.data.cxi_write import CXIWriter
from hitbench.frames import CHUNK_FRAMES, TASK_FRAMES
from hitbench.methods import registry
from hitbench.modelfile import save_model

PRESET = "cxi-streptavidin"
GOALS = {
    "methods_s": 0.5,
    "intensity_frames_per_s": 15000,
    "litpix_frames_per_s": 12000,
    "predict_frames_per_s": {"litpix": 2000, "peaks": 500, "cnn": 500},
}
#: Parameters of the methods trained for predict (the cnn's inference does not depend on how long it trained).
TRAIN_PARAMS = {"litpix": {}, "peaks": {}, "cnn": {"epochs": 1, "validation_split": 0.0}}
HITBENCH = str(Path(sys.executable).parent / "hitbench")


def best_of(
    functions: dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Least time by ``clock`` (wall by default; ``time.process_time``: CPU of every thread of this process) of
    ``repeats`` calls of each function (seconds), the functions taking turns."""
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = clock()
            function()
            times[name].append(clock() - start)
    return {name: min(values) for name, values in times.items()}


def methods_command(repeats: int) -> dict:
    """Wall seconds of ``hitbench methods`` (warm and cold) beside a bare interpreter and click + rich."""
    kept = registry._catalogue_path()

    def run(command: list[str], cold: bool = False) -> None:
        if cold:
            kept.unlink(missing_ok=True)
        subprocess.run(command, check=True, capture_output=True)

    run([HITBENCH, "methods"])  # the kept catalogue, built once
    seconds = best_of(
        {
            "bare_interpreter": lambda: run([sys.executable, "-c", "pass"]),
            "import_click_rich": lambda: run([sys.executable, "-c", "import click, rich"]),
            "hitbench_methods": lambda: run([HITBENCH, "methods"]),
            "hitbench_methods_cold": lambda: run([HITBENCH, "methods"], cold=True),
        },
        repeats,
    )
    run([HITBENCH, "methods"])  # leave a kept catalogue behind
    return {f"{name}_s": round(value, 3) for name, value in seconds.items()}


def fast_methods(frames: np.ndarray, labels: np.ndarray, repeats: int) -> dict:
    """decision_function frames/s of intensity and litpix on blocks of CHUNK_FRAMES frames, beside a bare sum."""
    block = np.ascontiguousarray(frames[:CHUNK_FRAMES])
    fitted = {name: registry.get(name).fit(frames, labels) for name in ("intensity", "litpix")}
    seconds = best_of(
        {
            "numpy_sum": lambda: block.sum(axis=(1, 2)),
            **{name: (lambda m=model: m.decision_function(block)) for name, model in fitted.items()},
        },
        repeats,
    )
    return {
        "block_frames": len(block),
        **{f"{name}_frames_per_s": round(len(block) / value) for name, value in seconds.items()},
    }


def write_run(path: Path, source: CXIRun, n_frames: int) -> Path:
    """A run of ``n_frames`` frames: the simulated run's stored chunks (as `hitbench simulate` wrote them), repeated."""
    with h5py.File(source.path, "r") as h5:
        dataset = h5[DATA]
        zeros = (0,) * (dataset.ndim - 1)
        stored = [dataset.id.read_direct_chunk((k, *zeros))[1] for k in range(len(dataset))]
    hit = source.field("hit")
    attrs = {**source.attrs, "repeated_from": str(source.path)}
    path.unlink(missing_ok=True)
    with CXIWriter(
        path, source.frame_shape, mask=source.mask, geometry=source.geometry, attrs=attrs, dtype=source.dtype
    ) as writer:
        for start in range(0, n_frames, len(stored)):
            n = min(len(stored), n_frames - start)
            writer.append_encoded(stored[:n], fields={"hit": hit[:n]})
    return path


def reading(path: Path, repeats: int) -> dict:
    """Frames/s reading a run TASK_FRAMES at a time: h5py on one thread (as stored), hitbench's reader (float32)."""
    run = CXIRun(path)

    def h5py_read() -> None:
        with h5py.File(path, "r") as h5:
            dataset = h5[DATA]
            out = np.empty((TASK_FRAMES, *dataset.shape[1:]), dtype=dataset.dtype)
            for start in range(0, len(dataset), TASK_FRAMES):
                n = min(TASK_FRAMES, len(dataset) - start)
                dataset.read_direct(out, np.s_[start : start + n], np.s_[:n])

    def hitbench_read() -> None:
        for start in range(0, run.n_frames, TASK_FRAMES):
            run.read(start, start + TASK_FRAMES)

    seconds = best_of({"h5py_one_thread": h5py_read, "hitbench_reader": hitbench_read}, repeats)
    rates = {f"{name}_frames_per_s": round(run.n_frames / value) for name, value in seconds.items()}
    cpu = best_of({"hitbench_reader": hitbench_read}, repeats, time.process_time)["hitbench_reader"]
    return {**rates, "hitbench_reader_cpu_ms_per_frame": round(1e3 * cpu / run.n_frames, 3)}


def predict(model: Path, run: Path, workdir: Path, *options: str) -> dict:
    """`hitbench predict` in a fresh process: wall time, the rate it reports, and that process's peak RSS."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so it would include this (large) process
    code = (
        "import sys; from hitbench.cli import main; sys.argv[0] = 'hitbench'\n"
        "try:\n main()\nfinally:\n"
        " print('VMHWM', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        command = [sys.executable, "-c", code, "predict", "--model", str(model), "--out", out, *options, str(run)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr)
    n_frames = int(done.stdout.split(": ", 1)[1].split(" frames", 1)[0])
    return {
        "frames": n_frames,
        "wall_s": round(seconds, 2),
        "frames_per_s_wall": round(n_frames / seconds),
        "frames_per_s_after_start": float(done.stdout.split(" frames/s", 1)[0].rsplit(" ", 1)[1]),
        "peak_rss_mib": round(int(done.stdout.rsplit("VMHWM", 1)[1]) / 1024, 1),
    }


def main() -> None:
    parser = arguments(__doc__, "throughput.json")
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s): small runs, litpix only, 1 repeat")
    parser.add_argument("--frames", type=int, default=3000, help="frames of the predict run (the long one: 10x)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default="litpix,peaks,cnn", help="methods timed through hitbench predict")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hitbench-bench-throughput")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.repeats, args.methods = 300, 1, "litpix"
    methods = args.methods.split(",")
    load_before = load_average()
    args.workdir.mkdir(parents=True, exist_ok=True)

    simulated = args.workdir / "simulated" / "run_0090.cxi"
    simulated.unlink(missing_ok=True)  # the run as `hitbench simulate` writes it now (deflate + shuffle, int16)
    command = [HITBENCH, "simulate", "--preset", PRESET, "--runs", "90", "--scale", "0.045"]
    subprocess.run([*command, "--out", str(simulated.parent)], check=True, capture_output=True)
    source = CXIRun(simulated)
    frames = source.read(0, 256)
    labels = source.field("hit")[:256].astype(np.int64)

    result: dict = {"benchmark": "throughput", "preset": PRESET, "frame_shape": list(source.frame_shape)}
    result["goals"] = GOALS
    result["hitbench_methods"] = methods_command(args.repeats)
    result["decision_function"] = fast_methods(frames, labels, args.repeats)

    runs = {n: write_run(args.workdir / f"run_{n}.cxi", source, n) for n in (args.frames, 10 * args.frames)}
    result["predict_run"] = {
        "frames": args.frames,
        "file_mib": round(runs[args.frames].stat().st_size / 2**20, 1),
        "compression": "gzip (shuffle + deflate), one frame per chunk, int16",
        "reading": reading(runs[args.frames], max(1, args.repeats // 2)),
    }
    rows = []
    for name in methods:
        model = registry.get(name, **TRAIN_PARAMS[name]).fit(frames, labels)
        model_path = save_model(model, args.workdir / f"{name}.hbm")
        block = frames[:TASK_FRAMES]
        score = lambda m=model, b=block: m.decision_function(b)  # noqa: E731
        method_s = best_of({name: score}, max(1, args.repeats // 2))[name]
        method_cpu = best_of({name: score}, max(1, args.repeats // 2), time.process_time)[name]
        row = {
            "method": name,
            "method_ms_per_frame": round(1e3 * method_s / len(block), 3),
            "method_cpu_ms_per_frame": round(1e3 * method_cpu / len(block), 3),
        }
        timings = [(f"predict_{args.frames}", args.frames, ())]
        if name == "litpix":  # memory flat over a run ten times longer; the hits-only CXI file written too
            timings += [(f"predict_{10 * args.frames}", 10 * args.frames, ())]
            timings += [(f"predict_{args.frames}_hits_cxi", args.frames, ("--hits-cxi",))]
        for key, n, options in timings:
            timed = predict(model_path, runs[n], args.workdir, *options)
            timed["pipeline_ms_per_frame"] = round(
                1e3 / timed["frames_per_s_after_start"] - row["method_ms_per_frame"], 3
            )
            row[key] = timed
        rows.append(row)
        print(json.dumps(row), flush=True)
    result["predict"] = rows
    result["machine"] = machine(load_before)
    result["units"] = "seconds (_s), frames per second (_frames_per_s), milliseconds per frame, MiB"
    write_result(args.out, result)


if __name__ == "__main__":
    main()
