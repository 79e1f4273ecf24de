"""cnn-robust's scoring cost per 350x350 frame: its preprocessing as numpy steps and fused, and with the network.

On the same simulated frames of the default preset (cxi-streptavidin, 350x350), in one run:

- baseline: cnn-robust's preprocessing as its scikit-learn Pipeline of numpy steps
  (``RobustPreprocessing(...).pipeline()``: PhotonConversion, PoissonSignificance, HotPixelMask,
  SpotPixels), batch by batch as the composition applies it, and each step's share;
- fused: ``RobustPreprocessing.transform``, the same steps fused in compiled kernels
  (hitbench/preprocess/_kernels.py), the frames of a batch split over the cores this process may use;
- cnn-robust's ``decision_function`` (preprocessing and network) with each, on one fitted model (the
  network is trained for one epoch only: its cost does not depend on its weights), and the network alone;
  the fused one also with the process limited to one core (its affinity), as a worker with one core sees it.

Spot maps and scores of the two paths are checked equal. Both paths share PhotonConversion's gain
estimate, compiled since the fused path was written (the pipeline's numpy estimate cost 0.69 ms per
frame before, measured at commit d614c6f under load). Each figure is the fastest of ``--repeats``
interleaved repetitions. The machine may be shared: the JSON records the CPU count and the load average
before and after.

Usage: python benchmarks/bench_robust_inference.py [--frames 256] [--repeats 5] [--quick]
    [--out benchmarks/results/robust_inference.json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import arguments, load_average, machine, write_result  # noqa: E402
from bench_cnn_inference import on_one_core  # noqa: E402  (the same one-core measurement as the cnn's)
from bench_methods import FRAME_SHAPE, PRESET, split_frames  # noqa: E402  (the benchmarks' frames)

from hitbench.methods import registry  # noqa: E402
from hitbench.preprocess import transform_in_batches  # noqa: E402

GOALS_MS = {"preprocessing": 1.2, "cnn_robust": 2.0}


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_seconds(pipeline, frames: np.ndarray, batch_frames: int) -> dict[str, float]:
    """Seconds spent in each step of a (stateless) pipeline, batch by batch."""
    spent = dict.fromkeys(pipeline.named_steps, 0.0)
    for start in range(0, len(frames), batch_frames):
        x = frames[start : start + batch_frames]
        for name, step in pipeline.steps:
            begin = time.perf_counter()
            x = step.fit_transform(x)
            spent[name] += time.perf_counter() - begin
    return spent


def main() -> None:
    parser = arguments(__doc__, "robust_inference.json")
    parser.add_argument("--frames", type=int, default=256, help="frames scored (batches of the composition's size)")
    parser.add_argument("--train", type=int, default=64, help="frames the one-epoch network is fitted on")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="128 frames, 2 repeats: a smoke run under a minute")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.train, args.repeats = 128, 32, 2

    train_frames, train_labels, frames = split_frames(args.train, args.frames, args.seed)
    params = {"method__epochs": 1, "method__validation_split": 0.0, "method__decision_threshold": 0.5}
    model = registry.get("cnn-robust", **params).fit(train_frames, train_labels)
    fused, batch = model.preprocess, int(model.batch_frames)
    pipeline = fused.pipeline()

    # first calls compile (numba) and load; then equal outputs
    spots_fused = transform_in_batches(fused, frames, batch)
    spots_numpy = transform_in_batches(pipeline, frames, batch)
    assert np.array_equal(spots_fused, spots_numpy), "fused spot map differs from the numpy steps'"
    network = model.method_
    scores_fused = model.decision_function(frames)
    model.preprocess = pipeline
    scores_numpy = model.decision_function(frames)
    model.preprocess = fused
    assert np.array_equal(scores_fused, scores_numpy), "cnn-robust scores differ between the two paths"

    load_before = load_average()
    best = {}
    steps_best: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved: each repetition times every path once
        timings = {
            "preprocessing_numpy": seconds(lambda: transform_in_batches(pipeline, frames, batch)),
            "preprocessing_fused": seconds(lambda: transform_in_batches(fused, frames, batch)),
            "network": seconds(lambda: network.decision_function(spots_fused)),
            "cnn_robust_fused": seconds(lambda: model.decision_function(frames)),
            "cnn_robust_fused_one_core": seconds(lambda: on_one_core(model.decision_function)(frames)),
        }
        model.preprocess = pipeline
        timings["cnn_robust_numpy"] = seconds(lambda: model.decision_function(frames))
        model.preprocess = fused
        for name, spent in step_seconds(pipeline, frames, batch).items():
            steps_best[name] = min(steps_best.get(name, np.inf), spent)
        for name, spent in timings.items():
            best[name] = min(best.get(name, np.inf), spent)
    load_after = load_average()

    def ms(spent: float) -> float:
        return round(1e3 * spent / len(frames), 4)

    figures = {name: {"ms_per_frame": ms(spent)} for name, spent in best.items()}
    result = {
        "benchmark": "robust_inference",
        "preset": PRESET,
        "frame_shape": list(FRAME_SHAPE),
        "n_frames": len(frames),
        "batch_frames": batch,
        "repeats": args.repeats,
        "seed": args.seed,
        "preprocess": {k: v for k, v in fused.get_params().items()},
        "network_backend": getattr(network, "backend", None),
        "machine": machine(load_before, load_after),
        "goal_ms_per_frame": GOALS_MS,
        "unit": "ms per frame, fastest of the repetitions (wall clock)",
        "figures": figures,
        "numpy_steps_ms_per_frame": {name: ms(spent) for name, spent in steps_best.items()},
        "preprocessing_speedup": round(best["preprocessing_numpy"] / best["preprocessing_fused"], 2),
        "cnn_robust_speedup": round(best["cnn_robust_numpy"] / best["cnn_robust_fused"], 2),
        "spot_maps_equal": True,
        "scores_equal": True,
        "baseline_note": (
            "preprocessing_numpy is RobustPreprocessing.pipeline(), the numpy steps; its gain estimate is compiled "
            "since this benchmark was written (0.69 ms/frame in numpy at commit d614c6f)"
        ),
    }
    write_result(args.out, result, show=False)
    print(json.dumps({k: result[k] for k in ("figures", "numpy_steps_ms_per_frame", "machine")}, indent=2))


if __name__ == "__main__":
    main()
