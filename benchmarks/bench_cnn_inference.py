"""cnn inference speed: the compiled kernel (numba) against ONNX Runtime and Keras, same model, same frames.

One cnn is trained for ``--epochs`` epoch(s) on ``--train`` simulated 350x350 frames of the default
preset (the weights do not change the cost), then ``--predict`` other frames are scored by:

- ``decision_function/all``: the method as the harness calls it (input check included) with its
  default backend ("auto": numba on a CPU) and threads (the cores this process may use), and
  ``decision_function/1`` the same with the process limited to one core (its affinity), as a
  worker with one core sees it;
- ``check_frames``: the input check of the other methods (numba makes it in its own pass);
- ``numba``, ``onnx``: :meth:`ReferenceCNN.score_numba` and an ONNX Runtime session of the same
  graph as :meth:`ReferenceCNN.score_onnx` (batches of ``inference_batch_size``), each with 1 and
  with 2 threads;
- ``keras``: :meth:`ReferenceCNN.score_keras` (``predict_on_batch``) with 1 and with 2 TensorFlow
  intra-op threads, each in a child process (TensorFlow fixes its threads when it starts).

The in-process paths run interleaved, ``--repeats`` rounds, and each keeps its fastest round; ms per
frame is that time over the frames. The largest score difference between the engines is recorded.
Other processes sharing the CPU slow every path; the JSON records the load average before and after.

Where each figure applies: in ``hitbench compare`` and ``predict`` every joblib worker (one per core)
calls ``decision_function``, which splits its frames over all cores in threads; with as many
workers as cores busy, the machine's throughput is about the 1-thread figure divided by the cores.

Usage: python benchmarks/bench_cnn_inference.py [--quick] [--out benchmarks/results/cnn_inference.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import arguments, load_average, machine, write_result  # noqa: E402
from bench_methods import FRAME_SHAPE, PRESET, split_frames  # noqa: E402  (the benchmarks' frames)

from hitbench.frames import check_frames
from hitbench.methods.cnn import ReferenceCNN
from hitbench.methods.cnn_onnx import onnx_session
from hitbench.modelfile import load_model, save_model

GOAL_MS = 0.6
THREADS = (1, 2)


def best_seconds(paths: dict, frames: np.ndarray, repeats: int) -> dict[str, float]:
    """Fastest wall time of each path over ``repeats`` interleaved rounds, after one warm-up call each."""
    for fn in paths.values():
        fn(frames[:4])
    best = dict.fromkeys(paths, np.inf)
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn(frames)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def on_one_core(fn):
    """``fn`` run with this thread's affinity set to one core (so the cnn's threads are 1), then restored."""

    def run(frames: np.ndarray):
        cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cores)})
        try:
            return fn(frames)
        finally:
            os.sched_setaffinity(0, cores)

    return run


def onnx_scores(session, frames: np.ndarray, batch: int) -> np.ndarray:
    """P(hit) through an ONNX Runtime session, in batches (as :meth:`ReferenceCNN.score_onnx`)."""
    starts = range(0, len(frames), batch)
    return np.concatenate([session.run(None, {"frames": frames[i : i + batch]})[0] for i in starts])


def keras_worker(model_path: str, frames_path: str, threads: int, repeats: int) -> None:
    """Child process: time ``score_keras`` with ``threads`` TensorFlow threads; print seconds, save the scores."""
    from hitbench.methods import tf_runtime

    tf_runtime.keras()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    method = load_model(model_path)
    frames = np.load(frames_path)
    seconds = best_seconds({"keras": method.score_keras}, frames, repeats)["keras"]
    np.save(frames_path + f".keras{threads}.npy", method.score_keras(frames))
    print(json.dumps({"seconds": seconds}))


def keras_seconds(method: ReferenceCNN, frames: np.ndarray, repeats: int) -> tuple[dict[int, float], np.ndarray]:
    """``score_keras`` timed in a child process per thread count, and its scores."""
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_path, frames_path = str(Path(tmp) / "cnn.hbm"), str(Path(tmp) / "frames.npy")
        save_model(method, model_path)
        np.save(frames_path, frames)
        for threads in THREADS:
            command = [sys.executable, __file__, "--keras-worker", model_path, frames_path, str(threads), str(repeats)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            seconds[threads] = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        scores = np.load(frames_path + f".keras{THREADS[-1]}.npy")
    return seconds, scores


def main() -> None:
    parser = arguments(__doc__, "cnn_inference.json")
    parser.add_argument("--train", type=int, default=200, help="frames to train on")
    parser.add_argument("--predict", type=int, default=256, help="frames to score")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 frames to train, 32 to score, 2 rounds")
    parser.add_argument("--keras-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keras_worker:
        model_path, frames_path, threads, repeats = args.keras_worker
        keras_worker(model_path, frames_path, int(threads), int(repeats))
        return
    if args.quick:
        args.train, args.predict, args.repeats = 40, 32, 2

    train_frames, train_labels, frames = split_frames(args.train, args.predict, args.seed)
    method = ReferenceCNN(epochs=args.epochs, validation_split=0.0, random_state=args.seed)
    method.fit(train_frames, train_labels)
    sessions = {threads: onnx_session(method.onnx_model(), threads=threads) for threads in THREADS}
    batch = method.inference_batch_size

    load_before = load_average()
    paths = {"decision_function/all": method.decision_function, "check_frames": check_frames}
    if hasattr(os, "sched_setaffinity"):
        paths["decision_function/1"] = on_one_core(method.decision_function)
    for threads in THREADS:
        paths[f"numba/{threads}"] = lambda f, t=threads: method.score_numba(f, threads=t)
        paths[f"onnx/{threads}"] = lambda f, t=threads: onnx_scores(sessions[t], f, batch)
    seconds = best_seconds(paths, frames, args.repeats)
    keras, keras_scores = keras_seconds(method, frames, args.repeats)
    seconds.update({f"keras/{threads}": s for threads, s in keras.items()})
    load_after = load_average()

    scores = {"numba": method.score_numba(frames), "onnx": onnx_scores(sessions[1], frames, batch)}
    scores["keras"] = keras_scores
    ms = {name: round(1e3 * s / len(frames), 4) for name, s in seconds.items()}
    result = {
        "benchmark": "cnn_inference",
        "goal": f"cnn decision_function at most {GOAL_MS} ms per 350x350 frame, scores within 1e-6 of ONNX Runtime",
        "cores_of_decision_function_all": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "goal_ms_per_frame": GOAL_MS,
        "preset": PRESET,
        "frame_shape": list(FRAME_SHAPE),
        "n_train": args.train,
        "epochs": args.epochs,
        "n_predict": len(frames),
        "repeats": args.repeats,
        "seed": args.seed,
        "decision_function_backend": method._engine(),
        "unit": "ms per frame (fastest round); 'numba/2' is the numba kernel with 2 threads",
        "ms_per_frame": ms,
        "frames_per_s": {name: round(len(frames) / s, 1) for name, s in seconds.items()},
        "speedup_numba_over_onnx": {t: round(seconds[f"onnx/{t}"] / seconds[f"numba/{t}"], 2) for t in THREADS},
        "speedup_numba_over_keras": {t: round(seconds[f"keras/{t}"] / seconds[f"numba/{t}"], 2) for t in THREADS},
        "max_abs_score_difference": {
            "numba_onnx": float(np.abs(scores["numba"] - scores["onnx"]).max()),
            "numba_keras": float(np.abs(scores["numba"] - scores["keras"]).max()),
            "onnx_keras": float(np.abs(scores["onnx"] - scores["keras"]).max()),
        },
        "score_range": [float(scores["numba"].min()), float(scores["numba"].max())],
        "keras_note": "Keras is timed in a child process per thread count, after the in-process paths",
        "machine": machine(load_before, load_after),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
