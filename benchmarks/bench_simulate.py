"""Simulator speed (writes JSON): frames/s for 350x350 frames with 1 and 2 joblib workers, and the wall
time to write the whole default dataset (cxi-streptavidin at its default scale) as CXI files.

Timings share the machine's cores with whatever else runs; report the load with the numbers.

Usage: python benchmarks/bench_simulate.py [--frames 640] [--out benchmarks/results/simulate.json]
"""

from __future__ import annotations

import tempfile
import time

from _common import arguments, load_average, machine, write_result

from hitbench.simulate import load_experiment, simulate_run, write_experiment


def main() -> None:
    parser = arguments(__doc__, "simulate.json")
    parser.add_argument("--frames", type=int, default=640)
    args = parser.parse_args()
    exp = load_experiment("cxi-streptavidin")
    simulate_run(exp, run=90, n_frames=64, seed=0, n_jobs=2)  # warm up the worker pool
    load_before = load_average()
    result = {
        "frame_shape": list(exp.frame_shape),
        "frames_per_s": {},
    }
    for n_jobs in (1, 2):
        start = time.perf_counter()
        simulate_run(exp, run=90, n_frames=args.frames, seed=0, n_jobs=n_jobs)
        result["frames_per_s"][f"n_jobs={n_jobs}"] = round(args.frames / (time.perf_counter() - start), 1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        paths = write_experiment(exp, tmp, seed=0, n_jobs=2)
        result["default_dataset"] = {
            "preset": exp.name,
            "scale": exp.scale,
            "runs": len(paths),
            "frames": sum(exp.n_frames(run) for run in exp.runs),
            "wall_s_n_jobs_2": round(time.perf_counter() - start, 2),
            "bytes": sum(p.stat().st_size for p in paths),
        }
    result["machine"] = machine(load_before)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
