"""Tables and figures derived from the tidy results of a comparison.

Everything here reads a results folder written by ``hitbench compare``:

- ``results.csv`` / ``results.json``: one row per method × seed × test run × label kind scored against
  (the tidy table; rates with their 95 % bounds in ``<rate>_lo``/``<rate>_hi``),
- ``scores.csv.gz``: one row per method × seed × scored event (score, call, training label),
- ``events.csv.gz``: one row per event of every run (labels of every kind, peak count where known),
- ``examples.npz``: a few hit and miss frames for the example figure,

and derives the reference study's Table II per method, a methods × runs summary (balanced
accuracy, with the significantly best method per run), McNemar's tests between every two methods,
the peak labels against the simulator's truth, a speed table and the figures. Markdown and the
terminal show a rate with its interval as ``0.953 (0.921-0.975)`` and an undefined one as ``—``;
CSV keeps the bounds as columns and NaN. ``hitbench report`` reruns this on saved results;
nothing is typed by hand.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from hitbench.atomic import atomic_write
from hitbench.bench.metrics import N_RESAMPLES, holm, mcnemar_exact, wilson_interval
from hitbench.data.dataset import MIN_DETECTABLE_SPOTS
from hitbench.errors import HitbenchError

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
}
#: Label kinds rows can be scored against, in table order, and what they mean.
SCORED_AGAINST = {
    "peaks": "the peak labels (the study's protocol: peakfinder8, < 2 peaks miss, > 10 hit, else ambiguous)",
    "truth": "the simulator's truth (a crystal was in the beam)",
    "detectable": f"the detectable truth (no crystal: miss; a crystal with >= {MIN_DETECTABLE_SPOTS} spots the "
    f"simulator counts as detectable: hit; a crystal with fewer: left out)",
}
#: Family-wise error rate of the paired tests (after Holm's correction).
ALPHA = 0.05
#: Columns of tables holding p-values (shown with two significant digits).
P_COLUMNS = ("p", "p (Holm)")

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


def _scored_against(results: pd.DataFrame) -> list[str]:
    return [kind for kind in SCORED_AGAINST if kind in set(results["scored_against"])]


def _per_run(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method, test run and label kind: counts and rates averaged over seeds.

    A rate's bounds are the lowest lower and highest upper bound over the seeds (with one seed,
    its 95 % interval).
    """
    rows = with_run_labels(results)
    aggregate = {"events": "mean", "ambiguous": "mean", "scored": "mean", "hit_percent": "mean"}
    for rate in RATE_COLUMNS:
        aggregate |= {rate: "mean", f"{rate}_lo": "min", f"{rate}_hi": "max"}
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
        AUC each followed by its 95 % bounds (``Sen_lo``, ``Sen_hi``, ...); one row per run and
        label kind. Training runs are marked with ``*`` (scored on their held-out frames), other
        experiments' runs read ``experiment/run``. With several seeds: means over the seeds,
        bounds from the lowest to the highest bound of any seed.
    """
    table = _per_run(results[results["method"] == method])
    columns = [c for c in table.columns if c.removesuffix("_lo").removesuffix("_hi") in TABLE2_COLUMNS]
    return _renamed(table[columns], TABLE2_COLUMNS)


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
    per_run = _per_run(results)
    names = method_names(results)
    blocks = []
    for kind in _scored_against(results):
        rows = per_run[per_run["scored_against"] == kind]
        order = list(dict.fromkeys(rows["test_run"]))
        block = pd.DataFrame({"Run": order, "scored against": kind})
        for method, name in names.items():
            values = rows[rows["method"] == method].set_index("test_run").reindex(order)
            block[name] = values["balanced_accuracy"].to_numpy()
            block[f"{name}_lo"] = values["balanced_accuracy_lo"].to_numpy()
            block[f"{name}_hi"] = values["balanced_accuracy_hi"].to_numpy()
        if best is not None:
            block["significantly best"] = [best.get((run, kind), "none") for run in order]
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
    order = [(run, kind) for kind in _scored_against(rows) for run in rows["test_run"].unique()]
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
    for kind in _scored_against(results):
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
    table = pd.DataFrame(rows, columns=["Run", "scored against", "seed", "A", "B", "A right, B wrong",
                                        "B right, A wrong", "p", "winner"])
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
            row[name] = k / n if n else float("nan")
            row[f"{name}_lo"], row[f"{name}_hi"] = wilson_interval(k, n)
        out.append(row)
    return pd.DataFrame(out)


def _cell(value: object, column: str) -> str:
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        return "—"
    if isinstance(value, bool | np.bool_ | int | np.integer):
        return str(value)
    return f"{value:.2g}" if column in P_COLUMNS else f"{value:.3f}"


def display(table: pd.DataFrame) -> pd.DataFrame:
    """A table as shown in Markdown and the terminal: text cells, a value with bounds as ``0.953 (0.921-0.975)``.

    Rates read with three decimals and p-values with two significant digits; an undefined value
    (NaN) reads ``—``, and a value whose bounds are undefined is shown alone.

    Parameters
    ----------
    table : pandas.DataFrame
        A table from this module (bounds in ``<column>_lo``/``<column>_hi`` columns).

    Returns
    -------
    pandas.DataFrame
        The same rows, one text column per value column.
    """
    shown = {}
    for column in table.columns:
        if column.endswith(("_lo", "_hi")) and column[:-3] in table.columns:
            continue
        cells = [_cell(v, column) for v in table[column]]
        if f"{column}_lo" in table.columns:
            bounds = zip(table[f"{column}_lo"], table[f"{column}_hi"], strict=True)
            cells = [
                cell if np.isnan(lo) or cell == "—" else f"{cell} ({lo:.3f}-{hi:.3f})"
                for cell, (lo, hi) in zip(cells, bounds, strict=True)
            ]
        shown[column] = cells
    return pd.DataFrame(shown, columns=list(shown))


def markdown(table: pd.DataFrame) -> str:
    """A table as Markdown (the form written to files and docs), cells as :func:`display` writes them."""
    shown = display(table)
    align = ["right" if pd.api.types.is_numeric_dtype(table[column]) else "left" for column in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


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


def tables(results: pd.DataFrame, scores: pd.DataFrame, events: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table of a comparison, by file stem.

    Table II per method (``table2_<method>``), the summary, the paired tests (``pairs``, two
    methods or more), the peak labels against the truth (``labels``, simulated runs), the spread
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
        "pairs": "Paired comparisons (McNemar's exact test, Holm-corrected)",
        "labels": "Peak labels against the simulator's truth",
        "seeds": "Balanced accuracy over seeds",
        "speed": "Speed",
    }[stem]


def write_tables(
    folder: Path, results: pd.DataFrame, scores: pd.DataFrame, events: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Write every table of :func:`tables` as Markdown and CSV (undefined values as NaN).

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
    written = tables(results, scores, events)
    for stem, table in written.items():
        write_text(folder / "tables" / f"{stem}.md", markdown(table))
        atomic_write(folder / "tables" / f"{stem}.csv", lambda tmp, t=table: t.to_csv(tmp, index=False, na_rep="NaN"))
    return written


def write_figures(
    folder: Path, results: pd.DataFrame, scores: pd.DataFrame, events: pd.DataFrame, out: Path
) -> list[Path]:
    """Draw the comparison's figures as PNG files.

    Parameters
    ----------
    folder : Path
        The results folder (for ``examples.npz``).
    results, scores, events : pandas.DataFrame
        The tidy tables.
    out : Path
        Folder for the PNG files.

    Returns
    -------
    list of Path
        The figures written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    written: list[Path] = []

    def save(fig: plt.Figure, name: str) -> None:
        path = out / name
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
        plt.close(fig)
        written.append(path)

    names = method_names(results)
    methods = list(names)
    # FIG. 5 of the study: confusion matrices on the training runs (held-out frames) and on the other runs,
    # against the labels the methods trained with
    trained = results[results["scored_against"] == results["labels"]]
    groups = {
        "training runs (held out)": trained["train_run"] & (trained["protocol"] == "cross-run"),
        "other runs": ~trained["train_run"] & (trained["protocol"] == "cross-run"),
        "other experiments": trained["protocol"] == "cross-experiment",
    }
    groups = {k: v for k, v in groups.items() if v.any()}
    fig, axes = plt.subplots(len(methods), len(groups), figsize=(3.2 * len(groups), 2.9 * len(methods)), squeeze=False)
    for i, method in enumerate(methods):
        for j, (title, selected) in enumerate(groups.items()):
            rows = trained[selected & (trained["method"] == method)]
            matrix = np.array([[rows["tn"].sum(), rows["fp"].sum()], [rows["fn"].sum(), rows["tp"].sum()]])
            ax = axes[i, j]
            ax.imshow(matrix / max(1, matrix.sum()), cmap="Blues", vmin=0, vmax=1)
            for (r, c), value in np.ndenumerate(matrix):
                ax.text(c, r, str(value), ha="center", va="center")
            ax.set_xticks([0, 1], ["miss", "hit"])
            ax.set_yticks([0, 1], ["miss", "hit"])
            ax.set_xlabel("predicted")
            ax.set_ylabel(f"label ({trained['labels'].iloc[0]})")
            ax.set_title(f"{names[method]}: {title}", fontsize=9)
    fig.tight_layout()
    save(fig, "confusion_matrices.png")

    per_run = _per_run(results[results["protocol"] == "cross-run"])
    if not per_run.empty:
        kinds = _scored_against(per_run)
        rates = ("sensitivity", "specificity", "balanced_accuracy")
        fig, axes = plt.subplots(len(kinds), 3, figsize=(15, 3.4 * len(kinds)), sharey=True, squeeze=False)
        for row, kind in zip(axes, kinds, strict=True):
            for k, method in enumerate(methods):
                values = per_run[(per_run["method"] == method) & (per_run["scored_against"] == kind)]
                x = np.arange(len(values)) + 0.12 * (k - (len(methods) - 1) / 2)  # methods side by side
                for ax, rate in zip(row, rates, strict=True):
                    error = np.clip([values[rate] - values[f"{rate}_lo"], values[f"{rate}_hi"] - values[rate]], 0, None)
                    ax.errorbar(x, values[rate], yerr=error, fmt="o", ms=3, capsize=2, label=names[method])
                    ax.set_xticks(np.arange(len(values)), values["test_run"])
            for ax, rate in zip(row, rates, strict=True):
                ax.set_title(f"{RATE_COLUMNS[rate]} against {kind}, 95 % interval", fontsize=9)
                ax.set_ylim(-0.02, 1.02)
                ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle("per run (* = training run, held-out frames)")
        fig.tight_layout()
        save(fig, "sensitivity_specificity.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    scored = scores[scores["label"] >= 0]
    for method in methods:
        rows = scored[(scored["method"] == method) & (scored["seed"] == scored["seed"].min())]
        if rows["label"].nunique() == 2:
            fpr, tpr, _ = roc_curve(rows["label"], rows["score"])
            ax.plot(fpr, tpr, label=names[method])
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC, all scored frames")
    ax.legend()
    fig.tight_layout()
    save(fig, "roc.png")

    examples = folder / "examples.npz"
    if examples.is_file():
        data = np.load(examples)
        frames, labels = data["frames"], data["labels"]
        fig, axes = plt.subplots(2, frames.shape[0] // 2, figsize=(2.6 * (frames.shape[0] // 2), 5.4), squeeze=False)
        vmax = float(np.percentile(frames, 99.5))
        for ax, frame, label, n_peaks in zip(axes.ravel(), frames, labels, data["n_peaks"], strict=True):
            ax.imshow(frame, cmap="gray_r", vmin=0, vmax=vmax)
            ax.set_title(f"{'hit' if label == 1 else 'miss'} ({n_peaks} peaks)", fontsize=9)
            ax.axis("off")
        fig.suptitle(str(data["title"]))
        fig.tight_layout()
        save(fig, "example_frames.png")

    if "n_peaks" in events and events["n_peaks"].notna().any():
        runs = list(dict.fromkeys(events["experiment"] + "/" + events["run"]))
        fig, ax = plt.subplots(figsize=(11, 3.8))
        offset = 0
        colours = {1: "tab:red", 0: "tab:blue", -1: "tab:grey"}
        names = {1: "hit", 0: "miss", -1: "ambiguous"}
        for run in runs:
            rows = events[(events["experiment"] + "/" + events["run"]) == run]
            if rows["n_peaks"].isna().all():
                continue
            for label in (0, -1, 1):
                sel = rows[rows["label"] == label]
                ax.scatter(
                    offset + sel["event"],
                    sel["n_peaks"],
                    s=2,
                    color=colours[label],
                    label=names[label] if offset == 0 else None,
                )
            ax.axvline(offset, color="k", lw=0.3)
            ax.text(offset, ax.get_ylim()[1] if offset else 0, run.split("/")[-1], fontsize=7, va="bottom")
            offset += len(rows)
        ax.set_yscale("symlog", linthresh=10)
        ax.set_xlabel("event (runs one after another)")
        ax.set_ylabel("peaks found")
        ax.set_title("peaks per event with labels (< 2 miss, > 10 hit)")
        ax.legend(markerscale=4)
        fig.tight_layout()
        save(fig, "peaks_per_event.png")
    return written


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


#: Columns of the step-cost table and their names in it.
STEP_COLUMNS = {"step": "Step", "seconds": "wall s", "peak_rss_mb": "peak RSS (MB)"}


def step_table(meta: dict) -> pd.DataFrame | None:
    """The wall time and peak memory of each step as ``meta.json`` records them (``steps``), with a total.

    Parameters
    ----------
    meta : dict
        A results folder's ``meta.json``.

    Returns
    -------
    pandas.DataFrame or None
        Columns Step, wall s, peak RSS (MB) and any further field a step records; a last row
        ``all steps`` (wall time summed, the highest peak). None when not recorded.
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
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    if "peak_rss_mb" in table:
        table["peak_rss_mb"] = table["peak_rss_mb"].round().astype("Int64")
    known = [c for c in STEP_COLUMNS if c in table.columns]
    return table[known + [c for c in table.columns if c not in known]].rename(columns=STEP_COLUMNS)


def write_docs(folder: Path, docs: Path) -> Path:
    """Regenerate the docs' results page and figures from a saved results folder.

    Parameters
    ----------
    folder : Path
        Results folder written by ``hitbench compare``.
    docs : Path
        The mkdocs ``docs/`` folder.

    Returns
    -------
    Path
        The results page written.
    """
    results, scores, events = load_results(folder)
    meta = read_meta(folder)
    figures = write_figures(folder, results, scores, events, docs / "img" / "results")
    made = tables(results, scores, events)
    lines = [
        "# Results",
        "",
        "Generated by `hitbench report` from a saved `hitbench compare` run; do not edit by hand.",
        "",
    ]
    if meta:
        lines += ["```", f"{meta.get('command', '')}", "```", ""]
        lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("command", "steps", "data_size")]
        size = meta.get("data_size") or {}
        if size:
            lines.append(
                f"- data on disk: {size.get('frames', 0):,} frames, {size.get('bytes', 0) / 1e9:.2f} GB, "
                f"{size.get('bytes_per_frame', 0) / 1e3:.1f} kB per frame"
            )
        steps = step_table(meta)
        lines += ["", markdown(steps)] if steps is not None else [""]
    lines += ["## How to read the tables", "", *_reading_notes(results), ""]
    for stem in ("summary", "labels", "pairs", "speed", *(s for s in made if s.startswith("table2_")), "seeds"):
        if stem not in made:
            continue
        table = made[stem]
        lines += [f"## {table_title(stem, results)}", ""]
        if stem == "pairs":
            significant = table[table["better"] != "none"]
            lines += [
                f"{len(significant)} of {len(table)} tests find a difference at {ALPHA:.0%} after Holm's correction "
                "(all tests: `tables/pairs.md` of the results folder).",
                "",
            ]
            table = significant
        if not table.empty:
            lines += [markdown(table)]
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}](img/results/{p.name})" + "\n" for p in figures]
    page = docs / "results.md"
    write_text(page, "\n".join(lines))
    return page


def _reading_notes(results: pd.DataFrame) -> list[str]:
    """What the tables of a results page show, as Markdown bullet lines."""
    kinds = _scored_against(results)
    trained = str(results["labels"].iloc[0])
    notes = [
        "- Runs marked `*` are training runs, scored on their held-out frames only. Frames a label kind leaves "
        "out (ambiguous) are not scored against it, and those of the training labels are not trained on; "
        "`ambiguous` counts them.",
        "- Every rate comes with its 95 % interval, `0.953 (0.921-0.975)`: Wilson score intervals for Sen, Spe "
        f"and Acc; for BAcc and AUC the 2.5-97.5 % percentiles of a stratified bootstrap over the run's scored "
        f"frames ({N_RESAMPLES} resamples, hits drawn from the hits and misses from the misses), seeded from "
        "the comparison's seed and the row, so a seed gives the same tables. A method right on every frame of "
        "a run gets a bootstrap interval of zero width; the Wilson intervals of its Sen and Spe show what the "
        "number of frames allows. With several seeds a cell is the mean over the seeds and its bounds the "
        "lowest and highest bound of any seed.",
        "- `—` is a rate the run cannot measure: sensitivity without hits, specificity without misses, BAcc and "
        "AUC without both. Means leave it out, and `mean (n runs)` says over how many runs they are taken.",
        f"- The methods trained with the `{trained}` labels. Each row is scored against {len(kinds)} label "
        "kind(s) (`scored against`), with the same calls:",
        *(f"    - `{kind}`: {SCORED_AGAINST[kind]}" for kind in kinds),
    ]
    if "detectable" in kinds:
        notes += [
            f"- `detectable` shows the ceiling: a crystal with fewer than {MIN_DETECTABLE_SPOTS} spots bright "
            "enough to be seen (expected photons >= 5 sigma of the background) cannot be found in the image "
            "by any method, so such frames are left out rather than counted as hits or misses; a single spot "
            "cannot be told from a stray bright pixel, which is why the study's rule also calls a frame with "
            "fewer than 2 peaks a miss.",
        ]
    labellers = [name for name in method_names(results).values() if name.endswith("(labeller)")]
    if labellers:
        notes += [
            f"- {', '.join(f'`{name}`' for name in labellers)} made the labels: it runs peakfinder8 with the "
            "settings the runs were labelled with and fits its peak-count cut to the peak labels. The rule calls "
            "fewer than 2 peaks a miss, more than 10 a hit and leaves the frames in between out, so with the "
            "labeller's peak counts any cut from 2 to 10 calls every scored frame as its label does: its 1.000 "
            "against the peak labels holds by construction and says nothing about finding crystals. Its rows "
            "against the truth show what the labels themselves are worth.",
        ]
    if results["method"].nunique() > 1:
        notes += [
            "- Paired comparisons: for each run, label kind and seed, two methods' calls on the same frames are "
            "compared with McNemar's exact test (a two-sided binomial test on the frames exactly one of them "
            f"calls right), and Holm's correction runs over every test of the table; `significantly best` in the "
            f"summary names the method that beats every other one on that run at {ALPHA:.0%} after the "
            "correction (with several seeds: on every seed), else `none`. The test counts frames called right, "
            "as accuracy does, not balanced accuracy: on a run of mostly hits a method calling every frame a hit "
            "can beat one with the higher balanced accuracy.",
        ]
    return notes
