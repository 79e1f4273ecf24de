"""``hitbench compare``: resolve the data, run the comparison, write results, tables and figures."""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hitbench import __version__
from hitbench.atomic import atomic_write, temp_sibling
from hitbench.bench.costs import StepCosts
from hitbench.bench.data import events_table, simulated_experiment
from hitbench.bench.figures import write_figures
from hitbench.bench.results_io import write_results, write_text
from hitbench.bench.runner import Comparison
from hitbench.bench.tables import write_tables
from hitbench.data.assembled import assembled_experiment
from hitbench.data.dataset import Experiment, open_experiment, run_labels, select_runs
from hitbench.data.geom import read_geom
from hitbench.errors import HitbenchError
from hitbench.geometry import CROP_SIZE
from hitbench.methods import registry

#: The reference study's five methods, compared when --methods is not given.
DEFAULT_METHODS = ("intensity", "litpix", "svm", "peaks", "cnn")
DEFAULT_PRESET = "cxi-streptavidin"
Progress = Callable[[str, int], Callable[[], None]]


def parse_params(items: tuple[str, ...] | list[str], methods: list[str]) -> dict[str, dict]:
    """Method parameters from ``method.name=value`` strings (values as Python literals, else strings).

    Parameters
    ----------
    items : sequence of str
        E.g. ``("cnn.epochs=5", "svm.n_components=20")``.
    methods : list of str
        The methods being compared (a parameter for another method is an error).

    Returns
    -------
    dict of str to dict
        Parameters per method.
    """
    params: dict[str, dict] = {}
    for item in items:
        target, sep, text = item.partition("=")
        method, dot, name = target.strip().partition(".")
        if not sep or not dot or not method or not name.isidentifier():
            raise HitbenchError(f"--param {item!r}: expected METHOD.NAME=VALUE, e.g. cnn.epochs=5")
        if method not in methods:
            raise HitbenchError(f"--param {item!r}: method '{method}' is not among --methods ({', '.join(methods)})")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        params.setdefault(method, {})[name] = value
    for method, values in params.items():
        known = registry.parameters(method)
        for name in values:
            if name not in known:
                listed = ", ".join(known) or "none"
                raise HitbenchError(f"--param {method}.{name}: no such parameter; {method} has {listed}")
    return params


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temp_sibling(folder / "write-test").unlink()
    except OSError as exc:
        raise HitbenchError(f"{folder}: output folder not writable ({exc.strerror}); pick another --out") from None


@dataclass
class CompareSettings:
    """What ``hitbench compare`` was asked to do (its options)."""

    methods: list[str]
    out: Path
    cache_dir: Path
    data: Path | None = None
    preset: str | None = None
    scale: float | None = None
    train_runs: str | None = None
    test_runs: str | None = None
    cross_experiment: list[str] = field(default_factory=list)
    labels: str = "peaks"
    params: dict[str, dict] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    holdout: float = 0.3
    n_jobs: int = 1
    save_models: bool = False
    geometry: Path | None = None
    data_path: str | None = None


def _experiment(
    source: str | Path, settings: CompareSettings, crop: int, progress: Progress | None, costs: StepCosts | None = None
) -> Experiment:
    path = Path(source)
    from hitbench.simulate import preset_names

    # --preset and --cross-experiment text: a bare preset name is the preset even beside a folder of that
    # name (give the folder as ./NAME or with --data); --data is a Path, always data
    preset = isinstance(source, str) and source in preset_names()
    if not preset and path.exists() and path.suffix != ".toml":
        ours = source == settings.data  # --cross-experiment data is read as it is
        detector = read_geom(settings.geometry) if settings.geometry is not None and ours else None
        experiment = open_experiment(
            path, crop_size=crop, data_path=settings.data_path if ours else None, detector=detector
        )
        if detector is not None:
            experiment = assembled_experiment(experiment, detector, crop)
            _check_labelled(experiment, settings.geometry)
        return experiment
    if preset or path.suffix == ".toml":
        return simulated_experiment(
            str(source),
            scale=settings.scale,
            seed=settings.seeds[0],
            cache_dir=settings.cache_dir,
            n_jobs=settings.n_jobs,
            progress=progress,
            costs=costs,
        )
    raise HitbenchError(f"data '{source}': neither a file/folder nor a preset; presets: {', '.join(preset_names())}")


def _check_labelled(experiment: Experiment, geometry: Path) -> None:
    """Runs of raw frames are labelled with their geometry first (``hitbench label --geometry``)."""
    for run in experiment.runs.values():
        if "label" in getattr(run, "fields", ()) and not run.attrs.get("geometry"):
            raise HitbenchError(
                f"{run.path}: labelled without a geometry (peaks found on the raw frames as one "
                f"panel); label it again with `hitbench label --geometry {geometry} {run.path}`"
            )


def _default_train_runs(experiment: Experiment) -> list[str]:
    names = list(experiment.runs)
    return experiment.train_runs or names[: max(1, round(0.4 * len(names)))]


def _examples(experiment: Experiment, runs: list[str], label_kind: str, n: int = 3) -> dict[str, np.ndarray]:
    name = runs[0]
    run = experiment.runs[name]
    labels = run_labels(run, label_kind)
    picks = np.concatenate([np.flatnonzero(labels == 1)[:n], np.flatnonzero(labels == 0)[:n]])
    frames = np.stack([run.read(i, i + 1)[0] for i in picks])
    n_peaks = run.field("n_peaks")[picks] if "n_peaks" in getattr(run, "fields", []) else np.full(picks.size, -1)
    return {
        "frames": frames,
        "labels": labels[picks],
        "n_peaks": n_peaks,
        "title": np.array(f"{experiment.name}, run {name}: hits (top) and misses (bottom)"),
    }


def run_compare(settings: CompareSettings, command: str, progress: Progress | None = None) -> dict:
    """Run a comparison and write everything under ``settings.out``.

    Parameters
    ----------
    settings : CompareSettings
        The options.
    command : str
        The command line, recorded in meta.json.
    progress : callable, optional
        Progress-bar factory.

    Returns
    -------
    dict
        ``results`` (DataFrame), ``tables`` (dict of DataFrames), ``trained`` and ``predicted``
        (how many models were trained and test runs scored, not taken from the cache).
    """
    for method in settings.methods:
        registry.load(method)
    if settings.labels not in ("peaks", "truth"):
        raise HitbenchError(f"--labels {settings.labels}: use peaks (the peak-finder rule) or truth (simulator)")
    if not 0 < settings.holdout < 1:
        raise HitbenchError(f"--holdout {settings.holdout}: give a fraction between 0 and 1")
    if settings.geometry is not None and settings.data is None:
        raise HitbenchError(
            f"--geometry {settings.geometry}: goes with --data (a folder of runs of raw frames); a "
            "preset of whole panels (detector.panels) writes and uses its own geometry"
        )
    if settings.data_path is not None and settings.data is None:
        raise HitbenchError(f"--data-path {settings.data_path}: goes with --data (a folder of HDF5 runs)")
    if settings.geometry is not None:
        read_geom(settings.geometry)  # a bad geometry fails before any work
    _check_writable(settings.out)
    source = settings.data if settings.data is not None else (settings.preset or DEFAULT_PRESET)
    costs = StepCosts()
    experiment = _experiment(source, settings, CROP_SIZE, progress, costs)
    names = list(experiment.runs)
    train_runs = select_runs(settings.train_runs, names) if settings.train_runs else _default_train_runs(experiment)
    test_runs = select_runs(settings.test_runs, names, option="--test-runs")
    shape = next(iter(experiment.runs.values())).frame_shape
    others = [_experiment(other, settings, shape[0], progress) for other in settings.cross_experiment]
    for other in others:
        for name, run in other.runs.items():
            if run.frame_shape != shape:
                raise HitbenchError(
                    f"--cross-experiment {other.name}: run {name} has {run.frame_shape[0]}x{run.frame_shape[1]} "
                    f"frames but {experiment.name} has {shape[0]}x{shape[1]}; use experiments with the same crop"
                )
    comparison = Comparison(
        methods=list(settings.methods),
        params=settings.params,
        experiment=experiment,
        train_runs=train_runs,
        test_runs=test_runs,
        other_experiments=others,
        label_kind=settings.labels,
        seeds=tuple(settings.seeds),
        holdout=settings.holdout,
        cache_dir=settings.cache_dir,
        n_jobs=settings.n_jobs,
    )
    results, scores = comparison.run(progress, costs)
    out = settings.out
    with costs.step("tables and figures"):
        events = events_table([experiment, *others], settings.labels)
        write_results(out, results, scores, events)
        atomic_write(
            out / "examples.npz",
            lambda tmp: np.savez_compressed(tmp.open("wb"), **_examples(experiment, test_runs, settings.labels)),
        )
        tables = write_tables(out, results, scores, events)
        write_figures(out, results, scores, events, out / "figures")
    meta = {
        "command": command,
        "hitbench_version": __version__,
        **({"commit": commit} if (commit := source_commit()) else {}),
        "data": str(source),
        "train_runs": ",".join(train_runs),
        "labels": settings.labels,
        "seeds": list(settings.seeds),
        "holdout": settings.holdout,
        "methods": list(settings.methods),
        "params": settings.params,
        "steps": costs.steps,
        "data_size": _data_size(experiment),
    }
    write_text(out / "meta.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
    if settings.save_models:
        _save_models(comparison, out / "models")
    return {"results": results, "tables": tables, "trained": comparison.trained, "predicted": comparison.predicted}


def source_commit() -> str | None:
    """The git commit of the hitbench source that runs, ``+dirty`` with uncommitted changes; None outside a git tree.

    Recorded in ``meta.json`` so that a page generated from the results names the code that made them
    (an install from a clone in editable mode is a git tree; a wheel is not, and has its version only).
    """
    source = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit or git("rev-parse", "--show-toplevel") != str(source.parent):
        return None
    changes = git("status", "--porcelain", "--untracked-files=no", "--", str(source))
    return f"{commit}+dirty" if changes else commit


def _data_size(experiment: Experiment) -> dict[str, float]:
    """Frames of the experiment and the bytes its CXI files take on disk (image runs: their files)."""
    files = [Path(f) for run in experiment.runs.values() for f in getattr(run, "files", [getattr(run, "path", None)])]
    frames = sum(run.n_frames for run in experiment.runs.values())
    size = sum(f.stat().st_size for f in files if f is not None and f.is_file())
    return {"frames": frames, "bytes": size, "bytes_per_frame": size / max(1, frames)}


def _save_models(comparison: Comparison, folder: Path) -> None:
    import shutil

    for fit in comparison.fits:
        atomic_write(
            folder / f"{fit.method}-seed{fit.seed}{fit.path.suffix}", lambda tmp, p=fit.path: shutil.copyfile(p, tmp)
        )
