"""Intervals, undefined rates, paired tests and the labeller mark of the comparison tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hitbench.bench.display import display, markdown
from hitbench.bench.metrics import (
    hit_metrics,
    holm,
    mcnemar_exact,
    metric_intervals,
    wilson_interval,
)
from hitbench.bench.runner import Comparison
from hitbench.bench.tables import pairs, significantly_best, summary, table2, table_title
from hitbench.cli import main
from hitbench.data.cxi_write import write_cxi
from hitbench.data.dataset import Experiment, open_experiment
from hitbench.peaks import PeakFinder8


def test_wilson_interval_known_values() -> None:
    # Newcombe (1998), Stat. Med. 17:857, table I: 81/263 -> 0.2553-0.3662, 15/148 -> 0.0624-0.1605
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    assert wilson_interval(0, 10)[0] == 0 and 0 < wilson_interval(0, 10)[1] < 0.31
    assert np.isnan(wilson_interval(0, 0)).all()


def _frames(seed: int = 0, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = labels + rng.normal(0, 0.7, n)
    return labels, (scores > 0.5).astype(int), scores


def test_bootstrap_intervals_reproducible_for_a_seed_and_not_across_seeds() -> None:
    labels, predicted, scores = _frames()
    first = metric_intervals(labels, predicted, scores, np.random.default_rng([0, 7]))
    again = metric_intervals(labels, predicted, scores, np.random.default_rng([0, 7]))
    other = metric_intervals(labels, predicted, scores, np.random.default_rng([1, 7]))
    assert json.dumps(first) == json.dumps(again)
    assert first["balanced_accuracy_lo"] != other["balanced_accuracy_lo"] and first["auc_hi"] != other["auc_hi"]
    # Wilson intervals do not depend on the seed
    assert first["sensitivity_lo"] == other["sensitivity_lo"]
    point = hit_metrics(labels, predicted, scores)
    for rate in ("balanced_accuracy", "auc"):
        assert first[f"{rate}_lo"] < point[rate] < first[f"{rate}_hi"]
        assert first[f"{rate}_hi"] - first[f"{rate}_lo"] < 0.25


def test_one_class_leaves_balanced_accuracy_and_auc_undefined() -> None:
    misses = np.zeros(20, int)
    metrics = hit_metrics(misses, np.r_[np.zeros(15, int), np.ones(5, int)], np.arange(20.0))
    assert np.isnan(metrics["sensitivity"]) and metrics["specificity"] == 0.75
    assert np.isnan(metrics["balanced_accuracy"]) and np.isnan(metrics["auc"])
    intervals = metric_intervals(misses, np.zeros(20, int), np.arange(20.0), np.random.default_rng(0))
    assert np.isnan([intervals[k] for k in ("sensitivity_lo", "balanced_accuracy_hi", "auc_lo")]).all()
    assert intervals["specificity_lo"] == pytest.approx(wilson_interval(20, 20)[0])


def _results(bacc: dict[str, list[float]], labeller: str | None = None) -> pd.DataFrame:
    """Synthetic results: one row per method and run (runs 1-3 against the peak labels)."""
    rows = []
    for method, values in bacc.items():
        for run, value in zip(("1", "2", "3"), values, strict=True):
            rate = {
                f"{r}{end}": np.nan
                for r in ("sensitivity", "specificity", "accuracy", "auc")
                for end in ("", "_lo", "_hi")
            }
            rows.append(
                rate
                | {
                    "method": method,
                    "labeller": method == labeller,
                    "protocol": "cross-run",
                    "train_experiment": "e",
                    "test_experiment": "e",
                    "test_run": run,
                    "train_run": False,
                    "labels": "peaks",
                    "scored_against": "peaks",
                    "events": 50,
                    "ambiguous": 0,
                    "scored": 50,
                    "hit_percent": np.nan if np.isnan(value) else 40.0,
                    "balanced_accuracy": value,
                    "balanced_accuracy_lo": value - 0.05,
                    "balanced_accuracy_hi": min(value + 0.05, 1.0),
                    "seed": 0,
                }
            )
    return pd.DataFrame(rows)


def test_run_without_hits_reads_dash_and_is_left_out_of_the_mean() -> None:
    results = _results({"intensity": [0.8, np.nan, 0.9], "svm": [0.6, np.nan, 0.7]})
    table = summary(results)
    assert list(table["Run"]) == ["1", "2", "3", "mean (2 runs)"]
    assert table.loc[3, "intensity"] == pytest.approx(0.85) and table.loc[3, "svm"] == pytest.approx(0.65)
    shown = display(table)
    assert shown.loc[1, "intensity"] == "—" and shown.loc[0, "intensity"] == "0.800 (0.750-0.850)"
    assert shown.loc[3, "intensity"] == "0.850"
    assert "| 2             | peaks            |                   — |" in markdown(table)
    csv = table.to_csv(index=False, na_rep="NaN")
    assert "2,peaks,NaN,NaN,NaN,NaN,NaN,NaN" in csv
    row = display(table2(results, "intensity")).iloc[1]
    assert row["BAcc"] == "—" and row["Sen"] == "—"


def test_mcnemar_on_constructed_calls() -> None:
    # A right and B wrong on 10 frames, the reverse on 2, both right on 30 and both wrong on 5
    a = np.r_[np.ones(10), np.zeros(2), np.ones(30), np.zeros(5)].astype(bool)
    b = np.r_[np.zeros(10), np.ones(2), np.ones(30), np.zeros(5)].astype(bool)
    a_only, b_only, p = mcnemar_exact(a, b)
    assert (a_only, b_only) == (10, 2)
    assert p == pytest.approx(2 * (66 + 12 + 1) / 2**12)  # two-sided binomial, 12 discordant frames
    assert mcnemar_exact(a, a) == (0, 0, 1.0)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def _events_and_scores(labels: np.ndarray, calls: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs 1-3 of experiment ``e``, each of the frames ``labels`` (label kind peaks): their per-event labels and
    each method's per-frame ``calls`` (seed 0), as ``events.csv.gz`` and ``scores.csv.gz`` hold them."""
    runs, events_per_run = ("1", "2", "3"), np.arange(len(labels))
    events = pd.DataFrame({"experiment": "e", "run": np.repeat(runs, len(labels)), "event": np.tile(events_per_run, 3)})
    events["label"] = events["label_peaks"] = np.tile(labels, 3)
    frame = {"seed": 0, "experiment": "e", "event": events_per_run, "label": labels, "score": 0.0}
    scores = pd.concat(
        [pd.DataFrame({"method": m, **frame, "run": run, "predicted": calls[m]}) for m in calls for run in runs]
    )
    return events, scores


def test_pairs_name_the_better_method_after_holm() -> None:
    results = _results({"a": [0.9, 0.9, 0.9], "b": [0.5, 0.5, 0.5], "c": [0.9, 0.9, 0.9]})
    labels = np.r_[np.ones(20), np.zeros(20)].astype(int)
    calls = {"a": labels, "b": np.r_[np.zeros(20), np.zeros(20)].astype(int), "c": labels}
    calls["c"] = np.where(np.arange(40) < 3, 1 - labels, labels)  # c wrong on 3 frames: no clear difference from a
    events, scores = _events_and_scores(labels, calls)
    table = pairs(results, scores, events)
    assert len(table) == 9  # 3 pairs x 3 runs
    first = table.iloc[0]
    assert (first["A"], first["B"], first["A right, B wrong"], first["B right, A wrong"]) == ("a", "b", 20, 0)
    assert first["p (Holm)"] == pytest.approx(min(1, 9 * first["p"]))
    assert set(table.loc[table["A"].eq("a") & table["B"].eq("b"), "better"]) == {"a"}
    assert set(table.loc[table["A"].eq("a") & table["B"].eq("c"), "better"]) == {"none"}
    assert significantly_best(table) == dict.fromkeys([("1", "peaks"), ("2", "peaks"), ("3", "peaks")], "none")
    table.loc[table["A"].eq("a") & table["B"].eq("c"), "better"] = "a"
    assert significantly_best(table)[("2", "peaks")] == "a"


def test_labeller_is_marked_in_every_table() -> None:
    results = _results({"litpix": [0.9, 0.8, 0.9], "peaks": [1.0, 1.0, 1.0]}, labeller="peaks")
    results["n_train"], results["fit_seconds"], results["predict_ms_per_frame"] = 100, 1.0, 1.0
    assert table_title("table2_peaks", results) == "Table II: peaks (labeller)"
    assert "peaks (labeller)" in summary(results).columns
    labels = np.array([0, 1])
    events, scores = _events_and_scores(labels, {"litpix": labels, "peaks": labels})
    assert set(pairs(results, scores, events)["B"]) == {"peaks (labeller)"}


def _labelled_runs(tmp_path: Path, settings: dict) -> Experiment:
    for run in (1, 2):
        write_cxi(
            tmp_path / f"r{run}.cxi",
            np.zeros((4, 16, 16), np.float32),
            attrs={"run": run, "peakfinder8": json.dumps(settings)},
            fields={"label": np.array([0, 1, 0, 1]), "hit": np.array([0, 1, 0, 1])},
        )
    return open_experiment(tmp_path)


@pytest.mark.parametrize(
    ("method", "params", "label_kind", "expected"),
    [
        ("peaks", {}, "peaks", True),
        ("peaks", {"adc_threshold": 50.0}, "peaks", True),
        ("peaks", {"min_snr": 6.0}, "peaks", False),
        ("peaks", {"min_num_peaks_for_hit": 5}, "peaks", False),
        ("peaks", {}, "truth", False),
        ("litpix", {}, "peaks", False),
    ],
)
def test_labeller_is_peaks_with_the_recorded_settings(
    tmp_path: Path, method: str, params: dict, label_kind: str, expected: bool
) -> None:
    recorded = {k: None if v == np.inf else v for k, v in PeakFinder8().get_params().items()}
    experiment = _labelled_runs(tmp_path, recorded)
    comparison = Comparison(
        methods=[method],
        params={method: params},
        experiment=experiment,
        train_runs=["1", "2"],
        test_runs=["1", "2"],
        other_experiments=[],
        label_kind=label_kind,
    )
    assert comparison._is_labeller(method) is expected


def test_labeller_scores_one_against_its_labels_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "compare",
        "--preset",
        "tiny",
        "--methods",
        "litpix,peaks",
        "--train-runs",
        "1-2",
        "--seed",
        "3",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Table II: peaks (labeller)" in result.output
    results = pd.read_csv(out / "results.csv")
    peaks = results[results["method"] == "peaks"]
    assert peaks["labeller"].all() and not results.loc[results["method"] == "litpix", "labeller"].any()
    against_labels = peaks[peaks["scored_against"] == "peaks"]
    assert (against_labels["balanced_accuracy"] == 1.0).all()
    for stem in ("summary", "pairs", "speed"):
        assert "peaks (labeller)" in (out / "tables" / f"{stem}.md").read_text(), stem
    assert "peaks (labeller)" in (out / "tables" / "summary.csv").read_text()
