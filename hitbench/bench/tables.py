"""Tables derived from the tidy results of a comparison (:mod:`hitbench.bench.results_io`).

The reference study's Table II per method, a methods × runs summary (balanced accuracy, with the
significantly best method per run), the calibration of the methods whose score is P(hit) (expected
calibration error per run), McNemar's tests between every two methods, the peak labels against the
simulator's truth, the spread over seeds, a speed table and the cost of each step.
Rates carry their 95 % bounds in ``<column>_lo``/``<column>_hi`` columns; :mod:`hitbench.bench.display`
shows them. ``hitbench report`` reruns this on saved results; nothing is typed by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from hitbench.atomic import atomic_write
from hitbench.bench.display import markdown
from hitbench.bench.metrics import holm, mcnemar_exact, wilson_interval
from hitbench.bench.results_io import write_text
from hitbench.data.dataset import MIN_DETECTABLE_SPOTS
from hitbench.labelrule import RULE_TEXT

#: Display names of the rates in tables (each with ``_lo``/``_hi`` bounds).
RATE_COLUMNS = {
    "sensitivity": "Sen",
    "specificity": "Spe",
    "accuracy": "Acc",
    "balanced_accuracy": "BAcc",
    "auc": "AUC",
}
TABLE2_COLUMNS = {
    "test_run": "Run",
    "scored_against": "scored against",
    "events": "# events",
    "ambiguous": "ambiguous",
    "hit_percent": "% hit",
    **RATE_COLUMNS,
    "ece": "ECE",
}
#: Label kinds rows can be scored against, in table order, and what they mean.
SCORED_AGAINST = {
    "peaks": f"the peak labels (the study's protocol: peakfinder8, {RULE_TEXT}, else ambiguous)",
    "truth": "the simulator's truth (a crystal was in the beam)",
    "detectable": f"the detectable truth (no crystal: miss; a crystal with >= {MIN_DETECTABLE_SPOTS} spots the "
    f"simulator counts as detectable: hit; a crystal with fewer: left out)",
}
#: Family-wise error rate of the paired tests (after Holm's correction).
ALPHA = 0.05


def _run_label(row: pd.Series) -> str:
    name = str(row["test_run"])
    if row["protocol"] == "cross-experiment":
        return f"{row['test_experiment']}/{name}"
    return f"{name}*" if row["train_run"] else name


def with_run_labels(results: pd.DataFrame) -> pd.DataFrame:
    """A copy of the results whose ``test_run`` is the name shown in tables.

    Training runs are marked ``90*`` (scored on their held-out frames); runs of other
    experiments read ``experiment/run``.
    """
    rows = results.copy()
    rows["test_run"] = rows.apply(_run_label, axis=1) if len(rows) else rows["test_run"]
    return rows


def method_names(results: pd.DataFrame) -> dict[str, str]:
    """The name each method has in tables: ``peaks (labeller)`` for the method that made the labels.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.

    Returns
    -------
    dict of str to str
        Method to display name, in the results' order.
    """
    labeller = results.groupby("method", sort=False)["labeller"].any()
    return {method: f"{method} (labeller)" if marked else method for method, marked in labeller.items()}


def label_kinds(results: pd.DataFrame) -> list[str]:
    """The label kinds the rows are scored against, in table order (:data:`SCORED_AGAINST`)."""
    return [kind for kind in SCORED_AGAINST if kind in set(results["scored_against"])]


def run_rates(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method, test run and label kind: counts and rates averaged over seeds.

    A rate's bounds are the lowest lower and highest upper bound over the seeds (with one seed,
    its 95 % interval).
    """
    rows = with_run_labels(results)
    aggregate = {"events": "mean", "ambiguous": "mean", "scored": "mean", "hit_percent": "mean"}
    for rate in RATE_COLUMNS:
        aggregate |= {rate: "mean", f"{rate}_lo": "min", f"{rate}_hi": "max"}
    if "ece" in rows:  # results written before the calibration column have none
        aggregate["ece"] = "mean"
    table = rows.groupby(["method", "test_run", "scored_against"], sort=False).agg(aggregate).reset_index()
    table[["events", "ambiguous", "scored"]] = table[["events", "ambiguous", "scored"]].round().astype(int)
    return table


def _renamed(table: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Rename columns, their ``_lo``/``_hi`` bounds with them."""
    bounds = {f"{old}{end}": f"{new}{end}" for old, new in names.items() for end in ("_lo", "_hi")}
    return table.rename(columns=names | bounds)


def table2(results: pd.DataFrame, method: str) -> pd.DataFrame:
    """The reference study's Table II for one method, against every label kind the runs have.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.
    method : str
        Method name.

    Returns
    -------
    pandas.DataFrame
        Columns Run, scored against, # events, ambiguous, % hit, then Sen, Spe, Acc, BAcc and
        AUC each followed by its 95 % bounds (``Sen_lo``, ``Sen_hi``, ...), and ECE (expected
        calibration error) for a method whose score is P(hit); one row per run and
        label kind. Training runs are marked with ``*`` (scored on their held-out frames), other
        experiments' runs read ``experiment/run``. With several seeds: means over the seeds,
        bounds from the lowest to the highest bound of any seed.
    """
    table = run_rates(results[results["method"] == method])
    columns = {key: name for key, name in TABLE2_COLUMNS.items() if key != "ece" or _has_ece(table)}
    return _renamed(with_bounds(table, columns), columns)


def _run_blocks(
    results: pd.DataFrame, per_run: pd.DataFrame, methods: Iterable[str]
) -> Iterator[tuple[str, pd.DataFrame, dict[str, pd.DataFrame]]]:
    """Per label kind: the kind, the block's first columns (Run, scored against) and each method's runs in that order.

    The shared frame of :func:`calibration` and :func:`summary`: one block of runs per label kind, the runs in the
    order the results first name them; a method without a run's result has NaN there.
    """
    for kind in label_kinds(results):
        rows = per_run[per_run["scored_against"] == kind]
        order = list(dict.fromkeys(rows["test_run"]))
        values = {m: rows[rows["method"] == m].set_index("test_run").reindex(order) for m in methods}
        yield kind, pd.DataFrame({"Run": order, "scored against": kind}), values


def _has_ece(rows: pd.DataFrame) -> bool:
    """Whether rows hold an expected calibration error (a method whose score is P(hit))."""
    return "ece" in rows and bool(rows["ece"].notna().any())


def calibration(results: pd.DataFrame) -> pd.DataFrame:
    """Expected calibration error of P(hit) of every method whose score is P(hit), on every test run.

    Other methods' scores are not probabilities (a count, an SVM margin) and are left out: no
    calibrator is fitted for them.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.

    Returns
    -------
    pandas.DataFrame
        Columns Run, scored against, then one ECE column per such method (mean over seeds), one
        block of runs per label kind, each ending with its mean; empty when no method gives P(hit).
    """
    per_run = run_rates(results)
    if not _has_ece(per_run):
        return pd.DataFrame()
    names = {m: n for m, n in method_names(results).items() if _has_ece(per_run[per_run["method"] == m])}
    blocks = []
    for kind, block, values in _run_blocks(results, per_run, names):
        for method, name in names.items():
            block[f"{name} ECE"] = values[method]["ece"].to_numpy()
        mean = {"Run": f"mean ({len(block)} runs)", "scored against": kind}
        mean |= {column: block[column].mean() for column in block.columns[2:]}
        blocks += [block, pd.DataFrame([mean])]
    return pd.concat(blocks, ignore_index=True)


def with_bounds(table: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """The given columns of a table, each with its ``_lo``/``_hi`` bounds where it has them, in table order.

    Parameters
    ----------
    table : pandas.DataFrame
        A table with bounds in ``<column>_lo``/``<column>_hi`` columns.
    columns : iterable of str
        The columns to keep.

    Returns
    -------
    pandas.DataFrame
        Those columns and their bounds.
    """
    keep = set(columns)
    return table[[c for c in table.columns if c.removesuffix("_lo").removesuffix("_hi") in keep]]


def _mean_label(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return f"mean ({low} runs)" if low == high else f"mean ({low}-{high} runs)"


def summary(results: pd.DataFrame, best: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Balanced accuracy of every method on every test run, one block of runs per label kind.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.
    best : dict, optional
        The significantly best method per (run, label kind) (:func:`significantly_best`);
        given, it fills a last column ``significantly best``.

    Returns
    -------
    pandas.DataFrame
        Columns Run, scored against, then per method its balanced accuracy and bounds
        (``<method>``, ``<method>_lo``, ``<method>_hi``). Each block ends with the mean over
        the runs where balanced accuracy is defined, labelled ``mean (n runs)``.
    """
    per_run = run_rates(results)
    names = method_names(results)
    blocks = []
    for kind, block, values in _run_blocks(results, per_run, names):
        for method, name in names.items():
            block[name] = values[method]["balanced_accuracy"].to_numpy()
            block[f"{name}_lo"] = values[method]["balanced_accuracy_lo"].to_numpy()
            block[f"{name}_hi"] = values[method]["balanced_accuracy_hi"].to_numpy()
        if best is not None:
            block["significantly best"] = [best.get((run, kind), "none") for run in block["Run"]]
        mean = {"Run": _mean_label(block[list(names.values())].notna().sum()), "scored against": kind}
        mean |= {name: block[name].mean() for name in names.values()}
        if best is not None:
            mean["significantly best"] = ""
        blocks += [block, pd.DataFrame([mean])]
    return pd.concat(blocks, ignore_index=True)


def seed_spread(results: pd.DataFrame) -> pd.DataFrame:
    """Balanced accuracy of every method on every test run across seeds: mean, lowest and highest.

    Each seed trains anew and draws its own held-out frames of the training runs, so the
    spread shows how much a figure of one training depends on chance.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results (several seeds).

    Returns
    -------
    pandas.DataFrame
        One row per test run and label kind (columns Run, scored against); for each method the
        columns ``<method> mean``, ``<method> min`` and ``<method> max``.
    """
    rows = with_run_labels(results)
    names = method_names(results)
    stats = rows.groupby(["test_run", "scored_against", "method"], sort=False)["balanced_accuracy"]
    table = stats.agg(["mean", "min", "max"]).unstack("method")
    order = [(run, kind) for kind in label_kinds(rows) for run in rows["test_run"].unique()]
    table = table.reindex([key for key in order if key in table.index])
    table = table.reindex(columns=[(stat, m) for m in names for stat in ("mean", "min", "max")])
    table.columns = [f"{names[m]} {stat}" for stat, m in table.columns]
    return table.rename_axis(["Run", "scored against"]).reset_index()


def speed(results: pd.DataFrame) -> pd.DataFrame:
    """Training and prediction speed per method (prediction averaged over test runs, frame-weighted).

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.

    Returns
    -------
    pandas.DataFrame
        Method, training frames, fit seconds, predict ms/frame, frames/s.
    """
    names = method_names(results)
    out = []
    for method, rows in results.groupby("method", sort=False):
        ms = float(np.average(rows["predict_ms_per_frame"], weights=rows["events"]))
        out.append(
            {
                "Method": names[method],
                "training frames": int(rows["n_train"].iloc[0]),
                "fit s": float(rows.groupby("seed")["fit_seconds"].first().mean()),
                "predict ms/frame": ms,
                "frames/s": 1e3 / ms if ms else float("inf"),
            }
        )
    return pd.DataFrame(out)


def pairs(results: pd.DataFrame, scores: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """McNemar's exact test between every two methods on every test run and label kind, Holm-corrected.

    The two methods' calls are compared on the same scored frames (same seed, same run); the
    test is a two-sided binomial test on the frames exactly one of them calls right. Holm's
    correction runs over every test in the table.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.
    scores : pandas.DataFrame
        Per-frame calls (``scores.csv.gz``).
    events : pandas.DataFrame
        Per-event labels of every kind (``events.csv.gz``, columns ``label_<kind>``).

    Returns
    -------
    pandas.DataFrame
        Columns Run, scored against, seed, A, B, ``A right, B wrong``, ``B right, A wrong``,
        p, p (Holm) and better (the method right more often where p (Holm) < :data:`ALPHA`,
        else ``none``); no rows with fewer than two methods.
    """
    names = method_names(results)
    run_names = {(r.test_experiment, str(r.test_run)): _run_label(r) for _, r in results.iterrows()}
    keys = ["seed", "experiment", "run"]
    rows = []
    for kind in label_kinds(results):
        labels = events[["experiment", "run", "event", f"label_{kind}"]]
        frames = scores.merge(labels, on=["experiment", "run", "event"], how="inner")
        frames = frames[frames[f"label_{kind}"] >= 0]
        frames = frames.assign(correct=frames["predicted"] == frames[f"label_{kind}"])
        for (seed, experiment, run), group in frames.groupby(keys, sort=False):
            calls = group.pivot(index="event", columns="method", values="correct")
            present = [m for m in names if m in calls.columns]
            for i, a in enumerate(present):
                for b in present[i + 1 :]:
                    a_only, b_only, p = mcnemar_exact(calls[a].to_numpy(), calls[b].to_numpy())
                    rows.append(
                        {
                            "Run": run_names[(experiment, str(run))],
                            "scored against": kind,
                            "seed": seed,
                            "A": names[a],
                            "B": names[b],
                            "A right, B wrong": a_only,
                            "B right, A wrong": b_only,
                            "p": p,
                            "winner": names[a] if a_only > b_only else names[b],
                        }
                    )
    table = pd.DataFrame(
        rows, columns=["Run", "scored against", "seed", "A", "B", "A right, B wrong", "B right, A wrong", "p", "winner"]
    )
    table["p (Holm)"] = holm(table["p"].to_numpy())
    table["better"] = table["winner"].where(table["p (Holm)"] < ALPHA, "none")
    return table.drop(columns="winner")


def significantly_best(pair_table: pd.DataFrame) -> dict[tuple[str, str], str]:
    """The method that beats every other one on a run (McNemar, after Holm), per run and label kind.

    Parameters
    ----------
    pair_table : pandas.DataFrame
        The paired tests (:func:`pairs`).

    Returns
    -------
    dict of (str, str) to str
        (Run, scored against) to the method's name, or ``none`` where no method is better than
        every other (with several seeds: the same method on every seed).
    """
    best = {}
    for (run, kind), tests in pair_table.groupby(["Run", "scored against"], sort=False):
        per_seed = set()
        for _, seed_tests in tests.groupby("seed"):
            rivals = len(set(seed_tests["A"]) | set(seed_tests["B"])) - 1
            wins = seed_tests["better"].value_counts()
            per_seed.add(next((m for m, n in wins.items() if m != "none" and n == rivals), "none"))
        best[(run, kind)] = per_seed.pop() if len(per_seed) == 1 else "none"
    return best


def labels_table(events: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """How the peak labels of every simulated run compare with the simulator's truth.

    Parameters
    ----------
    events : pandas.DataFrame
        Per-event labels (``events.csv.gz``, columns ``label_peaks``, ``label_truth`` and
        ``label_detectable``).
    experiment : str
        The training experiment (its runs are named plainly, others ``experiment/run``).

    Returns
    -------
    pandas.DataFrame
        Per run with both labels, then all of them together: events, crystals (frames with a
        crystal in the beam), detectable (crystals with enough detectable spots), the peak
        labels (hit, miss, ambiguous) of frames with and without a crystal, and the labels'
        sensitivity and specificity against the truth (on the frames they do not leave out)
        and sensitivity against the detectable truth, each with its 95 % Wilson bounds.
        Empty when no run has both labels.
    """
    needed = {"label_peaks", "label_truth", "label_detectable"}
    if not needed <= set(events.columns):
        return pd.DataFrame()
    known = events.dropna(subset=sorted(needed))
    groups = [(name, rows) for name, rows in known.groupby(["experiment", "run"], sort=False)]
    groups.append((None, known))
    out = []
    for key, rows in groups:
        peak, crystal = rows["label_peaks"], rows["label_truth"] == 1
        row = {
            "Run": "all runs" if key is None else key[1] if key[0] == experiment else f"{key[0]}/{key[1]}",
            "events": len(rows),
            "crystals": int(crystal.sum()),
            "detectable": int((rows["label_detectable"] == 1).sum()),
        }
        for inside, word in ((crystal, "crystal"), (~crystal, "no crystal")):
            for value, call in ((1, "hit"), (0, "miss"), (-1, "ambiguous")):
                row[f"{word}: {call}"] = int((inside & (peak == value)).sum())
        rates = {
            "Sen": (row["crystal: hit"], row["crystal: hit"] + row["crystal: miss"]),
            "Spe": (row["no crystal: miss"], row["no crystal: miss"] + row["no crystal: hit"]),
            "Sen (detectable)": (
                int(((rows["label_detectable"] == 1) & (peak == 1)).sum()),
                int(((rows["label_detectable"] == 1) & (peak >= 0)).sum()),
            ),
        }
        for name, (k, n) in rates.items():
            row |= share(name, k, n)
        out.append(row)
    return pd.DataFrame(out)


def share(name: str, k: int, n: int) -> dict[str, float]:
    """A share ``k / n`` as a table's cells: the value (NaN without frames) and its 95 % Wilson bounds.

    Parameters
    ----------
    name : str
        The column.
    k, n : int
        Frames counted and frames in all.

    Returns
    -------
    dict of str to float
        ``name``, ``name_lo`` and ``name_hi``.
    """
    low, high = wilson_interval(k, n)
    return {name: k / n if n else float("nan"), f"{name}_lo": low, f"{name}_hi": high}


def comparison_tables(results: pd.DataFrame, scores: pd.DataFrame, events: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table of a comparison, by file stem.

    Table II per method (``table2_<method>``), the summary, the calibration (``calibration``,
    methods whose score is P(hit)), the paired tests (``pairs``, two methods or more), the peak
    labels against the truth (``labels``, simulated runs), the spread
    over seeds (``seeds``, several seeds) and the speed table.

    Parameters
    ----------
    results, scores, events : pandas.DataFrame
        The tidy tables.

    Returns
    -------
    dict of str to pandas.DataFrame
        The tables.
    """
    out = {f"table2_{m}": table2(results, m) for m in dict.fromkeys(results["method"])}
    pair_table = pairs(results, scores, events)
    several = results["method"].nunique() > 1
    out["summary"] = summary(results, significantly_best(pair_table) if several else None)
    calibrated = calibration(results)
    if not calibrated.empty:
        out["calibration"] = calibrated
    if several:
        out["pairs"] = pair_table
    labels = labels_table(events, str(results["train_experiment"].iloc[0]))
    if not labels.empty:
        out["labels"] = labels
    if results["seed"].nunique() > 1:
        out["seeds"] = seed_spread(results)
    out["speed"] = speed(results)
    return out


def table_title(stem: str, results: pd.DataFrame) -> str:
    """The heading of a table (by file stem), with the method's table name for Table II."""
    if stem.startswith("table2_"):
        return f"Table II: {method_names(results)[stem.removeprefix('table2_')]}"
    return {
        "summary": "Balanced accuracy, methods x runs",
        "calibration": "Expected calibration error of P(hit)",
        "pairs": "Paired comparisons (McNemar's exact test, Holm-corrected)",
        "labels": "Peak labels against the simulator's truth",
        "seeds": "Balanced accuracy over seeds",
        "speed": "Speed",
    }[stem]


def write_tables(
    folder: Path, results: pd.DataFrame, scores: pd.DataFrame, events: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Write every table of :func:`comparison_tables` as Markdown and CSV (undefined values as NaN).

    Parameters
    ----------
    folder : Path
        Output folder (``tables/`` is created in it).
    results, scores, events : pandas.DataFrame
        The tidy tables.

    Returns
    -------
    dict of str to pandas.DataFrame
        The tables by file stem.
    """
    written = comparison_tables(results, scores, events)
    for stem, table in written.items():
        write_text(folder / "tables" / f"{stem}.md", markdown(table))
        atomic_write(folder / "tables" / f"{stem}.csv", lambda tmp, t=table: t.to_csv(tmp, index=False, na_rep="NaN"))
    return written


#: Columns of the step-cost table and their names in it.
STEP_COLUMNS = {"step": "Step", "seconds": "wall s", "peak_rss_mb": "peak RSS (MB)", "done": "work done"}


def step_table(meta: dict) -> pd.DataFrame | None:
    """The wall time and peak memory of each step as ``meta.json`` records them (``steps``), with a total.

    Parameters
    ----------
    meta : dict
        A results folder's ``meta.json``.

    Returns
    -------
    pandas.DataFrame or None
        Columns Step, wall s, peak RSS (MB), work done (what the step did, where it says) and any further
        field a step records; a last row ``all steps`` (wall time summed, the highest peak). None when not
        recorded.
    """
    steps = meta.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        return None
    table = pd.DataFrame(steps)
    total: dict[str, object] = {"step": "all steps"}
    if "seconds" in table:
        total["seconds"] = table["seconds"].sum()
    if "peak_rss_mb" in table:
        total["peak_rss_mb"] = table["peak_rss_mb"].max()
    if "done" in table:
        table["done"] = table["done"].fillna("")  # steps that did not say (the simulation: all of it)
        total["done"] = ""
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    if "peak_rss_mb" in table:
        table["peak_rss_mb"] = table["peak_rss_mb"].round().astype("Int64")
    known = [c for c in STEP_COLUMNS if c in table.columns]
    return table[known + [c for c in table.columns if c not in known]].rename(columns=STEP_COLUMNS)
