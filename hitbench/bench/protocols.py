"""Evaluation protocols: which runs a method trains on and which it is tested on.

- cross-run (the reference study's Table II): train on some runs of an experiment, test on
  every run. Frames of the training runs are split (stratified, seeded) into a training part
  and a held-out part; the training runs' rows score the held-out part only, so no row
  scores a frame the model was trained on.
- cross-experiment: the same trained model, tested on every run of other experiments
  (other simulated presets, or real frames through the data layer).

Ambiguous frames (label -1) are dropped from training and scoring; the tables say how many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from hitbench.data.dataset import Experiment, Run


@dataclass(frozen=True)
class TestSet:
    """One run a trained model is tested on.

    Parameters
    ----------
    protocol : str
        ``"cross-run"`` or ``"cross-experiment"``.
    experiment : str
        Name of the run's experiment.
    run_name : str
        Name of the run.
    run : CXIRun or ImageRun
        The run.
    frames : numpy.ndarray or None
        Indices of the frames to score (None = all).
    is_train_run : bool
        Whether the model trained on (other frames of) this run.
    """

    protocol: str
    experiment: str
    run_name: str
    run: Run
    frames: np.ndarray | None
    is_train_run: bool


def holdout_split(labels: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a training run's labelled frames into training and held-out indices.

    Parameters
    ----------
    labels : numpy.ndarray
        1 hit, 0 miss, -1 ambiguous, per frame.
    holdout : float
        Fraction of the labelled frames held out for testing.
    seed : int
        Seed of the stratified split.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted frame indices for training and for testing. Ambiguous frames are in the
        held-out set (they are counted there, never scored) and never in training.
    """
    labelled = np.flatnonzero(labels >= 0)
    ambiguous = np.flatnonzero(labels < 0)
    classes = labels[labelled]
    stratify = classes if np.bincount(classes, minlength=2).min() >= 2 else None
    train, test = train_test_split(labelled, test_size=holdout, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(np.concatenate([test, ambiguous]))


def cross_run_test_sets(
    experiment: Experiment, train_runs: list[str], test_runs: list[str], held_out: dict[str, np.ndarray]
) -> list[TestSet]:
    """The cross-run protocol's test sets.

    Parameters
    ----------
    experiment : Experiment
        The experiment trained on.
    train_runs : list of str
        Its training runs.
    test_runs : list of str
        The runs to test on.
    held_out : dict of str to numpy.ndarray
        Held-out frame indices of each training run.

    Returns
    -------
    list of TestSet
        One per test run.
    """
    return [
        TestSet("cross-run", experiment.name, name, experiment.runs[name], held_out.get(name), name in train_runs)
        for name in test_runs
    ]


def cross_experiment_test_sets(experiments: list[Experiment]) -> list[TestSet]:
    """The cross-experiment protocol's test sets: every run of the other experiments.

    Parameters
    ----------
    experiments : list of Experiment
        Experiments the model did not train on.

    Returns
    -------
    list of TestSet
        One per run.
    """
    return [
        TestSet("cross-experiment", exp.name, name, run, None, False)
        for exp in experiments
        for name, run in exp.runs.items()
    ]
