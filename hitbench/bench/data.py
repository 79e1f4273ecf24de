"""The data a comparison runs on: a user's folder, or a simulated preset generated once and cached.

Simulated experiments are written under ``<cache>/simulated/<name>-<hash>/`` where the hash
covers the preset file's content, the scale, the seed and hitbench's version; a second
comparison with the same settings reuses the files. A file lock serialises two comparisons
that want the same experiment at once, and each run file appears only when complete, so an
interrupted simulation resumes with the runs still missing.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import pandas as pd
from filelock import FileLock

from hitbench import __version__
from hitbench.bench.costs import StepCosts
from hitbench.data.assembled import assembled_experiment
from hitbench.data.cxi import CXIRun
from hitbench.data.dataset import Experiment, ImageRun, label_sources, open_experiment, run_labels
from hitbench.data.detector import DetectorGeometry
from hitbench.data.geom import read_geom
from hitbench.errors import HitbenchError

if TYPE_CHECKING:
    from hitbench.peaks import PeakFinder8


def default_cache_dir() -> Path:
    """``$HITBENCH_CACHE``, else ``~/.cache/hitbench``."""
    return Path(os.environ.get("HITBENCH_CACHE", Path.home() / ".cache" / "hitbench"))


def _unlabelled(experiment: Experiment, finder: PeakFinder8) -> list[CXIRun]:
    """The runs without labels, or labelled by another finder than ``finder`` or by other code of it (a cache of an
    older hitbench: :func:`hitbench.peaks.labels.finder_code`)."""
    from hitbench.peaks.labels import finder_code

    wanted, code = finder.record(), finder_code()
    return [
        run
        for run in experiment.runs.values()
        if isinstance(run, CXIRun)
        and (
            "label" not in run.fields
            or json.loads(run.attrs.get("peakfinder8", "{}")) != wanted
            or run.attrs.get("peakfinder8_code") != code
        )
    ]


def _label(
    runs: list[CXIRun],
    finder: PeakFinder8,
    n_jobs: int,
    advance: Callable[[], None] | None,
    geometry: DetectorGeometry | None = None,
) -> None:
    from hitbench.peaks.labels import label_run

    for run in runs:
        label_run(run.path, finder, n_jobs=n_jobs, geometry=geometry)
        if advance is not None:
            advance()


def simulated_experiment(
    preset: str,
    *,
    scale: float | None,
    seed: int,
    cache_dir: Path,
    n_jobs: int = 1,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
    costs: StepCosts | None = None,
) -> Experiment:
    """A preset's simulated runs, generated and peak-labelled on first use, then cached.

    Parameters
    ----------
    preset : str
        Preset name or experiment TOML file.
    scale : float or None
        Fraction of the preset's events (None: the preset's default).
    seed : int
        Simulation seed.
    cache_dir : Path
        The hitbench cache folder.
    n_jobs : int
        joblib workers for simulation and peak finding.
    progress : callable, optional
        ``progress(description, total)`` returning a per-step callback.
    costs : StepCosts, optional
        Records the cost of the steps "simulate" and "peak labels" when they run.

    Returns
    -------
    Experiment
        The runs, with the simulator's truth and the peak-finder labels. A detector of whole panels
        (``detector.panels``) is labelled on its raw frames with the geometry written beside them, and its
        runs are read as the assembled crop of the preset's ``frame_shape`` (:class:`AssembledRun`).
    """
    from hitbench.peaks.labels import label_finder
    from hitbench.simulate import load_experiment, write_experiment
    from hitbench.simulate.runs import FILE_FORMAT, geom_file_name, run_file_name

    spec = load_experiment(preset)
    key = joblib.hash((spec, scale, seed, __version__, FILE_FORMAT))[:12]
    folder = Path(cache_dir) / "simulated" / f"{spec.name}-{key}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HitbenchError(f"{cache_dir}: cannot create the cache ({exc.strerror}); set HITBENCH_CACHE") from None
    with FileLock(str(folder) + ".lock"):
        missing = [run for run in spec.runs if not (folder / run_file_name(run)).exists()]
        if missing:
            total = sum(spec.n_frames(run, scale) for run in missing)
            advance = progress(f"simulating {spec.name} (frames)", total) if progress else None
            with costs.step("simulate") if costs else contextlib.nullcontext():
                write_experiment(spec, folder, runs=missing, scale=scale, seed=seed, n_jobs=n_jobs, progress=advance)
        experiment = open_experiment(folder)
        geometry = read_geom(folder / geom_file_name(spec)) if spec.detector.panels else None
        finder = label_finder(spec.detector.gain_adu_per_photon)
        unlabelled = _unlabelled(experiment, finder)
        if unlabelled:
            advance = progress(f"finding peaks in {spec.name}", len(unlabelled)) if progress else None
            with costs.step("peak labels") if costs else contextlib.nullcontext():
                _label(unlabelled, finder, n_jobs, advance, geometry)
            experiment = open_experiment(folder)
    if geometry is not None:
        experiment = assembled_experiment(experiment, geometry, spec.frame_shape[0])
    experiment.train_runs = [str(run) for run in spec.train_runs]
    return experiment


def events_table(experiments: list[Experiment], label_kind: str) -> pd.DataFrame:
    """One row per event of every run: its label and, where the run has them, peak count, truth and other labels.

    Parameters
    ----------
    experiments : list of Experiment
        The experiments.
    label_kind : {"peaks", "truth"}
        The labels used for training.

    Returns
    -------
    pandas.DataFrame
        Columns experiment, run, event, label (``label_kind``), ``label_<kind>`` for every label
        kind the run can be scored against (:func:`hitbench.data.dataset.label_sources`), n_peaks,
        hit (truth), n_cosmic_rays (truth of a simulated detector that records them); missing values as NaN.
    """
    parts = []
    for experiment in experiments:
        for name, run in experiment.runs.items():
            part = {
                "experiment": experiment.name,
                "run": name,
                "event": range(run.n_frames),
                "label": run_labels(run, label_kind),
            }
            part |= {f"label_{kind}": run_labels(run, kind) for kind in label_sources(run, label_kind)}
            if isinstance(run, CXIRun):
                for field in ("n_peaks", "hit", "n_cosmic_rays"):
                    if field in run.fields:
                        part[field] = run.field(field)
            elif isinstance(run, ImageRun):
                part["hit"] = run.labels
            parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)
