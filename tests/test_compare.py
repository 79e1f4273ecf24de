"""End to end: `hitbench compare` on the tiny preset, its numbers checked against the confusion counts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error

from hitbench.bench.figures import write_figures
from hitbench.bench.metrics import RATES, hit_metrics, wilson_interval
from hitbench.bench.results_io import load_results, read_meta
from hitbench.cli import main

ARGS = ["compare", "--preset", "tiny", "--methods", "intensity,litpix", "--train-runs", "1-2", "--seed", "3"]
TIMING = ["fit_seconds", "predict_ms_per_frame", "frames_per_second"]


def _compare(out: Path, cache: Path, *extra: str):
    result = CliRunner().invoke(main, [*ARGS, "--out", str(out), "--cache-dir", str(cache), *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("compare")
    result = _compare(root / "out", root / "cache")
    return root / "out", root / "cache", result.output


def test_tables_agree_with_confusion_counts(first_run: tuple[Path, Path, str]) -> None:
    out, _, output = first_run
    results, scores, events = load_results(out)
    assert set(results["method"]) == {"intensity", "litpix"}
    assert set(results["test_run"]) == {"1", "2", "3", "4"}
    assert list(dict.fromkeys(results["scored_against"])) == ["peaks", "truth", "detectable"]
    assert (results["labels"] == "peaks").all() and not results["labeller"].any()
    assert "Table II: intensity" in output and "Table II: litpix" in output
    for row in results.itertuples():
        frames = scores[(scores["method"] == row.method) & (scores["run"] == row.test_run)]
        assert len(frames) == row.events
        frames = frames.merge(events[events["run"] == row.test_run], on=["experiment", "run", "event"])
        labels = frames[f"label_{row.scored_against}"]
        kept = frames[labels >= 0]
        assert row.ambiguous == (labels < 0).sum() and row.scored == len(kept)
        truth = kept[f"label_{row.scored_against}"].to_numpy()
        expected = hit_metrics(truth, kept["predicted"].to_numpy(), kept["score"].to_numpy())
        for key, value in expected.items():
            assert getattr(row, key) == pytest.approx(value, nan_ok=True), key
        assert row.tp + row.fn == (truth == 1).sum()
        assert row.hit_percent == pytest.approx(100 * truth.mean())
        for rate in RATES:
            low, value, high = getattr(row, f"{rate}_lo"), getattr(row, rate), getattr(row, f"{rate}_hi")
            assert np.isnan(low) == np.isnan(value) and (np.isnan(value) or low <= value <= high), rate
        assert (row.sensitivity_lo, row.sensitivity_hi) == pytest.approx(wilson_interval(row.tp, row.tp + row.fn))
        # a training run is scored on its held-out frames only; the others on every event
        run_events = events[events["run"] == row.test_run]
        assert row.events < len(run_events) if row.train_run else row.events == len(run_events)
    table = pd.read_csv(out / "tables" / "table2_intensity.csv", dtype={"Run": str})
    table = table[table["scored against"] == "peaks"]
    rows = results[(results["method"] == "intensity") & (results["scored_against"] == "peaks")]
    assert list(table["Run"]) == ["1*", "2*", "3", "4"]
    np.testing.assert_allclose(table["Sen"], rows["tp"] / (rows["tp"] + rows["fn"]))
    np.testing.assert_allclose(table["Spe"], rows["tn"] / (rows["tn"] + rows["fp"]))
    np.testing.assert_allclose(table["Acc"], (rows["tp"] + rows["tn"]) / rows["scored"])
    np.testing.assert_allclose(table[["BAcc_lo", "BAcc_hi"]], rows[["balanced_accuracy_lo", "balanced_accuracy_hi"]])
    np.testing.assert_array_equal(table["# events"], rows["events"])
    # the tiny preset's hits are bright: lit pixels separate them on the runs it did not train on
    litpix = results[(results["method"] == "litpix") & ~results["train_run"]]
    assert (litpix["balanced_accuracy"] > 0.8).all()
    for name in ("confusion_matrices", "sensitivity_specificity", "roc", "example_frames", "peaks_per_event"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


@pytest.mark.slow
def test_cached_rerun_trains_nothing_and_same_seed_same_tables(
    first_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    out, cache, _ = first_run
    again = _compare(tmp_path / "again", cache)
    assert "trained 0 model(s), scored 0 run(s)" in again.output
    for folder, trained in ((out, 2), (tmp_path / "again", 0)):  # meta.json: what each step did, not only its cost
        steps = {step["step"]: step.get("done") for step in read_meta(folder)["steps"]}
        assert steps["train"] == f"{trained} of 2 models trained, the rest from the cache"
        assert steps["score"].startswith(f"{4 * trained} of 8 model x run scores computed")
    fresh = tmp_path / "fresh"
    _compare(fresh, tmp_path / "cache", "--n-jobs", "2")
    for name in ("table2_intensity.md", "table2_litpix.md", "summary.md", "summary.csv", "table2_litpix.csv"):
        assert (out / "tables" / name).read_bytes() == (fresh / "tables" / name).read_bytes(), name
        assert (out / "tables" / name).read_bytes() == (tmp_path / "again" / "tables" / name).read_bytes(), name
    first = pd.read_csv(out / "results.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(first, pd.read_csv(fresh / "results.csv").drop(columns=TIMING))
    assert (out / "scores.csv.gz").read_bytes() == (fresh / "scores.csv.gz").read_bytes()


@pytest.mark.slow
def test_several_seeds_give_their_spread(first_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, cache, _ = first_run
    out = tmp_path / "seeds"
    _compare(out, cache, "--seed", "3,4")
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["seed"].unique()) == [3, 4]
    spread = pd.read_csv(out / "tables" / "seeds.csv", dtype={"Run": str})
    assert list(spread.columns[:5]) == ["Run", "scored against", "intensity mean", "intensity min", "intensity max"]
    for method in ("intensity", "litpix"):
        rows = results[(results["method"] == method) & (results["test_run"].astype(str) == "4")]
        rows = rows[rows["scored_against"] == "truth"]
        row = spread[(spread["Run"] == "4") & (spread["scored against"] == "truth")].iloc[0]
        assert row[f"{method} min"] == pytest.approx(rows["balanced_accuracy"].min())
        assert row[f"{method} max"] == pytest.approx(rows["balanced_accuracy"].max())
        assert row[f"{method} mean"] == pytest.approx(rows["balanced_accuracy"].mean())
    # Table II of several seeds: the mean, bounds from the lowest to the highest bound of any seed
    table = pd.read_csv(out / "tables" / "table2_litpix.csv", dtype={"Run": str})
    row = table[(table["Run"] == "4") & (table["scored against"] == "detectable")].iloc[0]
    rows = results[(results["method"] == "litpix") & (results["test_run"].astype(str) == "4")]
    rows = rows[rows["scored_against"] == "detectable"]
    assert len(rows) == 2 and row["BAcc"] == pytest.approx(rows["balanced_accuracy"].mean())
    assert rows["balanced_accuracy_lo"].nunique() == 2  # each seed draws its own bootstrap resamples
    assert (row["BAcc_lo"], row["BAcc_hi"]) == (rows["balanced_accuracy_lo"].min(), rows["balanced_accuracy_hi"].max())
    assert (out / "tables" / "seeds.md").exists()
    assert not (first_run[0] / "tables" / "seeds.md").exists()  # one seed: no spread table


def test_report_writes_docs(first_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    out, _, _ = first_run
    result = CliRunner().invoke(main, ["report", str(out), "--docs", str(tmp_path / "docs")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "docs" / "results.md").read_text()
    assert "## Table II: litpix" in page and "![roc](img/results/roc.png)" in page
    assert (out / "tables" / "summary.md").read_text().strip() in page
    assert (tmp_path / "docs" / "img" / "results" / "roc.png").is_file()


def test_figures_change_no_process_state(first_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    import matplotlib

    out, _, _ = first_run
    backend = dict.__getitem__(matplotlib.rcParams, "backend")  # as set, without resolving it
    had_pyplot = "matplotlib.pyplot" in sys.modules
    written = write_figures(out, *load_results(out), tmp_path)
    assert [p.name for p in written] == [
        f"{name}.png"
        for name in ("confusion_matrices", "sensitivity_specificity", "roc", "example_frames", "peaks_per_event")
    ]
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend  # no matplotlib.use
    assert had_pyplot or "matplotlib.pyplot" not in sys.modules


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--methods", "nosuch"], "unknown method 'nosuch'"),
        (["--param", "intensity.nosuch=3"], "no such parameter"),
        (["--param", "garbage"], "METHOD.NAME=VALUE"),
        (["--train-runs", "7-9"], "selects no run"),
        (["--preset", "nosuch-preset"], "nosuch-preset"),
        (["--seed", "x"], "--seed"),
    ],
)
def test_bad_options_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    base = [
        "compare",
        "--preset",
        "tiny",
        "--methods",
        "intensity",
        "--out",
        str(tmp_path / "o"),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    if "--preset" in args:
        base = base[:1] + base[3:]
    assert_one_line_error(CliRunner().invoke(main, base + args), fragment)


def test_meta_names_the_source_commit(first_run: tuple[Path, Path, str]) -> None:
    """meta.json records the git commit of the hitbench source that ran (pages name the code); none outside git."""
    import subprocess

    import hitbench

    out, _, _ = first_run
    source = Path(hitbench.__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    in_git = head.returncode == 0 and (source / ".git").exists()
    commit = read_meta(out).get("commit")
    if in_git:
        assert commit is not None and commit.removesuffix("+dirty") == head.stdout.strip()
    else:
        assert commit is None


def test_cached_models_follow_the_compiled_kernels_they_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trained model in the cache is keyed by its method's source, kernels imported only at run time included:
    changing ``_cnn_kernel.py`` (the cnn's training input and scoring) retrains the cnn."""
    from hitbench.bench.runner import _method_sources, _source_hash

    _, kernels = _method_sources("cnn")
    assert {"_cnn_kernel.py", "_row_norm_pool.py"} <= {path.name for path in kernels}
    _, kernels = _method_sources("peaks")
    assert ("peaks", "_kernels.py") in {(path.parent.name, path.name) for path in kernels}
    before = _source_hash("cnn")
    read_text = Path.read_text
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self, *a, **k: read_text(self, *a, **k) + ("#" if self.name == "_cnn_kernel.py" else ""),
    )
    assert _source_hash("cnn") != before
