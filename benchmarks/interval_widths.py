"""How wide the balanced-accuracy intervals of a comparison are, and how many events a run needs for ±0.05.

Reads a results folder written by ``hitbench compare`` and prints, per test run (against the labels the
methods trained with):

- the scored hits and misses, and each method's balanced accuracy with the half-width of its 95 % interval;
- the half-width a method with sensitivity = specificity = 0.9 would get on the run's hits and misses
  (the stratified bootstrap of ``hitbench.bench.metrics``, seed 0);
- the scored events that such a method needs for a half-width of at most ``--target`` (same hit fraction;
  the smallest multiple of the run's scored events found by bisection), and the events (ambiguous frames
  included) that means at the run's ambiguous fraction, and that as a multiple of the run's events now (for a
  training run: of its held-out events).

Usage: ``python benchmarks/interval_widths.py hitbench-results [--target 0.05]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hitbench.bench.metrics import bootstrap_intervals
from hitbench.bench.results_io import load_results
from hitbench.bench.tables import with_run_labels

RATE = 0.9


def half_width(hits: int, misses: int) -> float:
    """Half-width of the 95 % bootstrap interval of a method right on 90 % of the hits and of the misses."""
    labels = np.r_[np.ones(hits, int), np.zeros(misses, int)]
    correct = np.r_[np.arange(hits) < round(RATE * hits), np.arange(misses) < round(RATE * misses)]
    predicted = np.where(correct, labels, 1 - labels)
    bounds = bootstrap_intervals(labels, predicted, predicted.astype(float), np.random.default_rng(0))
    return (bounds["balanced_accuracy_hi"] - bounds["balanced_accuracy_lo"]) / 2


def factor_needed(hits: int, misses: int, target: float) -> float:
    """The smallest multiple of a run's scored frames (same hit fraction) for a half-width <= target."""
    low, high = 0.0, 1.0
    while half_width(round(high * hits), round(high * misses)) > target:
        low, high = high, 2 * high
    while high - low > 0.01 * high:
        middle = (low + high) / 2
        if half_width(max(1, round(middle * hits)), max(1, round(middle * misses))) > target:
            low = middle
        else:
            high = middle
    return high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--target", type=float, default=0.05)
    args = parser.parse_args()
    results = with_run_labels(load_results(args.results)[0])
    results = results[results["scored_against"] == results["labels"]]
    methods = list(dict.fromkeys(results["method"]))
    needed = "0.9 method | scored needed | events needed | x now"
    print(f"run | events | scored | hits | misses | {' | '.join(methods)} | {needed}")
    for run, rows in results.groupby("test_run", sort=False):
        first = rows.iloc[0]
        hits, misses = int(first["tp"] + first["fn"]), int(first["tn"] + first["fp"])
        cells = []
        for method in methods:
            row = rows[rows["method"] == method].iloc[0]
            width = (row["balanced_accuracy_hi"] - row["balanced_accuracy_lo"]) / 2
            cells.append(f"{row['balanced_accuracy']:.3f} ±{width:.3f}")
        factor = factor_needed(hits, misses, args.target) if hits and misses else float("nan")
        scored = int(first["scored"])
        events = int(first["events"])
        print(
            f"{run} | {events} | {scored} | {hits} | {misses} | {' | '.join(cells)} | "
            f"±{half_width(hits, misses):.3f} | {factor * scored:.0f} | {factor * events:.0f} | {factor:.2f}"
        )


if __name__ == "__main__":
    main()
