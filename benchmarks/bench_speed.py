"""Inference speed side by side: fast methods from memory, the peak finder, end-to-end `hitbench predict`.

Measured in one run on simulated 350x350 frames of the default preset (cxi-streptavidin):

- ``intensity`` and ``litpix`` from memory: frames/s of ``decision_function`` (input validation
  included), of the scoring kernel alone (``_score``), and of the input check alone
  (``check_frames``), best of ``--repeats``;
- the peak finder (``PeakFinder8.count``): ms per frame;
- ``cnn`` Keras vs ONNX Runtime: with ``--cnn``, through the cnn benchmark's own ``bench_method``
  (benchmarks/bench_methods.py), trained for ``--cnn-epochs`` epochs;
- end to end: ``hitbench predict --hits-cxi`` with a litpix model on a ``--frames``-frame CXI run
  (and on a run a tenth as long, to show that memory does not grow with the run), in a subprocess:
  frames/s and peak resident memory (the subprocess's VmHWM from /proc/self/status).
  The run is written to ``--workdir`` (default /tmp) from simulated frames repeated chunk by chunk.

The JSON records the CPU count and load average: other processes share the 2 CPUs of the
development machine, so timings are noisy. docs/speed.md is regenerated from this JSON and the cnn
benchmark's (benchmarks/results/methods.json), never edited by hand.

Usage: python benchmarks/bench_speed.py [--frames 20000] [--cnn] [--out benchmarks/results/speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_methods  # noqa: E402  (the cnn helper's benchmark: its markdown and cnn measurement)

from hitbench.data.cxi_write import CXIWriter  # noqa: E402
from hitbench.methods import registry  # noqa: E402
from hitbench.methods.base import check_frames  # noqa: E402
from hitbench.modelfile import save_model  # noqa: E402
from hitbench.peaks import PeakFinder8  # noqa: E402
from hitbench.simulate import load_experiment, simulate_run  # noqa: E402

PRESET = "cxi-streptavidin"
SHAPE = (350, 350)


def best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fast_methods(train: tuple, frames: np.ndarray, repeats: int) -> list[dict]:
    rows = []
    check_s = best(lambda: check_frames(frames), repeats)
    for name in ("intensity", "litpix"):
        method = registry.get(name).fit(*train)
        total = best(lambda m=method: m.decision_function(frames), repeats)
        kernel = best(lambda m=method: m._score(frames), repeats)
        rows.append(
            {
                "method": name,
                "frames_per_s": round(len(frames) / total, 1),
                "kernel_frames_per_s": round(len(frames) / kernel, 1),
                "check_frames_per_s": round(len(frames) / check_s, 1),
            }
        )
    return rows


def peak_finder(frames: np.ndarray, mask: np.ndarray) -> dict:
    finder = PeakFinder8()
    seconds = best(lambda: finder.count(frames, mask), 1)
    return {"frames": len(frames), "ms_per_frame": round(1e3 * seconds / len(frames), 2)}


def write_run(path: Path, sim, n_frames: int) -> None:
    """A long run from the simulated frames repeated chunk by chunk (written once, kept in the workdir)."""
    if path.exists():
        return
    hit = np.asarray(sim.truth["hit"]).astype(np.int8)
    with CXIWriter(path, SHAPE, mask=sim.mask, attrs={"run": 1, "repeated_from_frames": len(sim.frames)}) as writer:
        for start in range(0, n_frames, len(sim.frames)):
            n = min(len(sim.frames), n_frames - start)
            writer.append(sim.frames[:n], fields={"hit": hit[:n]})


def end_to_end(model: Path, run: Path, out: Path, chunk_size: int) -> dict:
    """`hitbench predict` in a fresh subprocess: wall time and that subprocess's peak RSS."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so it would include this (large) process
    command = [
        sys.executable,
        "-c",
        "import sys; from hitbench.cli import main; sys.argv[0] = 'hitbench';"
        "\ntry:\n main()\nfinally:\n print('MAXRSS', [l.split()[1] for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')][0])",
        "predict",
        "--model",
        str(model),
        "--out",
        str(out),
        "--chunk-size",
        str(chunk_size),
        "--hits-cxi",
        str(run),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr)
    n_frames = int(done.stdout.split(": ", 1)[1].split(" frames", 1)[0])
    rss_kib = int(done.stdout.rsplit("MAXRSS", 1)[1])
    return {
        "frames": n_frames,
        "chunk_size": chunk_size,
        "seconds": round(seconds, 1),
        "frames_per_s": round(n_frames / seconds, 1),
        "frames_per_s_after_start": float(done.stdout.split(" frames/s", 1)[0].rsplit(" ", 1)[1]),
        "peak_rss_mib": round(rss_kib / 1024, 1),
        "run_file_gib": round(run.stat().st_size / 2**30, 2),
        "output": done.stdout.splitlines()[0],
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "## Inference speed and streaming prediction",
        "",
        f"Generated by `python benchmarks/bench_speed.py` on {m['cpus']} CPU(s), load average {m['load_before']} "
        f"before and {m['load_after']} after ({m['note']}). Frames: 350x350, `{PRESET}` preset.",
        "",
        "| method (from memory) | frames/s | scoring kernel alone (frames/s) | input check alone (frames/s) |",
        "|---|---:|---:|---:|",
    ]
    for row in result["fast_methods"]:
        lines.append(
            f"| {row['method']} | {row['frames_per_s']} | {row['kernel_frames_per_s']} | {row['check_frames_per_s']} |"
        )
    pf = result["peak_finder"]
    lines += ["", f"Peak finder (`PeakFinder8.count`): **{pf['ms_per_frame']} ms/frame** ({pf['frames']} frames)."]
    cnn = result.get("cnn")
    if cnn and "keras" in cnn:
        lines += [
            "",
            f"cnn, same run: Keras {cnn['keras']['ms_per_frame']} ms/frame, ONNX Runtime "
            f"{cnn['onnx']['ms_per_frame']} ms/frame (ratio {cnn['onnx_speedup']}x).",
        ]
    lines += [
        "",
        "End to end, `hitbench predict --hits-cxi` with a litpix model (fresh process, peak RSS of that process):",
        "",
        "| frames | run file (GiB) | chunk | seconds | frames/s | frames/s after start-up | peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["end_to_end"]:
        lines.append(
            f"| {row['frames']} | {row['run_file_gib']} | {row['chunk_size']} | {row['seconds']} | "
            f"{row['frames_per_s']} | {row['frames_per_s_after_start']} | {row['peak_rss_mib']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000, help="frames of the end-to-end run")
    parser.add_argument("--memory-frames", type=int, default=512, help="frames held in memory for the fast methods")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--cnn", action="store_true", help="also train and time the cnn (Keras vs ONNX Runtime)")
    parser.add_argument("--cnn-epochs", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hitbench-bench-speed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"))
    parser.add_argument("--methods-json", type=Path, default=Path("benchmarks/results/methods.json"))
    parser.add_argument("--markdown", type=Path, default=Path("docs/speed.md"))
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    experiment = load_experiment(PRESET)
    sim = simulate_run(experiment, experiment.runs[0], n_frames=256, seed=0, frame_shape=SHAPE)
    hit = np.asarray(sim.truth["hit"]).astype(np.int64)
    train = (sim.frames[:128], hit[:128])
    frames = np.ascontiguousarray(np.resize(sim.frames, (args.memory_frames, *SHAPE)))
    result = {
        "benchmark": "speed",
        "preset": PRESET,
        "frame_shape": list(SHAPE),
        "fast_methods": fast_methods(train, frames, args.repeats),
        "peak_finder": peak_finder(sim.frames[:32], sim.mask),
    }
    del frames
    if args.cnn:
        cnn_args = argparse.Namespace(cnn_epochs=args.cnn_epochs, repeats=args.repeats)
        result["cnn"] = bench_methods.bench_method("cnn", train, np.ascontiguousarray(sim.frames[128:]), cnn_args)

    args.workdir.mkdir(parents=True, exist_ok=True)
    model = save_model(registry.get("litpix").fit(*train), args.workdir / "litpix.hbm")
    rows = []
    for n in (args.frames // 10, args.frames):
        run = args.workdir / f"run_{n}.cxi"
        write_run(run, sim, n)
        with tempfile.TemporaryDirectory(dir=args.workdir) as out:
            rows.append(end_to_end(model, run, Path(out), args.chunk_size))
    result["end_to_end"] = rows
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "note": "other helpers' tests and benchmarks shared the 2 CPUs; timings are noisy",
    }
    bench_methods.write_atomic(args.out, json.dumps(result, indent=2) + "\n")
    page = markdown(result)
    if args.methods_json.is_file():
        page = bench_methods.markdown(json.loads(args.methods_json.read_text())) + "\n" + page
    bench_methods.write_atomic(args.markdown, page)
    print(page)


if __name__ == "__main__":
    main()
