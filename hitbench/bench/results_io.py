"""Reading and writing a results folder of ``hitbench compare``: the tidy tables and ``meta.json``.

- ``results.csv`` / ``results.json``: one row per method × seed × test run × label kind scored against
  (the tidy table; rates with their 95 % bounds in ``<rate>_lo``/``<rate>_hi``),
- ``scores.csv.gz``: one row per method × seed × scored event (score, call, training label),
- ``events.csv.gz``: one row per event of every run (labels of every kind, peak count where known),
- ``meta.json``: the command, version, settings and the cost of each step.

Every table and figure (:mod:`hitbench.bench.tables`, :mod:`hitbench.bench.figures`) is derived from them.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pandas as pd

from hitbench.atomic import atomic_write
from hitbench.errors import HitbenchError

#: Columns of results.csv, scores.csv.gz and events.csv.gz that every row must fill.
RESULT_COLUMNS = (
    (
        "method",
        "labeller",
        "protocol",
        "test_experiment",
        "test_run",
        "train_run",
        "labels",
        "scored_against",
        "events",
        "ambiguous",
        "scored",
        "tp",
        "fp",
        "tn",
        "fn",
        "seed",
    ),
    ("method", "seed", "experiment", "run", "event", "label", "score", "predicted"),
    ("experiment", "run", "event", "label"),
)


def write_text(path: Path, text: str) -> None:
    """Write text atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def load_results(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read a results folder written by ``hitbench compare``.

    Parameters
    ----------
    folder : Path
        The results folder.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame, pandas.DataFrame)
        Results, per-frame scores and per-event data.
    """
    folder = Path(folder)
    needed = [folder / "results.csv", folder / "scores.csv.gz", folder / "events.csv.gz"]
    for path in needed:
        if not path.is_file():
            raise HitbenchError(f"{path}: missing; give a folder written by `hitbench compare --out`")
    try:
        results = pd.read_csv(needed[0], dtype={"test_run": str, "train_runs": str})
        scores = pd.read_csv(needed[1], dtype={"run": str})
        events = pd.read_csv(needed[2], dtype={"run": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
        raise HitbenchError(f"{folder}: results files unreadable ({exc}); rerun `hitbench compare`") from None
    for path, table, columns in zip(needed, (results, scores, events), RESULT_COLUMNS, strict=True):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise HitbenchError(
                f"{path}: no column(s) {', '.join(missing)}; give a folder written by `hitbench compare` "
                "(truncated or from an older version? rerun it)"
            )
        if table[list(columns)].isna().any().any():
            raise HitbenchError(f"{path}: rows with missing values (truncated?); rerun `hitbench compare`")
    return results, scores, events


def write_results(folder: Path, results: pd.DataFrame, scores: pd.DataFrame, events: pd.DataFrame) -> None:
    """Write the tidy tables of a comparison (CSV and JSON), each atomically.

    Parameters
    ----------
    folder : Path
        The results folder.
    results, scores, events : pandas.DataFrame
        The tables.
    """
    atomic_write(folder / "results.csv", lambda tmp: results.to_csv(tmp, index=False, na_rep="NaN"))
    atomic_write(
        folder / "results.json",
        lambda tmp: tmp.write_text(results.to_json(orient="records", indent=1, double_precision=10)),
    )
    for name, table in (("scores", scores), ("events", events)):
        data = gzip.compress(table.to_csv(index=False).encode(), mtime=0)  # no name or time: same bytes each run
        atomic_write(folder / f"{name}.csv.gz", lambda tmp, d=data: tmp.write_bytes(d))


def read_meta(folder: Path) -> dict:
    """The ``meta.json`` of a results folder (command, version, settings; empty when there is none).

    Parameters
    ----------
    folder : Path
        Results folder written by ``hitbench compare``.

    Returns
    -------
    dict
        Its content.
    """
    meta_path = Path(folder) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HitbenchError(f"{meta_path}: not valid JSON ({exc}); rerun `hitbench compare` or remove it") from None
    if not isinstance(meta, dict):
        raise HitbenchError(f"{meta_path}: not a JSON object; rerun `hitbench compare` or remove it")
    return meta
