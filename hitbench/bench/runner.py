"""Run methods × protocols × seeds and collect one tidy table of results.

Work is split into fit tasks (one per method and seed) and score tasks (one per trained
model and test run), each run through joblib (``Parallel``/``delayed``), so the same code
runs locally or, under ``joblib.parallel_config(backend="dask")``, on a Dask cluster.
Tasks receive runs (file paths and frame indices), never open HDF5 handles.

Trained models and their scores are cached on disk under ``cache_dir`` keyed by a hash of
everything they depend on (method, parameters, seed, training files and frames, label kind,
the method's source), so a repeated comparison trains and predicts nothing. Models are kept as
hitbench model files (:mod:`hitbench.modelfile`) and scores as ``.npz`` arrays, both read without
pickle, so a cache shared with others cannot run code. Cache entries are written to a temporary
name and renamed into place, so an interrupted run leaves none half-written and two runs sharing
a cache both end with correct files.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import joblib
import numpy as np
import pandas as pd

from hitbench import __version__
from hitbench.atomic import atomic_path
from hitbench.bench.costs import StepCosts
from hitbench.bench.metrics import RATES, expected_calibration_error, hit_metrics, metric_intervals
from hitbench.bench.protocols import (
    TestSet,
    cross_experiment_test_sets,
    cross_run_test_sets,
    holdout_split,
)
from hitbench.data.assembled import AssembledRun
from hitbench.data.cxi import CXIRun
from hitbench.data.dataset import (
    Experiment,
    ImageRun,
    Run,
    RunFrames,
    iter_frames,
    label_sources,
    run_labels,
    run_source,
)
from hitbench.errors import HitbenchError
from hitbench.frames import ArrayFrames, FrameSource
from hitbench.methods import registry
from hitbench.methods.peaks import PeakCount
from hitbench.modelfile import SUFFIX, load_model, read_record, save_model
from hitbench.peaks import PeakFinder8


def run_identity(run: Run) -> tuple:
    """What a run's content is known by in cache keys: its files, sizes and modification times.

    Parameters
    ----------
    run : CXIRun or ImageRun
        The run.

    Returns
    -------
    tuple
        Hashable identity.
    """
    files = [run.path] if isinstance(run, CXIRun) else run.files
    stats = [(str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    extra = run.labels.tobytes() if isinstance(run, ImageRun) else b""
    if isinstance(run, AssembledRun | ImageRun):  # the crop depends on the geometry
        extra += run.geometry_key
    return (tuple(stats), extra, run.frame_shape)


@dataclass(frozen=True)
class FitTask:
    """Train one method with one seed on the training frames of some runs."""

    method: str
    params: dict
    seed: int
    train: tuple[tuple[Run, np.ndarray], ...]
    label_kind: str
    path: Path


def _method_estimator(method: str, params: dict, seed: int):
    estimator = registry.get(method, **params)
    seeds = {k: seed for k in estimator.get_params() if k.split("__")[-1] == "random_state" and k not in params}
    return estimator.set_params(**seeds)


#: Training sets up to this size (as float32) are read once into memory; larger ones are streamed from the
#: run files chunk by chunk (methods reading every frame each epoch, the cnn, would otherwise decompress the
#: same few hundred frames 40 times). Either way a method trains the same model (tests/test_streaming.py).
IN_MEMORY_BYTES = 2**30


def _training_frames(train: tuple[tuple[Run, np.ndarray], ...]) -> FrameSource:
    frames = RunFrames(train)
    n_bytes = 4 * len(frames) * frames.frame_shape[0] * frames.frame_shape[1]
    return ArrayFrames(frames.to_array()) if n_bytes <= IN_MEMORY_BYTES else frames


def _fit(task: FitTask) -> dict:
    frames = _training_frames(task.train)
    y = np.concatenate([run_labels(run, task.label_kind)[indices] for run, indices in task.train])
    estimator = _method_estimator(task.method, task.params, task.seed)
    where = f"{task.method} trained on {', '.join(str(run_source(run)) for run, _ in task.train)}"
    start = time.perf_counter()
    try:
        estimator.fit(frames, y)
    except HitbenchError as exc:
        raise HitbenchError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:  # a --param value of the wrong kind reaches the method only here
        raise HitbenchError(f"{where}: fit failed with parameters {task.params} ({exc}); check --param") from None
    record = {"fit_seconds": time.perf_counter() - start, "n_train": int(y.size), "n_train_hits": int(y.sum())}
    save_model(estimator, task.path, record, name=task.method)
    return record


@dataclass(frozen=True)
class ScoreTask:
    """Score one test run with several trained models, reading its frames once.

    Parameters
    ----------
    test : TestSet
        The run and the frames to score.
    models : tuple of (Path, Path)
        Each model's file and the file its scores are written to.
    """

    test: TestSet
    models: tuple[tuple[Path, Path], ...]


def _score(task: ScoreTask) -> int:
    models = [load_model(model_path) for model_path, _ in task.models]
    scores: list[list[np.ndarray]] = [[] for _ in models]
    seconds = [0.0] * len(models)
    for block, frames in enumerate(iter_frames(task.test.run, task.test.frames)):
        for k, model in enumerate(models):
            if block == 0 and len(frames):  # one-time costs (a compiled kernel loaded, a session made): not per frame
                _decide(model, frames[:1], task.test.run)
            start = time.perf_counter()
            scores[k].append(_decide(model, frames, task.test.run))
            seconds[k] += time.perf_counter() - start
    for model, parts, spent, (_, path) in zip(models, scores, seconds, task.models, strict=True):
        values = np.concatenate(parts)
        record = {
            "scores": values,
            "predicted": model.decide(values).astype(np.int8),
            "predict_ms_per_frame": np.float64(1e3 * spent / max(1, values.size)),
        }
        with atomic_path(path) as tmp, tmp.open("wb") as file:
            np.savez(file, **record)
    return len(models)


def _decide(model, frames: np.ndarray, run) -> np.ndarray:
    """The model's scores of ``frames``, a method's error naming the run."""
    try:
        return model.decision_function(frames)
    except HitbenchError as exc:
        raise HitbenchError(f"{run_source(run)}: {exc}") from None


def _read_scores(path: Path) -> dict:
    """A score record written by :func:`_score` (arrays only: read without pickle)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            record = {key: saved[key] for key in ("scores", "predicted", "predict_ms_per_frame")}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise HitbenchError(f"{path}: damaged cache entry ({exc}); delete it and run again") from None
    record["predict_ms_per_frame"] = float(record["predict_ms_per_frame"])
    return record


def _source_hash(method: str) -> str:
    """Hash of the source a method is built from (cache invalidation): :func:`_method_sources`."""
    modules, kernels = _method_sources(method)
    return joblib.hash([inspect.getsource(sys.modules[name]) for name in modules] + [p.read_text() for p in kernels])


def _method_sources(method: str) -> tuple[list[str], list[Path]]:
    """The modules a method is built from, and the private modules beside them.

    The modules: that of its registry entry (a class or a factory), those of its estimator's class hierarchy and,
    transitively, the modules of its own package that they import at module level (e.g. ``hitbench.preprocess``
    for robust methods). Beside each, the private modules of its folder (``_*.py``: the compiled kernels, which
    the code imports only when it runs, e.g. ``hitbench/methods/_cnn_kernel.py``), read as files, not imported.
    """
    entry = registry.load(method)
    roots = {"hitbench", entry.__module__.split(".")[0]}
    seen: set[str] = set()
    todo = [entry.__module__, *(klass.__module__ for klass in type(registry.get(method)).__mro__)]
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in roots or name not in sys.modules:
            continue
        seen.add(name)
        for value in vars(sys.modules[name]).values():
            todo.append(value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None) or "")
    folders = {Path(file).parent for name in seen if (file := getattr(sys.modules[name], "__file__", None))}
    kernels = sorted(path for folder in folders for path in folder.glob("_*.py") if not path.name.startswith("__"))
    return sorted(seen), kernels


def _check_params(methods: list[str], params: dict[str, dict], frame_shape: tuple[int, int]) -> None:
    """Refuse --param values before any training: each method checks its own (:meth:`HitMethod.check_params`)."""
    for method in methods:
        given = params.get(method, {})
        try:
            _method_estimator(method, given, 0).check_params(frame_shape)
        except (TypeError, ValueError) as exc:  # e.g. a word where a number belongs
            raise HitbenchError(f"{method}: parameters {given} of the wrong kind ({exc}); check --param") from None


def _check_holdout(labels: np.ndarray, holdout: float, run: str) -> None:
    """Refuse a hold-out fraction that leaves a training run's held-out or training part too small to split.

    The split is stratified (as :func:`hitbench.bench.protocols.holdout_split`) when each class has two
    frames: each part then needs a frame of each class, else one frame.
    """
    n = int(np.count_nonzero(labels >= 0))
    need = 2 if np.bincount(labels[labels >= 0], minlength=2).min() >= 2 else 1
    n_test = math.ceil(holdout * n)  # as scikit-learn counts it
    if n < 2 * need:
        raise HitbenchError(
            f"run {run}: {n} labelled frame(s), too few to hold out some and train on the rest (at least {2 * need}"
            " needed); give more frames (a larger --scale for a preset) or other --train-runs"
        )
    if n_test < need:
        least = math.ceil(1000 * need / n) / 1000
        raise HitbenchError(
            f"--holdout {holdout}: holds out {n_test} of run {run}'s {n} labelled frames, at least {need} are needed; "
            f"give --holdout {least} or more"
        )
    if n - n_test < need:
        most = math.floor(1000 * (n - need) / n) / 1000
        raise HitbenchError(
            f"--holdout {holdout}: leaves {n - n_test} of run {run}'s {n} labelled frames to train on, at least "
            f"{need} are needed; give --holdout {most} or less"
        )


def _run_tasks(function: Callable, tasks: list, n_jobs: int, advance: Callable[[], None] | None) -> list:
    if not tasks:
        return []
    results = []
    parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
    for result in parallel(joblib.delayed(function)(task) for task in tasks):
        results.append(result)
        if advance is not None:
            advance()
    return results


@dataclass
class Comparison:
    """A comparison of methods on one experiment's runs (and optionally other experiments).

    Parameters
    ----------
    methods : list of str
        Registry names of the methods.
    params : dict of str to dict
        Parameters per method name.
    experiment : Experiment
        The experiment whose training runs the methods learn from.
    train_runs, test_runs : list of str
        Run names for training and for the cross-run tests.
    other_experiments : list of Experiment
        Experiments for the cross-experiment tests.
    label_kind : {"peaks", "truth"}
        Labels to train and score with.
    seeds : list of int
        One training (and hold-out split) per seed.
    holdout : float
        Fraction of each training run's labelled frames held out for its test row.
    cache_dir : Path
        Where trained models and scores are cached.
    n_jobs : int
        joblib workers.
    """

    methods: list[str]
    params: dict[str, dict]
    experiment: Experiment
    train_runs: list[str]
    test_runs: list[str]
    other_experiments: list[Experiment]
    label_kind: str = "peaks"
    seeds: tuple[int, ...] = (0,)
    holdout: float = 0.3
    cache_dir: Path = Path(".hitbench-cache")
    n_jobs: int = 1

    def _labels(self, run: Run, experiment: str, name: str, kind: str | None = None) -> np.ndarray:
        try:
            return run_labels(run, kind or self.label_kind)
        except HitbenchError as exc:
            raise HitbenchError(f"run {name} of {experiment}: {exc}") from None

    def run(
        self, progress: Callable[[str, int], Callable[[], None]] | None = None, costs: StepCosts | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Train, test and tabulate.

        Parameters
        ----------
        progress : callable, optional
            ``progress(description, total)`` returns a function to call once per finished
            task (a rich progress bar in the CLI).
        costs : StepCosts, optional
            Records the cost of the steps "train" and "score".

        Returns
        -------
        (pandas.DataFrame, pandas.DataFrame)
            The tidy results (one row per method × seed × test run) and the per-frame scores.
        """
        exp = self.experiment
        _check_params(self.methods, self.params, next(iter(exp.runs.values())).frame_shape)
        fits: list[FitTask] = []
        tests: dict[tuple[str, int], list[TestSet]] = {}
        for seed in self.seeds:
            train, held_out = [], {}
            for name in self.train_runs:
                labels = self._labels(exp.runs[name], exp.name, name)
                _check_holdout(labels, self.holdout, name)
                train_idx, held_out[name] = holdout_split(labels, self.holdout, seed)
                train.append((exp.runs[name], train_idx))
            test_sets = cross_run_test_sets(exp, self.train_runs, self.test_runs, held_out)
            test_sets += cross_experiment_test_sets(self.other_experiments)
            train_key = [(run_identity(run), idx.tobytes()) for run, idx in train]
            for method in self.methods:
                params = self.params.get(method, {})
                estimator = _method_estimator(method, params, seed)
                key = joblib.hash(
                    (
                        method,
                        estimator.get_params(),
                        seed,
                        train_key,
                        self.label_kind,
                        _source_hash(method),
                        __version__,
                    )
                )
                fits.append(
                    FitTask(
                        method,
                        params,
                        seed,
                        tuple(train),
                        self.label_kind,
                        self.cache_dir / "models" / f"{method}-{key}{SUFFIX}",
                    )
                )
                tests[(method, seed)] = test_sets
        self.fits = fits
        todo = [task for task in fits if not task.path.exists()]
        with costs.step("train") if costs else contextlib.nullcontext({}) as record:
            _run_tasks(_fit, todo, self.n_jobs, progress("training", len(todo)) if progress and todo else None)
            record["done"] = f"{len(todo)} of {len(fits)} models trained, the rest from the cache"
        self.trained = len(todo)

        scoring: list[tuple[FitTask, TestSet, Path]] = []
        todo: dict[tuple, tuple[TestSet, list[tuple[Path, Path]]]] = {}  # per test run: the models still to score
        for fit in fits:
            for test in tests[(fit.method, fit.seed)]:
                frames = None if test.frames is None else test.frames.tobytes()
                key = joblib.hash((fit.path.stem, run_identity(test.run), frames))
                path = self.cache_dir / "scores" / f"{key}.npz"
                scoring.append((fit, test, path))
                if not path.exists():
                    todo.setdefault((run_identity(test.run), frames), (test, []))[1].append((fit.path, path))
        score_tasks = [ScoreTask(test, tuple(models)) for test, models in todo.values()]
        advance = progress("predicting (runs)", len(score_tasks)) if progress and score_tasks else None
        with costs.step("score") if costs else contextlib.nullcontext({}) as record:
            self.predicted = sum(_run_tasks(_score, score_tasks, self.n_jobs, advance))  # models scored, summed
            record["done"] = f"{self.predicted} of {len(scoring)} model x run scores computed, the rest from the cache"

        rows, frame_rows = [], []
        fit_records = {fit.path: read_record(fit.path) for fit in fits}
        labellers = {method: self._is_labeller(method) for method in self.methods}
        for fit, test, path in scoring:
            rows += self._rows(fit, fit_records[fit.path], test, _read_scores(path), labellers[fit.method], frame_rows)
        return pd.DataFrame(rows), pd.concat(frame_rows, ignore_index=True)

    def _is_labeller(self, method: str) -> bool:
        """Whether a method reproduces the peak labels it trains on by construction.

        That is ``peaks`` with the peakfinder8 settings the training runs were labelled with
        (recorded by ``hitbench label``; the ADC threshold may be left to the fit) and its count
        cut fitted to those labels: with the labeller's counts the fitted cut falls between the rule's
        miss and hit counts, so it calls every non-ambiguous frame as the rule does. Runs labelled on their
        raw multi-panel frames with a geometry (``hitbench label --geometry``) are not: the method sees the
        assembled crop.
        """
        if self.label_kind != "peaks" or registry.load(method) is not PeakCount:
            return False
        settings = _method_estimator(method, self.params.get(method, {}), 0).get_params()
        if settings["min_num_peaks_for_hit"] is not None or settings["max_num_peaks_for_hit"] is not None:
            return False
        given = {key: settings[key] for key in PeakFinder8.param_names() if settings[key] is not None}
        mine = PeakFinder8(**given).record()
        fitted = {"adc_threshold"} if settings["adc_threshold"] is None else set()
        for name in self.train_runs:
            attrs = self.experiment.runs[name].attrs
            recorded = json.loads(str(attrs.get("peakfinder8", "null")))
            if not isinstance(recorded, dict) or attrs.get("geometry"):
                return False
            if any(mine.get(key, float("nan")) != value for key, value in recorded.items() if key not in fitted):
                return False
        return True

    def _rows(
        self, fit: FitTask, record: dict, test: TestSet, scored: dict, labeller: bool, frame_rows: list
    ) -> list[dict]:
        """The results rows of one trained model on one test run: one per label kind the run can be scored against."""
        events = np.arange(test.run.n_frames) if test.frames is None else test.frames
        training_labels = self._labels(test.run, test.experiment, test.run_name)[events]
        frame_rows.append(
            pd.DataFrame(
                {
                    "method": fit.method,
                    "seed": fit.seed,
                    "experiment": test.experiment,
                    "run": test.run_name,
                    "event": events,
                    "label": training_labels,
                    "score": scored["scores"],
                    "predicted": scored["predicted"],
                }
            )
        )
        common = {
            "method": fit.method,
            "labeller": labeller,
            "protocol": test.protocol,
            "train_experiment": self.experiment.name,
            "train_runs": ",".join(self.train_runs),
            "test_experiment": test.experiment,
            "test_run": test.run_name,
            "train_run": test.is_train_run,
            "labels": self.label_kind,
        }
        timing = {
            "n_train": record["n_train"],
            "fit_seconds": record["fit_seconds"],
            "predict_ms_per_frame": scored["predict_ms_per_frame"],
            "frames_per_second": 1e3 / scored["predict_ms_per_frame"]
            if scored["predict_ms_per_frame"]
            else float("inf"),
            "seed": fit.seed,
            "hitbench_version": __version__,
        }
        rows = []
        probability = _method_estimator(fit.method, fit.params, fit.seed).score_is_probability
        for kind in label_sources(test.run, self.label_kind):
            labels = self._labels(test.run, test.experiment, test.run_name, kind)[events]
            keep = labels >= 0
            calls = (labels[keep], scored["predicted"][keep], scored["scores"][keep])
            # the bootstrap's seed: the comparison's seed and what the row is (crc32: the same in every process)
            row_key = zlib.crc32(f"{fit.method}/{test.experiment}/{test.run_name}/{kind}".encode())
            rng = np.random.default_rng([fit.seed, row_key])
            metrics = hit_metrics(*calls) | metric_intervals(*calls, rng)
            rows.append(
                common
                | {
                    "scored_against": kind,
                    "events": int(events.size),
                    "ambiguous": int((~keep).sum()),
                    "scored": int(keep.sum()),
                    "hit_percent": 100.0 * float(labels[keep].mean()) if keep.any() else float("nan"),
                    **{key: metrics[key] for key in ("tp", "fp", "tn", "fn")},
                    **{key: metrics[key] for rate in RATES for key in (rate, f"{rate}_lo", f"{rate}_hi")},
                    "ece": expected_calibration_error(calls[0], calls[2]) if probability else float("nan"),
                }
                | timing
            )
        return rows
