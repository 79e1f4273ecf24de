"""`hitbench report --study-scale`: each method's Table II beside the study's, from synthetic results folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error

from hitbench.bench.metrics import RATES, wilson_interval
from hitbench.bench.results_io import write_results
from hitbench.bench.study import (
    GOAL,
    beside_study,
    load_study,
    misses_with_crystals,
    operating_points,
    sensitivity_by_peaks,
    setting_label,
)
from hitbench.bench.tables import step_table
from hitbench.cli import main

REPO_DOCS = Path(__file__).resolve().parents[1] / "docs"
RUNS = ["90", "91", "92", "93", "94", "95", "96", "98", "99", "100"]
TRAIN = {"90", "91", "92", "93"}
STEPS = [
    {"step": "simulate", "seconds": 100.0, "peak_rss_mb": 900.4},
    {"step": "train", "seconds": 50.5, "peak_rss_mb": 2100.6, "done": "3 of 5 models trained, the rest from the cache"},
    {"step": "score", "seconds": 0.0, "peak_rss_mb": float("nan")},  # no /proc: peak not measured
]


def _results(method: str, shift: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Results, scores and events of one method on the study's runs: confusion counts that depend on the run."""
    rows, scores, events = [], [], []
    for i, run in enumerate(RUNS):
        n = 20 + i
        events += [
            {
                "experiment": "cxi-streptavidin",
                "run": run,
                "event": e,
                "label": e % 2,
                "label_peaks": e % 2,
                "label_truth": e % 2,
                "label_detectable": e % 2,
            }
            for e in range(n)
        ]
        scores += [
            {
                "method": method,
                "seed": 0,
                "experiment": "cxi-streptavidin",
                "run": run,
                "event": e,
                "label": e % 2,
                "score": 0.5,
                "predicted": e % 2,
            }
            for e in range(n)
        ]
        for kind, extra in (("peaks", 0), ("truth", 3)):
            tp, fn, tn, fp = 8 + i % 3 + shift, 2 + extra, 9, 1 + i % 2
            row = {
                "method": method,
                "labeller": False,
                "protocol": "cross-run",
                "train_experiment": "cxi-streptavidin",
                "train_runs": "90,91,92,93",
                "test_experiment": "cxi-streptavidin",
                "test_run": run,
                "train_run": run in TRAIN,
                "labels": "peaks",
                "scored_against": kind,
                "events": n,
                "ambiguous": n - (tp + fn + tn + fp),
                "scored": tp + fn + tn + fp,
                "hit_percent": 100 * (tp + fn) / (tp + fn + tn + fp),
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
                "seed": 0,
            }
            for rate, (k, m) in {
                "sensitivity": (tp, tp + fn),
                "specificity": (tn, tn + fp),
                "accuracy": (tp + tn, tp + fn + tn + fp),
            }.items():
                row[rate] = k / m
                row[f"{rate}_lo"], row[f"{rate}_hi"] = wilson_interval(k, m)
            for rate in set(RATES) - {"sensitivity", "specificity", "accuracy"}:
                row[rate], row[f"{rate}_lo"], row[f"{rate}_hi"] = 0.8, 0.7, 0.9
            rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(scores), pd.DataFrame(events)


def _folder(path: Path, method: str, params: dict, shift: int = 0, **meta: object) -> Path:
    results, scores, events = _results(method, shift)
    write_results(path, results, scores, events)
    record = {
        "command": f"hitbench compare --methods {method} --out {path}",
        "hitbench_version": "0.1.0",
        "params": params,
        **meta,
    }
    (path / "meta.json").write_text(json.dumps(record))
    return path


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(REPO_DOCS / "reference", folder / "reference")
    return folder


def _report(*args: object):
    return CliRunner().invoke(main, ["report", *map(str, args)])


def test_study_table_is_in_the_docs() -> None:
    study = load_study(REPO_DOCS)
    assert list(study.index) == RUNS
    assert study["events"].sum() == 110_891
    assert study.loc["95", "sensitivity"] == pytest.approx(0.9822)
    assert set(study.index[study["role"] == "train"]) == TRAIN


def test_table_beside_the_study_and_differences(tmp_path: Path) -> None:
    results, _, _ = _results("cnn", 0)
    study = load_study(REPO_DOCS)
    table = beside_study(results, "cnn", "peaks", study).set_index("Run")
    assert list(table.index) == ["90*", "91*", "92*", "93*", "94", "95", "96", "98", "99", "100"]
    row = table.loc["95"]
    mine = results[(results["test_run"] == "95") & (results["scored_against"] == "peaks")].iloc[0]
    assert row["Sen"] == pytest.approx(mine["sensitivity"]) and row["Sen_lo"] == pytest.approx(mine["sensitivity_lo"])
    assert (row["study Sen"], row["study Spe"], row["study # events"]) == (0.9822, 0.9728, 12647)
    assert row["study % hit"] == pytest.approx(14.68)
    assert row["Sen - study"] == pytest.approx(mine["sensitivity"] - 0.9822)
    assert row["Spe - study"] == pytest.approx(mine["specificity"] - 0.9728)
    expected = [name for name in ("Sen", "Spe") if abs(row[f"{name} - study"]) <= GOAL]
    assert row["within 0.05"] == (" and ".join(expected) or "neither")
    # the truth rows are scored against another label kind, beside the same study numbers
    truth = beside_study(results, "cnn", "truth", study).set_index("Run")
    assert truth.loc["95", "study Sen"] == 0.9822 and truth.loc["95", "Sen"] < row["Sen"]


def test_setting_labels() -> None:
    assert setting_label("cnn", {"batch_size": 100, "class_weight": None}) == (
        "study settings: batch_size=100, class_weight=None"
    )
    assert setting_label("cnn", {}) == "hitbench defaults"
    assert setting_label("cnn", {"epochs": 5}) == "epochs=5"
    assert setting_label("intensity", {}) == ""


def test_step_table() -> None:
    table = step_table({"steps": [dict(sorted(s.items())) for s in STEPS]})  # meta.json sorts the keys
    assert list(table.columns) == ["Step", "wall s", "peak RSS (MB)", "work done"]
    assert table.iloc[1]["work done"] == STEPS[1]["done"]
    assert table.iloc[-1].tolist() == ["all steps", 150.5, 2101, ""]
    assert table.iloc[2]["peak RSS (MB)"] is pd.NA
    assert step_table({}) is None


def test_page_with_the_study_settings_folder(tmp_path: Path, docs: Path) -> None:
    size = {"frames": 230, "bytes": 23_000_000, "bytes_per_frame": 100_000.0}
    main_folder = _folder(tmp_path / "main", "cnn", {}, steps=STEPS, data_size=size, commit="abc1234")
    faithful = _folder(tmp_path / "faithful", "cnn", {"cnn": {"batch_size": 100, "class_weight": None}}, shift=2)
    result = _report(main_folder, "--study-scale", "--with", faithful, "--docs", docs)
    assert result.exit_code == 0, result.output
    page = (docs / "study-scale.md").read_text()
    assert not (docs / "results.md").exists()
    faithful_at = page.index("## Table II: cnn (study settings: batch_size=100, class_weight=None)")
    default_at = page.index("## Table II: cnn (hitbench defaults)")
    assert faithful_at < default_at  # the study's settings first
    # run 95 of each cnn: hitbench's rates with intervals, then the study's numbers and the differences
    for start, shift in ((faithful_at, 2), (default_at, 0)):
        results, _, _ = _results("cnn", shift)
        mine = results[(results["test_run"] == "95") & (results["scored_against"] == "peaks")].iloc[0]
        line = next(x for x in page[start:].splitlines() if x.startswith("| 95 "))
        cells = [c.strip() for c in line.strip("|").split("|")]
        sen = f"{mine['sensitivity']:.3f} ({mine['sensitivity_lo']:.3f}-{mine['sensitivity_hi']:.3f})"
        assert cells[4] == sen
        assert cells[7:12] == ["12647", "14.680", "0.982", "0.973", "0.974"]
        assert cells[12] == f"{mine['sensitivity'] - 0.9822:.3f}"
        assert cells[13] == f"{mine['specificity'] - 0.9728:.3f}"
    assert "### Scored against peaks" in page and page.index("against peaks") < page.index("against truth")
    assert "| 90*" in page
    score = next(x for x in page.splitlines() if x.startswith("| score"))
    assert score.rstrip(" |").endswith("—")
    total = next(x for x in page.splitlines() if x.startswith("| all steps"))
    assert [c.strip() for c in total.strip("|").split("|")] == ["all steps", "150.500", "2101", ""]
    assert "23,000,000" not in page and "230 frames, 23.0 MB, 100.0 KB per frame" in page
    assert "commit abc1234" in page and "hitbench compare --methods cnn --out" in page
    assert "Step costs (wall time, peak memory): not recorded." in page  # the second folder has none
    assert "not the study's scale" in page
    assert page.count("### Ranking or threshold: the scores at the study's operating point") == 2  # one per cnn


def test_page_without_costs_says_not_recorded(tmp_path: Path, docs: Path) -> None:
    folder = _folder(tmp_path / "main", "intensity", {})
    assert _report(folder, "--study-scale", "--docs", docs).exit_code == 0
    page = (docs / "study-scale.md").read_text()
    assert "simulated data on disk: not recorded" in page and "commit not recorded" in page
    assert "## Table II: intensity\n" in page


def test_user_errors(tmp_path: Path, docs: Path) -> None:
    folder = _folder(tmp_path / "main", "cnn", {})
    (tmp_path / "empty").mkdir()
    assert_one_line_error(_report(tmp_path / "empty", "--study-scale", "--docs", docs), "results.csv: missing")
    assert_one_line_error(_report(folder, "--with", folder, "--docs", docs), "--with: only with --study-scale")
    assert_one_line_error(_report(folder, "--study-scale", "--docs", tmp_path), "study_table2.csv: missing")
    other = _folder(tmp_path / "other", "cnn", {})
    events = pd.read_csv(other / "events.csv.gz")
    events[events["run"] != 100].to_csv(other / "events.csv.gz", index=False)
    assert_one_line_error(_report(folder, "--study-scale", "--with", other, "--docs", docs), "scored other data")
    assert not (docs / "study-scale.md").exists()


def test_sensitivity_by_peak_count_bins_the_hits_and_counts_the_calls() -> None:
    calls = pd.DataFrame(
        {
            "run": ["90"] * 4 + ["95"] * 6,
            "n_peaks": [12, 14, 25, 200, 11, 15, 16, 20, 40, 40],
            "predicted": [0, 1, 1, 1, 1, 1, 0, 0, 1, 0],
            "training_run": [True] * 4 + [False] * 6,
        }
    )
    table = sensitivity_by_peaks(calls).set_index("peaks found")
    assert table.loc["11-15", "hits, training runs*"] == 2 and table.loc["11-15", "Sen, training runs*"] == 0.5
    assert table.loc["11-15", "hits, other runs"] == 2 and table.loc["11-15", "Sen, other runs"] == 1.0
    assert table.loc["16-20", "Sen, other runs"] == 0.0 and table.loc["31-50", "Sen, other runs"] == 0.5
    assert table.loc["101 or more", "hits, training runs*"] == 1
    assert pd.isna(table.loc["51-100", "Sen, other runs"])  # no hits there: undefined, not 0 or 1
    lo, hi = wilson_interval(1, 2)
    assert (table.loc["31-50", "Sen, other runs_lo"], table.loc["31-50", "Sen, other runs_hi"]) == (lo, hi)


def test_operating_points_read_the_roc_at_the_study_rates() -> None:
    """Run 90 (study Sen 0.997, Spe 0.869): misses score 0-9, hits 5-14, ambiguous frames are left out."""
    scores = pd.DataFrame(
        {
            "method": "cnn",
            "seed": 0,
            "experiment": "cxi-streptavidin",
            "run": ["90"] * 22 + ["94"] * 2,
            "event": range(24),
            "label": [0] * 10 + [1] * 10 + [-1, -1] + [1, 1],
            "score": [*range(10), *range(5, 15), 100, 100, 0.2, 0.9],
            "predicted": 0,
        }
    )
    results, _, _ = _results("cnn", 0)
    study = load_study(REPO_DOCS)
    table = operating_points(scores, results, study).set_index("Run")
    assert list(table.index) == ["90*", "94"]
    row = table.loc["90*"]
    assert (row["hits"], row["misses"]) == (10, 10)
    # pairs (hit, miss) ranked right: 87.5 of 100 (ties count half)
    assert row["AUC"] == pytest.approx(0.875)
    # specificity >= 0.869 allows one false alarm of ten: threshold 9 finds the hits 9-14
    assert row["Sen at study Spe"] == pytest.approx(0.6)
    # sensitivity >= 0.997 needs every hit: threshold 5 calls the misses 5-9 hits
    assert row["Spe at study Sen"] == pytest.approx(0.5)
    assert table.loc["94", "study Spe"] == pytest.approx(float(study.loc["94", "specificity"]))
    assert table.loc["94", ["AUC", "Sen at study Spe", "Spe at study Sen"]].isna().all()  # hits only: undefined


def test_misses_with_crystals_bound_the_specificity_by_the_crystals_among_misses() -> None:
    """Run 90: 10 peak-label misses, 4 of them with a crystal (2 detectable), the method calls 3 misses hits."""
    events = pd.DataFrame(
        {
            "experiment": "cxi-streptavidin",
            "run": "90",
            "event": range(12),
            "label_truth": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1],
            "label_detectable": [1, 1, -1, -1, 0, 0, 0, 0, 0, 0, 1, 1],
        }
    )
    scores = pd.DataFrame(
        {
            "method": "cnn",
            "seed": 0,
            "experiment": "cxi-streptavidin",
            "run": "90",
            "event": range(12),
            "label": [0] * 10 + [1, -1],
            "score": 0.5,
            "predicted": [1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1],
        }
    )
    results, _, _ = _results("cnn", 0)
    study = load_study(REPO_DOCS)
    row = misses_with_crystals(scores, events, results, study).set_index("Run").loc["90*"]
    assert (row["misses"], row["with a crystal"], row["with a detectable crystal"]) == (10, 4, 2)
    assert row["called hit"] == pytest.approx(0.3) and row["called hit, of those with a crystal"] == 2
    assert (row["called hit_lo"], row["called hit_hi"]) == wilson_interval(3, 10)
    assert row["Spe if all called hit"] == pytest.approx(0.6)
    assert row["study Spe"] == pytest.approx(float(study.loc["90", "specificity"]))
    assert misses_with_crystals(scores, events.drop(columns="label_truth"), results, study).empty  # real data
