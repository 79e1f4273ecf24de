"""Fit time and prediction speed of every registered method on 350x350 frames (writes JSON).

For each method in the ``hitbench.methods`` registry: seconds to fit on ``--train`` simulated
frames of the default preset (cxi-streptavidin, 350x350) and prediction speed (frames/s and
ms/frame of ``decision_function``, best of ``--repeats``) on ``--predict`` frames held in memory; the cnn
is trained for ``--cnn-epochs`` epochs only (prediction speed does not depend on the weights). The cnn's
inference engines side by side are benchmarks/bench_cnn_inference.py's. docs/speed.md shows the table
(benchmarks/speed_page.py).

Timings are wall clock on whatever machine runs this; other processes sharing the CPU slow
them down, so the JSON records the CPU count and the load average before and after.

Usage: python benchmarks/bench_methods.py [--out benchmarks/results/methods.json]
"""

from __future__ import annotations

import time

import numpy as np
from _common import arguments, load_average, machine, write_result

from hitbench.errors import HitbenchError
from hitbench.methods import registry
from hitbench.simulate import load_experiment, simulate_run

PRESET = "cxi-streptavidin"
FRAME_SHAPE = (350, 350)


def split_frames(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames of the default preset's first run: ``n_train`` with their truth labels to fit on, then ``n_test``.

    The test frames are float32 and C-ordered, as ``check_frames`` hands them to the scoring engines.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Training frames, their labels (int64), test frames.
    """
    experiment = load_experiment(PRESET)
    sim = simulate_run(experiment, experiment.runs[0], n_frames=n_train + n_test, seed=seed, frame_shape=FRAME_SHAPE)
    labels = np.asarray(sim.truth["hit"]).astype(np.int64)
    return sim.frames[:n_train], labels[:n_train], np.ascontiguousarray(sim.frames[n_train:], dtype=np.float32)


def best_seconds(fn, frames: np.ndarray, repeats: int) -> float:
    """Best wall time of ``fn(frames)`` over ``repeats`` runs, after one warm-up call on a few frames."""
    fn(frames[:8])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(frames)
        times.append(time.perf_counter() - start)
    return min(times)


def speed(seconds: float, n: int) -> dict:
    return {"frames_per_s": round(n / seconds, 1), "ms_per_frame": round(1e3 * seconds / n, 3)}


def bench_method(name: str, train: tuple, test: np.ndarray, args) -> dict:
    params = {"epochs": args.cnn_epochs, "validation_split": 0.0} if name == "cnn" else {}
    method = registry.get(name, **params)
    start = time.perf_counter()
    try:
        method.fit(*train)
    except HitbenchError as exc:
        return {"method": name, "error": str(exc)}
    row = {"method": name, "params": params, "fit_s": round(time.perf_counter() - start, 3)}
    row.update(speed(best_seconds(method.decision_function, test, args.repeats), len(test)))
    return row


def main() -> None:
    parser = arguments(__doc__, "methods.json")
    parser.add_argument("--train", type=int, default=200, help="frames to fit on")
    parser.add_argument("--predict", type=int, default=256, help="frames to predict")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cnn-epochs", type=int, default=2)
    parser.add_argument("--methods", nargs="*", default=None, help="registry names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    *train, test = split_frames(args.train, args.predict, args.seed)
    load_before = load_average()
    rows = [bench_method(name, train, test, args) for name in (args.methods or registry.names())]
    result = {
        "benchmark": "methods",
        "preset": PRESET,
        "frame_shape": list(FRAME_SHAPE),
        "n_train": args.train,
        "n_predict": args.predict,
        "repeats": args.repeats,
        "seed": args.seed,
        "machine": machine(load_before),
        "methods": rows,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
