"""docs/speed.md from the speed benchmarks' JSON (benchmarks/results/*.json); the page is never edited by hand.

Each speed goal (issue 19, and the cnn's training of issue 16) is one row: the figure measured, the baseline
measured in the same run of the same benchmark, their ratio and whether the goal is met. Every number comes from
one of these files (written by the script named beside it):

- ``peakfinder_om.json``: ``bench_peakfinder_om.py`` (hitbench's peakfinder8 against OM's compiled one);
- ``cnn_inference.json``: ``bench_cnn_inference.py`` (the cnn's numba kernel, ONNX Runtime, Keras);
- ``robust_inference.json``: ``bench_robust_inference.py`` (cnn-robust, fused and numpy preprocessing);
- ``throughput.json``: ``bench_throughput.py`` (``hitbench methods``, intensity, litpix, ``hitbench predict``);
- ``simulate_speed.json``: ``bench_simulate_speed.py`` (the simulator writing CXI files);
- ``methods.json``: ``bench_methods.py`` (fit and predict time of every registered method);
- ``cnn_training.json``: ``bench_cnn_training.py`` (the cnn's training against plain Keras ``model.fit``, issue 16,
  with cnn's default input and dropout); ``cnn_training_scale1.json``: the same with the study-scale settings
  (``--normalisation linear --dropout 0 --out benchmarks/results/cnn_training_scale1.json``).

Usage: python benchmarks/speed_page.py [--results benchmarks/results] [--out docs/speed.md]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

SOURCES = {
    "peakfinder_om": "bench_peakfinder_om.py",
    "cnn_inference": "bench_cnn_inference.py",
    "robust_inference": "bench_robust_inference.py",
    "throughput": "bench_throughput.py",
    "simulate_speed": "bench_simulate_speed.py",
    "methods": "bench_methods.py",
    "cnn_training": "bench_cnn_training.py",
    "cnn_training_scale1": "bench_cnn_training.py",
}


def _row(what: str, goal: str, measured: str, baseline: str, ratio: float | None, met: bool, source: str) -> dict:
    return {
        "what": what,
        "goal": goal,
        "measured": measured,
        "baseline": baseline,
        "ratio": "—" if ratio is None else f"{ratio:.1f}x",
        "met": "yes" if met else "**no**",
        "source": source,
    }


def _peaks(d: dict) -> list[dict]:
    crop, raw = d["crop"], d["raw"]
    return [
        _row(
            "peakfinder8, 350x350 frame, one thread",
            f"<= {d['goals']['crop_ms_per_frame']} ms and >= {d['goals']['speedup_vs_om']}x OM",
            f"{crop['hitbench_ms_per_frame']:.3f} ms",
            f"OM peakfinder8 {crop['om_peakfinder8_ms_per_frame']:.3f} ms",
            crop["speedup_vs_om_peakfinder8"],
            crop["hitbench_ms_per_frame"] <= d["goals"]["crop_ms_per_frame"]
            and crop["speedup_vs_om_peakfinder8"] >= d["goals"]["speedup_vs_om"],
            "peakfinder_om",
        ),
        _row(
            f"peakfinder8, {raw['frame_shape'][0]}x{raw['frame_shape'][1]} raw multi-panel frame, one thread",
            f"<= {d['goals']['raw_ms_per_frame']} ms",
            f"{raw['hitbench_ms_per_frame']:.1f} ms",
            f"OM peakfinder8 {raw['om_peakfinder8_ms_per_frame']:.1f} ms",
            raw["speedup_vs_om_peakfinder8"],
            raw["hitbench_ms_per_frame"] <= d["goals"]["raw_ms_per_frame"],
            "peakfinder_om",
        ),
    ]


def _cnn(d: dict) -> list[dict]:
    ms = d["ms_per_frame"]
    goal = d["goal_ms_per_frame"]
    rows = []
    for key, where in (("decision_function/all", "all cores"), ("decision_function/1", "one core")):
        rows.append(
            _row(
                f"cnn `decision_function` ({where}, check included)",
                f"<= {goal} ms",
                f"{ms[key]:.3f} ms",
                f"ONNX Runtime {ms['onnx/2' if where == 'all cores' else 'onnx/1']:.2f} ms, "
                f"Keras {ms['keras/2' if where == 'all cores' else 'keras/1']:.2f} ms",
                ms["onnx/2" if where == "all cores" else "onnx/1"] / ms[key],
                ms[key] <= goal,
                "cnn_inference",
            )
        )
    return rows


def _robust(d: dict) -> list[dict]:
    fig = d["figures"]
    goal = d["goal_ms_per_frame"]["cnn_robust"]
    baseline = fig["cnn_robust_numpy"]["ms_per_frame"]
    rows = []
    for key, where in (("cnn_robust_fused", "all cores"), ("cnn_robust_fused_one_core", "one core")):
        measured = fig[key]["ms_per_frame"]
        detail = (
            f" (preprocessing {fig['preprocessing_fused']['ms_per_frame']:.2f}, network "
            f"{fig['network']['ms_per_frame']:.2f})"
            if where == "all cores"
            else ""
        )
        rows.append(
            _row(
                f"cnn-robust `decision_function` ({where}, preprocessing + network)",
                f"<= {goal} ms",
                f"{measured:.2f} ms{detail}",
                f"its numpy preprocessing steps (all cores): {baseline:.1f} ms",
                baseline / measured,
                measured <= goal,
                "robust_inference",
            )
        )
    return rows


def _predict_runs(entry: dict) -> list[dict]:
    """One method's ``hitbench predict`` runs in throughput.json (not those writing hits to CXI)."""
    return [v for k, v in entry.items() if k.startswith("predict_") and "hits" not in k]


def _throughput(d: dict) -> list[dict]:
    goals, methods, df = d["goals"], d["hitbench_methods"], d["decision_function"]
    rows = [
        _row(
            "`hitbench methods` (its kept catalogue)",
            f"< {goals['methods_s']} s",
            f"{methods['hitbench_methods_s']:.2f} s (first run after a change: "
            f"{methods['hitbench_methods_cold_s']:.2f} s)",
            f"bare interpreter {methods['bare_interpreter_s']:.3f} s, `import click, rich` "
            f"{methods['import_click_rich_s']:.3f} s",
            None,
            methods["hitbench_methods_s"] < goals["methods_s"],
            "throughput",
        )
    ]
    for method in ("intensity", "litpix"):
        rate = df[f"{method}_frames_per_s"]
        rows.append(
            _row(
                f"{method} `decision_function` (check included), frames/s",
                f">= {goals[f'{method}_frames_per_s']:,}",
                f"{rate:,.0f}",
                f"numpy float32 sum {df['numpy_sum_frames_per_s']:,.0f}",
                rate / df["numpy_sum_frames_per_s"],
                rate >= goals[f"{method}_frames_per_s"],
                "throughput",
            )
        )
    h5py_rate = d["predict_run"]["reading"]["h5py_one_thread_frames_per_s"]
    for entry in d["predict"]:
        method = entry["method"]
        runs = _predict_runs(entry)
        run = min(runs, key=lambda r: r["frames"])
        longest = max(runs, key=lambda r: r["frames"])
        rate = run["frames_per_s_after_start"]
        goal = goals["predict_frames_per_s"][method]
        rows.append(
            _row(
                f"`hitbench predict` {method}, deflate CXI, frames/s after start-up",
                f">= {goal:,}, memory flat",
                f"{rate:,.0f} ({run['frames']:,} frames, peak RSS {run['peak_rss_mib']:.0f} MiB"
                + (
                    f"; {longest['frames']:,} frames: {longest['frames_per_s_after_start']:,.0f}, "
                    f"{longest['peak_rss_mib']:.0f} MiB)"
                    if longest is not run
                    else ")"
                ),
                f"h5py reading the file, one thread: {h5py_rate:,.0f}",
                rate / h5py_rate,
                rate >= goal,
                "throughput",
            )
        )
    return rows


def _cnn_in_predict(throughput: dict, goal_ms: float) -> dict:
    """The cnn's per-frame goal inside ``hitbench predict``, reading and checks included (from predict's rate)."""
    entry = next(entry for entry in throughput["predict"] if entry["method"] == "cnn")
    run = min(_predict_runs(entry), key=lambda r: r["frames"])  # the run the predict row shows
    ms = 1e3 / run["frames_per_s_after_start"]
    reading = throughput["predict_run"]["reading"]
    h5py_ms = 1e3 / reading["h5py_one_thread_frames_per_s"]
    read_cpu, cnn_cpu = reading["hitbench_reader_cpu_ms_per_frame"], entry["method_cpu_ms_per_frame"]
    cpus = throughput["machine"]["cpus"]
    return _row(
        "cnn in `hitbench predict` (reading and checks included), ms per frame",
        f"<= {goal_ms} ms",
        f"{ms:.2f} ms ({run['frames']:,} frames)",
        f"h5py reading the file, one thread: {h5py_ms:.2f} ms; least possible on this machine, CPU time of a frame "
        f"over its {cpus} cores: ({read_cpu:.2f} to read + {cnn_cpu:.2f} to score) / {cpus} = "
        f"{(read_cpu + cnn_cpu) / cpus:.2f} ms",
        None,
        ms <= goal_ms,
        "throughput",
    )


def _training(d: dict) -> list[dict]:
    goal = d["goal_ms_per_frame_epoch"]
    rows = []
    for batch, figures in d["ms_per_frame_epoch"].items():
        plain = figures["plain Keras model.fit (arrays in memory)"]
        no_copy = figures.get("hitbench ReferenceCNN.fit (CXI, no scratch copy)")  # measured since 2026-12-03
        for key, where in (
            ("hitbench ReferenceCNN.fit (memory)", "frames in memory"),
            ("hitbench ReferenceCNN.fit (CXI)", "streamed from a CXI file"),
        ):
            also = f"; streamed without the scratch copy: {no_copy:.2f} ms" if no_copy and "CXI" in key else ""
            rows.append(
                _row(
                    f"cnn training ({batch}, {where}, {d['normalisation']} input, dropout {d['dropout']:g}), "
                    "ms per frame and epoch",
                    f"<= {goal} ms",
                    f"{figures[key]:.2f} ms",
                    f"plain Keras `model.fit` on arrays in memory: {plain:.2f} ms{also}",
                    plain / figures[key],
                    figures[key] <= goal,
                    "cnn_training",
                )
            )
    return rows


def _simulate(d: dict) -> list[dict]:
    rate = d["frames_per_s"]["n_jobs=2"]
    every = d["frames_per_s_every_repeat"]["n_jobs=2"]
    return [
        _row(
            f"simulator writing CXI, 2 jobs, frames/s ({d['preset']} runs {d['runs'][0]}-{d['runs'][-1]}, "
            f"{d['frames']:,} frames)",
            ">= 1,000",
            f"{rate:,.0f}, fastest of {len(every)} (all: {', '.join(f'{r:,.0f}' for r in every)}; 1 job: "
            f"{d['frames_per_s']['n_jobs=1']:,.0f}; {d['bytes_per_frame'] / 1e3:.1f} kB a frame)",
            f"{d['baseline']}: {d['baseline_frames_per_s_2_jobs']:,.0f}",
            rate / d["baseline_frames_per_s_2_jobs"],
            rate >= 1000,
            "simulate_speed",
        )
    ]


ROWS: dict[str, Callable[[dict], list[dict]]] = {
    "peakfinder_om": _peaks,
    "cnn_inference": _cnn,
    "robust_inference": _robust,
    "throughput": _throughput,
    "simulate_speed": _simulate,
    "cnn_training": _training,
    "cnn_training_scale1": _training,
}


def _load(d: dict) -> str:
    """The 1-minute load average before and after a benchmark, as its machine record (``_common.machine``) has it."""
    first = [d["machine"].get(key, [None])[0] for key in ("load_before", "load_after")]
    return " -> ".join("?" if x is None else f"{x:.2f}" for x in first)


def _agreement(d: dict) -> list[str]:
    lines = []
    for key, label in (("crop", "350x350 frames"), ("raw", "raw multi-panel frames")):
        a = d[key]["agreement"]
        lines.append(
            f"- {label} ({a['frames']} frames, {a['peaks_om']} peaks by OM, {a['peaks_hitbench']} by hitbench): "
            f"equal counts on {a['fraction_frames_equal_count']:.0%} of the frames (count correlation "
            f"{a['count_correlation']:.4f}); {a['fraction_om_peaks_with_hitbench_peak_within_0.01_px']:.1%} of OM's "
            f"peaks have a hitbench peak within 0.01 px, {a['fraction_om_peaks_with_hitbench_peak_within_0.1_px']:.1%} "
            f"within 0.1 px, {a['fraction_om_peaks_with_hitbench_peak_within_1_px']:.1%} within 1 px."
        )
    return lines


def _methods(d: dict) -> list[str]:
    lines = [
        f"Fit on {d['n_train']} frames, `decision_function` on {d['n_predict']} frames in memory (best of "
        f"{d['repeats']}), {d['frame_shape'][0]}x{d['frame_shape'][1]} from `{d['preset']}`; the cnn trained for "
        "a few epochs only (its prediction speed does not depend on the weights). Each method is timed on its own "
        "right after its fit, not interleaved with a baseline: the rows of the goals table above are the "
        "figures for the goals where both measure the same thing.",
        "",
        "| method | fit s | predict ms/frame | frames/s |",
        "|---|---:|---:|---:|",
    ]
    for row in d["methods"]:
        if "error" in row:
            lines.append(f"| {row['method']} | failed: {row['error']} | | |")
        else:
            lines.append(f"| {row['method']} | {row['fit_s']} | {row['ms_per_frame']} | {row['frames_per_s']:,.0f} |")
    return lines


def page(results: Path) -> str:
    """The Markdown of docs/speed.md from the JSON files in ``results``."""
    data = {name: json.loads((results / f"{name}.json").read_text()) for name in SOURCES}
    rows = [row for name, rows_of in ROWS.items() for row in rows_of(data[name])]
    rows.append(_cnn_in_predict(data["throughput"], data["cnn_inference"]["goal_ms_per_frame"]))
    lines = [
        "# Speed",
        "",
        "Generated by `python benchmarks/speed_page.py` from the benchmarks' JSON in `benchmarks/results/`; do not "
        "edit by hand. Every figure is measured beside its baseline in the same run of the same benchmark, on "
        "350x350 frames of the default preset (`cxi-streptavidin`) unless the row says otherwise.",
        "",
        "| what | goal | measured | baseline (same run) | ratio | goal met | from |",
        "|---|---|---|---|---:|---|---|",
    ]
    for row in rows:
        source = f"`{SOURCES[row['source']]}`"
        lines.append(
            f"| {row['what']} | {row['goal']} | {row['measured']} | {row['baseline']} | {row['ratio']} | "
            f"{row['met']} | {source} |"
        )
    lines += [
        "",
        "The ratio is baseline time over hitbench's time (or hitbench's rate over the baseline's). No GPU machine "
        "was lent to this project's sessions, so there is no GPU figure.",
        "",
        "## Peak lists against OM's peakfinder8",
        "",
        "Same frames and parameters; hitbench differs from OM by design where `docs/peaks.md` says so (the first "
        "radial pass starts from `adc_threshold`, the local background is an annulus).",
        "",
        *_agreement(data["peakfinder_om"]),
        "",
        "## Every method",
        "",
        *_methods(data["methods"]),
        "",
        "## Scores unchanged",
        "",
        "Every speed change above keeps the results: tests compare the new code with outputs recorded by the code "
        "before it (`tests/data/golden_*`): peak lists to the bit, cnn scores within 1e-6 (largest difference "
        f"measured {data['cnn_inference']['max_abs_score_difference']['numba_onnx']:.1e} from ONNX Runtime), "
        "cnn-robust's spot maps to the bit, intensity and litpix scores equal, the simulator's frames and truth to "
        "the bit.",
        "",
        "## Machines",
        "",
        "The same script gives other figures on another processor (the machines lent to this project's sessions "
        "differ: AVX-512 runs twice the floats an instruction that AVX2 does); a row's processor is recorded since "
        "2026-12-03, and `not recorded` marks an older run.",
        "",
        "| benchmark | CPUs | processor (widest vector ISA) | platform | load average (1 min) before -> after |",
        "|---|---:|---|---|---|",
    ]
    for name, script in SOURCES.items():
        d = data[name]
        machine = d["machine"]
        processor = "not recorded"
        if "cpu" in machine:
            processor = f"{machine['cpu']['model']} ({machine['cpu']['vector']})"
        lines.append(
            f"| `{script}` | {machine.get('cpus', '?')} | {processor} | {machine.get('platform', '?')} | {_load(d)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--out", type=Path, default=Path("docs/speed.md"))
    args = parser.parse_args()
    args.out.write_text(page(args.results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
