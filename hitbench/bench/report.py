"""Tables and figures derived from the tidy results of a comparison.

Everything here reads a results folder written by ``hitbench compare``:

- ``results.csv`` / ``results.json``: one row per method × seed × test run (the tidy table),
- ``scores.csv.gz``: one row per method × seed × scored event (score, call, label),
- ``events.csv.gz``: one row per event of every run (label, peak count where known),
- ``examples.npz``: a few hit and miss frames for the example figure,

and derives the reference study's Table II per method, a methods × runs summary
(balanced accuracy), a speed table and the figures. ``hitbench report`` reruns this on saved
results; nothing is typed by hand.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from hitbench.atomic import atomic_write
from hitbench.errors import HitbenchError

TABLE2_COLUMNS = {
    "test_run": "Run",
    "events": "# events",
    "ambiguous": "ambiguous",
    "hit_percent": "% hit",
    "sensitivity": "Sen",
    "specificity": "Spe",
    "accuracy": "Acc",
    "balanced_accuracy": "BAcc",
}

#: Columns of results.csv, scores.csv.gz and events.csv.gz that every row must fill.
RESULT_COLUMNS = (
    (
        "method",
        "protocol",
        "test_experiment",
        "test_run",
        "train_run",
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


def table2(results: pd.DataFrame, method: str) -> pd.DataFrame:
    """The reference study's Table II for one method (mean over seeds where there are several).

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.
    method : str
        Method name.

    Returns
    -------
    pandas.DataFrame
        Columns Run, # events, ambiguous, % hit, Sen, Spe, Acc, BAcc; training runs marked
        with ``*`` (scored on their held-out frames), other experiments' runs as ``experiment/run``.
    """
    rows = with_run_labels(results[results["method"] == method])
    table = rows.groupby("test_run", sort=False)[list(TABLE2_COLUMNS)[1:]].mean().reset_index()
    table[["events", "ambiguous"]] = table[["events", "ambiguous"]].round().astype(int)
    return table.rename(columns=TABLE2_COLUMNS)


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Balanced accuracy of every method on every test run (runs as rows, methods as columns).

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results.

    Returns
    -------
    pandas.DataFrame
        One row per test run plus a last row with the mean over runs; one column per method.
    """
    rows = with_run_labels(results)
    table = rows.pivot_table(index="test_run", columns="method", values="balanced_accuracy", aggfunc="mean", sort=False)
    table = table.reindex(index=list(dict.fromkeys(rows["test_run"])), columns=list(dict.fromkeys(rows["method"])))
    table.loc["mean"] = table.mean(axis=0)
    table.columns.name = None
    return table.rename_axis("Run").reset_index()


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
        One row per test run; for each method the columns ``<method> mean``, ``<method> min``
        and ``<method> max``.
    """
    rows = with_run_labels(results)
    order = list(dict.fromkeys(rows["test_run"]))
    stats = rows.groupby(["test_run", "method"], sort=False)["balanced_accuracy"].agg(["mean", "min", "max"])
    table = stats.unstack("method").reindex(order)
    methods = list(dict.fromkeys(rows["method"]))
    table = table.reindex(columns=[(stat, m) for m in methods for stat in ("mean", "min", "max")])
    table.columns = [f"{m} {stat}" for stat, m in table.columns]
    return table.rename_axis("Run").reset_index()


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
    out = []
    for method, rows in results.groupby("method", sort=False):
        ms = float(np.average(rows["predict_ms_per_frame"], weights=rows["events"]))
        out.append(
            {
                "Method": method,
                "training frames": int(rows["n_train"].iloc[0]),
                "fit s": float(rows.groupby("seed")["fit_seconds"].first().mean()),
                "predict ms/frame": ms,
                "frames/s": 1e3 / ms if ms else float("inf"),
            }
        )
    return pd.DataFrame(out)


def markdown(table: pd.DataFrame) -> str:
    """A table as Markdown with three decimals (the form written to files and docs)."""
    return table.to_markdown(index=False, floatfmt=".3f") + "\n"


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
                f"{path}: no column(s) {', '.join(missing)}; give a folder written by `hitbench compare`"
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
    atomic_write(folder / "results.csv", lambda tmp: results.to_csv(tmp, index=False))
    atomic_write(
        folder / "results.json",
        lambda tmp: tmp.write_text(results.to_json(orient="records", indent=1, double_precision=10)),
    )
    for name, table in (("scores", scores), ("events", events)):
        data = gzip.compress(table.to_csv(index=False).encode(), mtime=0)  # no name or time: same bytes each run
        atomic_write(folder / f"{name}.csv.gz", lambda tmp, d=data: tmp.write_bytes(d))


def write_tables(folder: Path, results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Write Table II per method, the summary, the spread over seeds (several seeds) and the speed table.

    Each as Markdown and CSV.

    Parameters
    ----------
    folder : Path
        Output folder (``tables/`` is created in it).
    results : pandas.DataFrame
        The tidy results.

    Returns
    -------
    dict of str to pandas.DataFrame
        The tables by file stem.
    """
    tables = {f"table2_{m}": table2(results, m) for m in dict.fromkeys(results["method"])}
    tables["summary"] = summary(results)
    if results["seed"].nunique() > 1:
        tables["seeds"] = seed_spread(results)
    tables["speed"] = speed(results)
    for stem, table in tables.items():
        write_text(folder / "tables" / f"{stem}.md", markdown(table))
        atomic_write(folder / "tables" / f"{stem}.csv", lambda tmp, t=table: t.to_csv(tmp, index=False))
    return tables


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

    methods = list(dict.fromkeys(results["method"]))
    # FIG. 5 of the study: confusion matrices on the training runs (held-out frames) and on the other runs
    groups = {
        "training runs (held out)": results["train_run"] & (results["protocol"] == "cross-run"),
        "other runs": ~results["train_run"] & (results["protocol"] == "cross-run"),
        "other experiments": results["protocol"] == "cross-experiment",
    }
    groups = {k: v for k, v in groups.items() if v.any()}
    fig, axes = plt.subplots(len(methods), len(groups), figsize=(3.2 * len(groups), 2.9 * len(methods)), squeeze=False)
    for i, method in enumerate(methods):
        for j, (title, selected) in enumerate(groups.items()):
            rows = results[selected & (results["method"] == method)]
            matrix = np.array([[rows["tn"].sum(), rows["fp"].sum()], [rows["fn"].sum(), rows["tp"].sum()]])
            ax = axes[i, j]
            ax.imshow(matrix / max(1, matrix.sum()), cmap="Blues", vmin=0, vmax=1)
            for (r, c), value in np.ndenumerate(matrix):
                ax.text(c, r, str(value), ha="center", va="center")
            ax.set_xticks([0, 1], ["miss", "hit"])
            ax.set_yticks([0, 1], ["miss", "hit"])
            ax.set_xlabel("predicted")
            ax.set_ylabel("label")
            ax.set_title(f"{method}: {title}", fontsize=9)
    fig.tight_layout()
    save(fig, "confusion_matrices.png")

    cross = with_run_labels(results[results["protocol"] == "cross-run"])
    if not cross.empty:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
        for method in methods:
            rows = (
                cross[cross["method"] == method].groupby("test_run", sort=False)[["sensitivity", "specificity"]].mean()
            )
            for ax, column in zip(axes, ("sensitivity", "specificity"), strict=True):
                ax.plot(rows.index, rows[column], marker="o", label=method)
                ax.set_title(f"{column} per run (* = training run, held-out frames)")
                ax.set_ylim(-0.02, 1.02)
                ax.grid(alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        save(fig, "sensitivity_specificity.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    scored = scores[scores["label"] >= 0]
    for method in methods:
        rows = scored[(scored["method"] == method) & (scored["seed"] == scored["seed"].min())]
        if rows["label"].nunique() == 2:
            fpr, tpr, _ = roc_curve(rows["label"], rows["score"])
            ax.plot(fpr, tpr, label=method)
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
    meta_path = Path(folder) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HitbenchError(f"{meta_path}: not valid JSON ({exc}); rerun `hitbench compare` or remove it") from None
    figures = write_figures(folder, results, scores, events, docs / "img" / "results")
    tables = {f"table2_{m}": table2(results, m) for m in dict.fromkeys(results["method"])}
    lines = [
        "# Results",
        "",
        "Generated by `hitbench report` from a saved `hitbench compare` run; do not edit by hand.",
        "",
    ]
    if meta:
        lines += ["```", f"{meta.get('command', '')}", "```", ""]
        lines += [f"- {key}: {value}" for key, value in meta.items() if key != "command"] + [""]
    lines += [
        "Runs marked `*` are training runs, scored on their held-out frames only; ambiguous frames",
        "(between 2 and 10 peaks) are dropped from training and scoring.",
        "",
        "## Balanced accuracy, methods x runs",
        "",
        markdown(summary(results)),
        "## Speed",
        "",
        markdown(speed(results)),
    ]
    for stem, table in tables.items():
        lines += [f"## Table II: {stem.removeprefix('table2_')}", "", markdown(table)]
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}](img/results/{p.name})" + "\n" for p in figures]
    page = docs / "results.md"
    write_text(page, "\n".join(lines))
    return page
