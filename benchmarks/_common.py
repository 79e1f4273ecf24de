"""What the benchmark scripts share: their command line, the record of the machine they ran on, their JSON file.

Every script is run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path`` and a script imports
``from _common import ...``. benchmarks/speed_page.py reads the machine record of :func:`machine`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

from hitbench.atomic import atomic_write
from hitbench.parallel import cpu_info

#: Where the benchmarks' JSON files are committed.
RESULTS = Path("benchmarks/results")
#: The share of each training run's labelled frames ``hitbench compare`` holds out for testing (its default).
HOLDOUT = 0.3


def arguments(doc: str, result: str) -> argparse.ArgumentParser:
    """A benchmark's command line: described by its docstring's first line, with ``--out``.

    Parameters
    ----------
    doc : str
        The script's docstring (``__doc__``).
    result : str
        Name of its JSON file in :data:`RESULTS`, the default of ``--out``.

    Returns
    -------
    argparse.ArgumentParser
        The parser, to which the script adds its own options.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / result, help="JSON file to write (default: %(default)s)")
    return parser


def load_average() -> list[float]:
    """The load averages over 1, 5 and 15 minutes, rounded to 0.01.

    Returns
    -------
    list of float
        ``os.getloadavg()`` rounded.
    """
    return [round(x, 2) for x in os.getloadavg()]


def cpu() -> dict[str, str]:
    """The processor's model and its widest vector instructions (:func:`hitbench.parallel.cpu_info`).

    The same script gives other figures on another processor: TensorFlow's and numba's kernels run twice as many
    floats an instruction with AVX-512 as with AVX2.

    Returns
    -------
    dict
        ``model`` (the ``model name`` line) and ``vector`` (``avx512f``, ``avx2``, ``avx`` or ``sse``); both
        ``unknown`` where ``/proc/cpuinfo`` cannot be read.
    """
    model, flags = cpu_info()
    if not flags:
        return {"model": model, "vector": "unknown"}
    vector = next((isa for isa in ("avx512f", "avx2", "avx") if isa in flags), "sse")
    return {"model": model, "vector": vector}


def machine(load_before: list[float], load_after: list[float] | None = None) -> dict[str, object]:
    """The machine a benchmark ran on and its load before and after the timing.

    Parameters
    ----------
    load_before : list of float
        :func:`load_average` before the timing.
    load_after : list of float, optional
        :func:`load_average` after it (default: now).

    Returns
    -------
    dict
        ``cpus``, ``processor``, ``cpu`` (:func:`cpu`), ``platform``, ``python``, ``load_before`` and
        ``load_after``.
    """
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_before": load_before,
        "load_after": load_average() if load_after is None else load_after,
    }


def write_result(path: Path, result: dict, *, show: bool = True) -> None:
    """Write a benchmark's result as JSON (whole or not at all: :func:`hitbench.atomic.atomic_write`).

    Parameters
    ----------
    path : Path
        The JSON file (its folder is made if missing).
    result : dict
        The figures.
    show : bool
        Print the JSON too (False: print ``wrote <path>``).
    """
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    if show:
        print(text, end="")
    else:
        print(f"wrote {path}")


def training_shares(
    preset: str, scale: float | None, seed: int, cache_dir: Path
) -> list[tuple[object, np.ndarray, np.ndarray]]:
    """The frames ``hitbench compare --seed SEED`` trains on: each training run's peak-labelled frames less the held-out
    :data:`HOLDOUT` (:func:`hitbench.bench.protocols.holdout_split`), of a preset's simulated runs (simulation seed 0,
    from the hitbench cache, simulated and labelled on first use). No held-out frame is read.

    Parameters
    ----------
    preset : str
        The preset.
    scale : float or None
        Fraction of the preset's events (None: its default).
    seed : int
        The comparison's seed (of its hold-out split).
    cache_dir : Path
        The hitbench cache.

    Returns
    -------
    list of (CXIRun, numpy.ndarray, numpy.ndarray)
        Per training run: the run, the indices of its training frames (sorted) and their peak labels.
    """
    from hitbench.bench.data import simulated_experiment
    from hitbench.bench.protocols import holdout_split
    from hitbench.data.dataset import run_labels

    experiment = simulated_experiment(preset, scale=scale, seed=0, cache_dir=cache_dir)
    shares = []
    for name in experiment.train_runs:
        run = experiment.runs[name]
        labels = run_labels(run, "peaks")
        train, _ = holdout_split(labels, HOLDOUT, seed)
        shares.append((run, train, labels[train]))
    return shares
