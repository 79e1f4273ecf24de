"""Per-frame hit/miss calls of every method on one experiment, as a Markdown table (docs/robustness).

Reads the ``scores.csv.gz`` written by ``hitbench compare --out OUT`` and writes one row per
labelled frame (ambiguous frames dropped, as in the comparison): the frame's label and each
method's call (``hit``/``miss``, marked ``✗`` when it disagrees with the label), plus a last
row counting each method's correct calls.

Usage: python benchmarks/robustness_calls.py OUT/scores.csv.gz EXPERIMENT OUTPUT.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from hitbench.bench.results_io import write_text


def calls_table(scores: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """One row per labelled frame of ``experiment``, one column per method.

    Parameters
    ----------
    scores : pandas.DataFrame
        The comparison's per-frame scores (columns method, seed, experiment, run, event, label, predicted).
    experiment : str
        The experiment whose frames are tabulated.

    Returns
    -------
    pandas.DataFrame
        Columns run, event, label and one per method; a last row "correct" with n/N per method.
    """
    part = scores[
        (scores["experiment"] == experiment) & (scores["label"] >= 0) & (scores["seed"] == scores["seed"].min())
    ]
    if part.empty:
        raise SystemExit(
            f"{experiment}: no labelled frames in the scores; experiments: {sorted(set(scores.experiment))}"
        )
    word = {1: "hit", 0: "miss"}
    part = part.assign(
        call=[word[p] + ("" if p == lab else " ✗") for p, lab in zip(part.predicted, part.label, strict=True)]
    )
    table = part.pivot_table(index=["run", "event", "label"], columns="method", values="call", aggfunc="first")
    table = table.reset_index()
    table["label"] = table["label"].map(word)
    correct = (part.predicted == part.label).groupby(part.method).agg(["sum", "size"])
    total = {m: f"{int(r['sum'])}/{int(r['size'])}" for m, r in correct.iterrows()}
    return pd.concat([table, pd.DataFrame([{"run": "correct", "event": "", "label": "", **total}])], ignore_index=True)


def main(argv: list[str]) -> None:
    scores_path, experiment, output = argv
    table = calls_table(pd.read_csv(scores_path), experiment)
    write_text(Path(output), f"# Per-frame calls: {experiment}\n\n" + table.to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
