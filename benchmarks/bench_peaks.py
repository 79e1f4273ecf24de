"""Accuracy and speed of the peakfinder8-style finder on simulated runs (writes JSON).

For every run: recall of the truth's detectable spots (a spot counts as found when a peak lies
within 1.5 px of it), precision of the peaks (a peak counts as true when a simulated spot of any
strength lies within 1.5 px), recall of spots of at least 20 photons, and agreement of the
peak-count labels (<2 peaks miss, >10 hit) with the truth's hit flag on the frames that are not
ambiguous. Timing: ms per frame of ``count`` and ``find`` on the default preset's 350x350 frames
(one compiled kernel per frame, one core; bench_peakfinder_om.py times it against OM's peakfinder8).

The truth gives the number of detectable spots per frame, not a flag per spot; spots are listed
brightest first, so the detectable ones are taken to be the first ``n_spots_detectable``.

Usage: python benchmarks/bench_peaks.py [--frames 200] [--out benchmarks/results/peaks.json]
"""

from __future__ import annotations

import json
import time

import numpy as np
from _common import arguments, load_average, machine, write_result
from scipy.spatial import cKDTree

from hitbench.labelrule import peak_labels
from hitbench.peaks import PeakFinder8
from hitbench.simulate import load_experiment, simulate_run

MATCH_PX = 1.5
BRIGHT_PHOTONS = 20.0
RUNS = {"cxi-streptavidin": [90, 92, 100], "tiny": [1, 4]}


def run_metrics(finder: PeakFinder8, sim) -> dict:
    """Peak recall/precision and label agreement for one simulated run."""
    truth = sim.truth
    found = [finder.find(frame, sim.mask) for frame in sim.frames]
    n_det = n_det_found = n_bright = n_bright_found = n_peaks = n_true_peaks = 0
    for i, peaks in enumerate(found):
        ok = np.isfinite(truth["spot_x"][i])
        spots = np.c_[truth["spot_x"][i][ok], truth["spot_y"][i][ok]]
        photons = truth["spot_photons"][i][ok]
        k = int(truth["n_spots_detectable"][i])
        n_peaks += len(peaks)
        n_det += k
        bright = photons >= BRIGHT_PHOTONS
        n_bright += int(bright.sum())
        if len(peaks) == 0 or spots.shape[0] == 0:
            continue
        centroids = np.c_[peaks.x, peaks.y]
        n_true_peaks += int((cKDTree(spots).query(centroids)[0] < MATCH_PX).sum())
        hit_spot = cKDTree(centroids).query(spots)[0] < MATCH_PX
        n_det_found += int(hit_spot[:k].sum())
        n_bright_found += int(hit_spot[bright].sum())
    counts = np.array([len(p) for p in found])
    labels = peak_labels(counts)
    hit = truth["hit"].astype(int)
    decided = labels >= 0
    return {
        "frames": int(len(found)),
        "detectable_spots": n_det,
        "recall": n_det_found / max(n_det, 1),
        f"recall_spots_ge_{BRIGHT_PHOTONS:g}_photons": n_bright_found / max(n_bright, 1),
        "peaks": n_peaks,
        "precision": n_true_peaks / max(n_peaks, 1),
        "false_peaks_per_frame": (n_peaks - n_true_peaks) / len(found),
        "truth_hit_fraction": float(hit.mean()),
        "label_hit": int((labels == 1).sum()),
        "label_miss": int((labels == 0).sum()),
        "label_ambiguous": int((~decided).sum()),
        "label_agreement": float((labels[decided] == hit[decided]).mean()) if decided.any() else None,
        "truth_hits_labelled_miss": int(((labels == 0) & (hit == 1)).sum()),
        "truth_misses_labelled_hit": int(((labels == 1) & (hit == 0)).sum()),
    }


def timing(finder: PeakFinder8, frames: np.ndarray, mask: np.ndarray, repeats: int = 3) -> dict:
    """Best-of-``repeats`` milliseconds per frame of count and find."""

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 1e3 * min(times) / frames.shape[0]

    return {
        "frame_shape": list(frames.shape[1:]),
        "frames": int(frames.shape[0]),
        "count_ms_per_frame": best(lambda: finder.count(frames, mask)),
        "find_ms_per_frame": best(lambda: [finder.find(frame, mask) for frame in frames]),
    }


def main() -> None:
    parser = arguments(__doc__, "peaks.json")
    parser.add_argument("--frames", type=int, default=200, help="frames per run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    finder = PeakFinder8()
    load_before = load_average()
    result = {
        "finder": finder.get_params(),
        "match_px": MATCH_PX,
        "seed": args.seed,
        "presets": {},
    }
    for preset, runs in RUNS.items():
        exp = load_experiment(preset)
        per_run = {}
        for run in runs:
            sim = simulate_run(exp, run=run, n_frames=args.frames, seed=args.seed)
            per_run[str(run)] = run_metrics(finder, sim)
            print(preset, run, json.dumps(per_run[str(run)]))
            if preset == "cxi-streptavidin" and "timing" not in result:
                result["timing"] = timing(finder, sim.frames, sim.mask)
                print("timing", json.dumps(result["timing"]))
        det = sum(r["detectable_spots"] for r in per_run.values())
        peaks = sum(r["peaks"] for r in per_run.values())
        result["presets"][preset] = {
            "runs": per_run,
            "recall": sum(r["recall"] * r["detectable_spots"] for r in per_run.values()) / max(det, 1),
            "precision": sum(r["precision"] * r["peaks"] for r in per_run.values()) / max(peaks, 1),
        }
    result["machine"] = machine(load_before)
    write_result(args.out, result, show=False)


if __name__ == "__main__":
    main()
