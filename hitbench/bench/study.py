"""The study at its own scale: every method's Table II beside the reference study's.

``hitbench report RESULTS --study-scale [--with OTHER ...]`` writes ``docs/study-scale.md`` from
saved ``hitbench compare`` folders of the same data: for each method (and each label kind the runs
were scored against) hitbench's Table II with 95 % intervals beside the study's Table II for the same
runs (``docs/reference/study_table2.csv``, the study's CNN), the differences hitbench - study on
sensitivity and specificity, and the wall time, peak memory and disk of each step as ``meta.json``
records them. The methods of the further folders (e.g. the ``cnn`` with the study's exact settings)
are added as tables of their own, named by their parameters. Nothing on the page is typed by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hitbench import __version__
from hitbench.bench.display import markdown
from hitbench.bench.results_io import load_results, read_meta, write_text
from hitbench.bench.tables import SCORED_AGAINST, label_kinds, method_names, share, step_table, table2, with_bounds
from hitbench.errors import HitbenchError
from hitbench.labelrule import HIT_ABOVE, RULE_TEXT

#: The study's Table II, relative to the docs folder.
STUDY_TABLE = Path("reference") / "study_table2.csv"
STUDY_COLUMNS = ("run", "events", "hit_fraction", "sensitivity", "specificity", "accuracy", "role")
#: The study's exact training settings, per method that has them.
STUDY_SETTINGS = {"cnn": {"batch_size": 100, "class_weight": None}}
#: How close hitbench's sensitivity and specificity should come to the study's (the issue's goal).
GOAL = 0.05
#: Columns of hitbench's Table II shown beside the study's (each rate with its 95 % bounds).
SHOWN = ("Run", "# events", "ambiguous", "% hit", "Sen", "Spe", "Acc")
#: The page written, in the docs folder.
PAGE = "study-scale.md"


@dataclass
class Entry:
    """One method of one results folder: the Table IIs of one section of the page."""

    name: str
    method: str
    results: pd.DataFrame
    study_settings: bool
    calls: pd.DataFrame
    scores: pd.DataFrame
    events: pd.DataFrame


def load_study(docs: Path) -> pd.DataFrame:
    """The study's Table II from the docs folder.

    Parameters
    ----------
    docs : Path
        The mkdocs ``docs/`` folder (holding ``reference/study_table2.csv``).

    Returns
    -------
    pandas.DataFrame
        Indexed by run (str); columns events, hit_fraction, sensitivity, specificity, accuracy, role.
    """
    path = Path(docs) / STUDY_TABLE
    if not path.is_file():
        raise HitbenchError(f"{path}: missing; the study's Table II is kept there (give the repository's docs folder)")
    try:
        study = pd.read_csv(path, dtype={"run": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise HitbenchError(f"{path}: unreadable ({exc})") from None
    missing = [c for c in STUDY_COLUMNS if c not in study.columns]
    if missing:
        raise HitbenchError(f"{path}: no column(s) {', '.join(missing)}; expected {', '.join(STUDY_COLUMNS)}")
    return study.set_index("run")


def setting_label(method: str, params: dict) -> str:
    """How a method's settings read in a heading: ``study settings: batch_size=100, ...``, its parameters or defaults.

    Parameters
    ----------
    method : str
        Method name.
    params : dict
        The parameters it was given (``meta.json``'s ``params[method]``).

    Returns
    -------
    str
        The text, empty for a method without parameters and without study settings to tell apart.
    """
    listed = ", ".join(
        f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in sorted(params.items())
    )
    study = STUDY_SETTINGS.get(method)
    if study is not None and all(key in params and params[key] == value for key, value in study.items()):
        return f"study settings: {listed}"
    if listed:
        return listed
    return "hitbench defaults" if study is not None else ""


def beside_study(results: pd.DataFrame, method: str, kind: str, study: pd.DataFrame) -> pd.DataFrame:
    """One method's Table II against one label kind, beside the study's Table II for the same runs.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results (rows of other experiments are left out: the study has none).
    method : str
        Method name.
    kind : str
        Label kind scored against (``peaks``, ``truth`` or ``detectable``).
    study : pandas.DataFrame
        The study's Table II (:func:`load_study`).

    Returns
    -------
    pandas.DataFrame
        hitbench's Run (``*`` for training runs), # events, ambiguous, % hit, Sen, Spe and Acc with
        their 95 % bounds, then the study's ``study # events``, ``study % hit``, ``study Sen``,
        ``study Spe``, ``study Acc``, the differences ``Sen - study`` and ``Spe - study`` and
        ``within 0.05`` (which of the two lie within :data:`GOAL` of the study's). The study's
        columns are undefined (NaN) for a run it does not have.
    """
    same = results[(results["protocol"] == "cross-run") & (results["method"] == method)]
    table = table2(same, method)
    table = table[table["scored against"] == kind]
    table = with_bounds(table, SHOWN)
    theirs = study.reindex(table["Run"].str.rstrip("*"))
    table = table.reset_index(drop=True).assign(
        **{
            "study # events": theirs["events"].to_numpy(dtype=float),
            "study % hit": 100 * theirs["hit_fraction"].to_numpy(dtype=float),
            "study Sen": theirs["sensitivity"].to_numpy(dtype=float),
            "study Spe": theirs["specificity"].to_numpy(dtype=float),
            "study Acc": theirs["accuracy"].to_numpy(dtype=float),
        }
    )
    for rate in ("Sen", "Spe"):
        table[f"{rate} - study"] = table[rate] - table[f"study {rate}"]
    table["study # events"] = table["study # events"].astype("Int64")
    table[f"within {GOAL}"] = [
        _within(sen, spe) for sen, spe in zip(table["Sen - study"], table["Spe - study"], strict=True)
    ]
    return table


def _within(sen: float, spe: float) -> str:
    if np.isnan(sen) and np.isnan(spe):
        return "—"
    close = [name for name, d in (("Sen", sen), ("Spe", spe)) if not np.isnan(d) and abs(d) <= GOAL]
    return " and ".join(close) if close else "neither"


def closeness(table: pd.DataFrame) -> str:
    """One sentence: on how many runs (training runs apart) Sen and Spe lie within :data:`GOAL` of the study's."""
    parts = []
    for label, rows in (
        ("training runs", table[table["Run"].str.endswith("*")]),
        ("other runs", table[~table["Run"].str.endswith("*")]),
    ):
        counts = []
        for rate in ("Sen", "Spe"):
            delta = rows[f"{rate} - study"].dropna()
            counts.append(f"{rate} on {int((delta.abs() <= GOAL).sum())} of {len(delta)}")
        parts.append(f"{label}: {', '.join(counts)}")
    return f"Within {GOAL} of the study's CNN: {'; '.join(parts)}."


def data_lines(meta: dict, events: pd.DataFrame, experiment: str, study: pd.DataFrame) -> list[str]:
    """What data a comparison ran on, as Markdown bullet lines.

    Parameters
    ----------
    meta : dict
        The results folder's ``meta.json`` (``data_size``: ``frames``, ``bytes``, ``bytes_per_frame``).
    events : pandas.DataFrame
        Per-event labels (``events.csv.gz``).
    experiment : str
        The experiment whose runs are the study's.
    study : pandas.DataFrame
        The study's Table II (:func:`load_study`).

    Returns
    -------
    list of str
        The events of the runs against the study's, and the simulated data on disk (or "not recorded").
    """
    per_run = events[events["experiment"] == experiment].groupby("run", sort=False).size()
    in_study = per_run[per_run.index.isin(study.index)]
    ours, theirs = int(in_study.sum()), int(study["events"].sum())
    lines = [
        f"- events: {int(per_run.sum()):,} in {len(per_run)} run(s) of {experiment}; in the study's runs "
        f"{ours:,} of the study's {theirs:,} ({100 * ours / theirs:.1f} %)",
    ]
    if ours < theirs:
        lines.append(
            "- **not the study's scale**: these results cover fewer events than the study's runs; "
            "regenerate this page from a `hitbench compare --scale 1` run"
        )
    data = meta.get("data_size")
    if isinstance(data, dict) and {"frames", "bytes"} <= set(data):
        per_frame = data.get("bytes_per_frame", data["bytes"] / max(1, data["frames"]))
        lines.append(
            f"- simulated data on disk: {data['frames']:,} frames, {_size(data['bytes'])}, "
            f"{per_frame / 1e3:.1f} KB per frame"
        )
    else:
        lines.append("- simulated data on disk: not recorded")
    return lines


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _entries(folders: list[Path]) -> tuple[list[Entry], list[tuple[Path, dict, pd.DataFrame]]]:
    """Every method of every folder, cnn first (the study's settings before hitbench's defaults)."""
    entries: list[Entry] = []
    loaded = []
    reference = None
    for folder in folders:
        results, scores, events = load_results(folder)
        meta = read_meta(folder)
        counts = events.groupby(["experiment", "run"], sort=False).size()
        if reference is None:
            reference = (folder, counts)
        elif not counts.equals(reference[1]):
            raise HitbenchError(
                f"{folder}: scored other data than {reference[0]} (other runs or numbers of events); "
                "give results of the same data"
            )
        loaded.append((folder, meta, events))
        params = meta.get("params") or {}
        for method, name in method_names(results).items():
            settings = setting_label(method, params.get(method) or {})
            entries.append(
                Entry(
                    name=f"{name} ({settings})" if settings else name,
                    method=method,
                    results=results[results["method"] == method],
                    study_settings=settings.startswith("study settings"),
                    calls=calls_with_peaks(scores[scores["method"] == method], events, results),
                    scores=scores[scores["method"] == method],
                    events=events,
                )
            )
    entries.sort(key=lambda e: (e.method != "cnn", not e.study_settings))
    return entries, loaded


#: Bins of the number of peaks the labeller found on a hit (a hit has more than HIT_ABOVE).
PEAK_BINS = (HIT_ABOVE + 1, 16, 21, 31, 51, 101)


def _training_runs(results: pd.DataFrame) -> set[str]:
    """The runs the results name as training runs (their held-out frames were scored)."""
    return set(results.loc[results["train_run"].astype(bool), "test_run"].astype(str))


def calls_with_peaks(scores: pd.DataFrame, events: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """A method's calls on the frames labelled hit, with the peaks found on each and its run's role.

    Parameters
    ----------
    scores : pandas.DataFrame
        The method's rows of scores.csv.gz (seed 0 where there are several).
    events : pandas.DataFrame
        events.csv.gz (for ``n_peaks``).
    results : pandas.DataFrame
        results.csv (which runs were training runs).

    Returns
    -------
    pandas.DataFrame
        Columns run, n_peaks, predicted, training_run; one row per scored hit.
    """
    if "n_peaks" not in events:
        return pd.DataFrame(columns=["run", "n_peaks", "predicted", "training_run"])
    hits = scores[(scores["label"] == 1) & (scores["seed"] == scores["seed"].min())]
    peaks = events[["experiment", "run", "event", "n_peaks"]]
    hits = hits.merge(peaks, on=["experiment", "run", "event"], how="left")
    hits["training_run"] = hits["run"].astype(str).isin(_training_runs(results))
    return hits[["run", "n_peaks", "predicted", "training_run"]]


def sensitivity_by_peaks(calls: pd.DataFrame) -> pd.DataFrame:
    """Share of the peak-labelled hits called hit, by the number of peaks found, with Wilson intervals.

    Parameters
    ----------
    calls : pandas.DataFrame
        From :func:`calls_with_peaks`.

    Returns
    -------
    pandas.DataFrame
        One row per peak-count bin: hits and sensitivity on the training runs' held-out frames and on
        the other runs.
    """
    edges = [*PEAK_BINS, np.inf]
    bounds = zip(edges[:-1], edges[1:], strict=True)
    names = [f"{lo}-{hi - 1}" if np.isfinite(hi) else f"{lo} or more" for lo, hi in bounds]
    binned = pd.cut(calls["n_peaks"], edges, right=False, labels=names)
    rows = []
    for name in names:
        row: dict[str, object] = {"peaks found": name}
        for role, where in (("training runs*", True), ("other runs", False)):
            chosen = calls[(binned == name) & (calls["training_run"] == where)]
            found, n = int(chosen["predicted"].sum()), len(chosen)
            row[f"hits, {role}"] = n
            row |= share(f"Sen, {role}", found, n)
        rows.append(row)
    return pd.DataFrame(rows)


def _study_runs(
    scores: pd.DataFrame, results: pd.DataFrame, study: pd.DataFrame, keep: Callable[[pd.Series], pd.Series]
) -> list[tuple[str, str, pd.DataFrame]]:
    """A method's scored frames on the training experiment's runs that the study has, run by run.

    Seed 0's rows (the lowest seed) whose labels ``keep`` selects; runs without such a frame are left out.
    Each run comes as (run, its name in the tables: ``*`` for a training run, its frames).
    """
    cross_run = results[results["protocol"] == "cross-run"]
    if cross_run.empty:
        return []
    experiment = str(cross_run["train_experiment"].iloc[0])
    training = _training_runs(cross_run)
    chosen = scores[(scores["seed"] == scores["seed"].min()) & (scores["experiment"] == experiment)]
    chosen = chosen[keep(chosen["label"])]
    return [
        (run, f"{run}*" if run in training else run, frames)
        for run, frames in chosen.groupby("run", sort=False)
        if run in study.index
    ]


def misses_with_crystals(
    scores: pd.DataFrame, events: pd.DataFrame, results: pd.DataFrame, study: pd.DataFrame
) -> pd.DataFrame:
    """The frames labelled miss that hold a crystal (simulated runs), and a method's calls on them, run by run.

    A diagnostic of a specificity that differs from the study's: a frame the peak labels call a miss
    (fewer than two peaks) may still hold a crystal, whose few spots a network can see. The share of such
    frames bounds how low a specificity calling them hits can go, ``Spe if all called hit``; beside it the
    study's specificity. Read off the scored frames and the simulator's truth; it chooses nothing.

    Parameters
    ----------
    scores : pandas.DataFrame
        The method's rows of scores.csv.gz (seed 0 where there are several).
    events : pandas.DataFrame
        events.csv.gz (``label_truth``, ``label_detectable``).
    results : pandas.DataFrame
        The method's rows of results.csv (the training experiment and runs).
    study : pandas.DataFrame
        The study's Table II (:func:`load_study`).

    Returns
    -------
    pandas.DataFrame
        One row per run of the training experiment that the study has: Run (``*`` for training runs),
        misses, ``with a crystal`` (of them, the truth's), ``with a detectable crystal``, the share of the
        misses called hit with its 95 % Wilson interval, ``called hit, of those with a crystal``,
        ``Spe if all called hit`` and ``study Spe``. Empty without the simulator's truth.
    """
    if "label_truth" not in events:
        return pd.DataFrame()
    truth = events[["experiment", "run", "event", "label_truth", "label_detectable"]]
    rows = []
    for run, name, scored in _study_runs(scores, results, study, lambda labels: labels == 0):
        frames = scored.merge(truth, on=["experiment", "run", "event"], how="left")
        crystal = frames["label_truth"] == 1
        row = {
            "Run": name,
            "misses": len(frames),
            "with a crystal": int(crystal.sum()),
            "with a detectable crystal": int((frames["label_detectable"] == 1).sum()),
        }
        row |= share("called hit", int(frames["predicted"].sum()), len(frames))
        row["called hit, of those with a crystal"] = int(frames.loc[crystal, "predicted"].sum())
        row["Spe if all called hit"] = 1 - row["with a crystal"] / len(frames)
        rows.append(row | {"study Spe": float(study.loc[run, "specificity"])})
    return pd.DataFrame(rows)


def operating_points(scores: pd.DataFrame, results: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """How a method's scores rank hits above misses on each of the study's runs, read at the study's operating point.

    A diagnostic of why a rate differs from the study's: in the ranking of the frames (the area under
    the ROC curve, and the sensitivity the scores reach where the specificity equals the study's on
    that run, and the reverse), or only in where the decision threshold sits. It is read off the
    scored frames themselves and chooses nothing.

    Parameters
    ----------
    scores : pandas.DataFrame
        The method's rows of scores.csv.gz (seed 0 where there are several); frames labelled -1
        (ambiguous) are left out.
    results : pandas.DataFrame
        The method's rows of results.csv (the training experiment and runs).
    study : pandas.DataFrame
        The study's Table II (:func:`load_study`).

    Returns
    -------
    pandas.DataFrame
        One row per run of the training experiment that the study has: Run (``*`` for training
        runs), hits, misses, AUC, ``study Spe``, ``Sen at study Spe``, ``study Sen``,
        ``Spe at study Sen`` (NaN where the run lacks hits or misses).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    rows = []
    for run, name, frames in _study_runs(scores, results, study, lambda labels: labels >= 0):
        labels, values = frames["label"].to_numpy(), frames["score"].to_numpy()
        spe, sen = float(study.loc[run, "specificity"]), float(study.loc[run, "sensitivity"])
        row = {
            "Run": name,
            "hits": int(labels.sum()),
            "misses": int((labels == 0).sum()),
        }
        row |= dict.fromkeys(("AUC", "Sen at study Spe", "Spe at study Sen"), np.nan)
        if 0 < row["hits"] < len(labels):
            fpr, tpr, _ = roc_curve(labels, values, drop_intermediate=False)  # every threshold: exact reads
            row["AUC"] = roc_auc_score(labels, values)
            row["Sen at study Spe"] = tpr[fpr <= 1 - spe].max()
            row["Spe at study Sen"] = 1 - fpr[tpr >= sen].min()
        rows.append(row | {"study Spe": spe, "study Sen": sen})
    columns = ["Run", "hits", "misses", "AUC", "study Spe", "Sen at study Spe", "study Sen", "Spe at study Sen"]
    return pd.DataFrame(rows, columns=columns)


def _study_notes(kinds: list[str], study: pd.DataFrame) -> list[str]:
    train = ", ".join(study.index[study["role"] == "train"])
    return [
        "- The study's columns (`study ...`) are the reference study's Table II for the same run "
        f"(`{STUDY_TABLE.as_posix()}` in the docs, typed from the paper): the numbers of **its CNN**, scored "
        f"against **its peak labels** (peakfinder8, {RULE_TEXT}, frames in between left out), "
        "without intervals. They stand beside every method, not only the cnn: they are the only per-run "
        "figures the study gives and the bar any hit finder on these runs is measured against. Beside the "
        "tables scored against the truth and the detectable truth they compare unlike things (the study had no "
        "truth) and stand for reference only.",
        f"- `Sen - study` and `Spe - study` are hitbench's rate minus the study's; `within {GOAL}` names the "
        f"rates within {GOAL} of the study's (the issue's goal for the faithful cnn on the training runs).",
        f"- Runs marked `*` are training runs (the study trained on {train}); hitbench scores their held-out "
        "frames only, so `# events` is that share, the study's the whole run. Other runs are scored on every "
        "event. hitbench's `% hit` is the share of hits among the frames it scores (ambiguous ones left out).",
        "- Every hitbench rate comes with its 95 % interval, `0.953 (0.921-0.975)` (Wilson score intervals; "
        "with several seeds the mean and the lowest and highest bound of any seed); `—` is a rate the run "
        "cannot measure or a run the study does not have. How the intervals, label kinds and the labeller "
        "mark are computed: [Results](results.md#how-to-read-the-tables).",
        "- Label kinds, peak labels first (the study's protocol):",
        *(f"    - `{kind}`: {SCORED_AGAINST[kind]}" for kind in kinds),
    ]


def write_study_page(
    folder: Path, docs: Path, others: list[Path] | tuple[Path, ...] = (), command: str | None = None
) -> Path:
    """Write ``docs/study-scale.md``: every method's Table II beside the study's, and the cost of each step.

    Parameters
    ----------
    folder : Path
        The main results folder written by ``hitbench compare``.
    docs : Path
        The mkdocs ``docs/`` folder (the study's Table II is read from ``reference/study_table2.csv`` in it).
    others : sequence of Path
        Further results folders of the same data (e.g. the ``cnn`` with the study's settings); their
        methods get tables of their own, named by their parameters.
    command : str, optional
        The command that writes the page, shown on it.

    Returns
    -------
    Path
        The page written.
    """
    study = load_study(docs)
    entries, loaded = _entries([Path(folder), *map(Path, others)])
    experiment = str(entries[0].results["train_experiment"].iloc[0]) if entries else ""
    lines = [
        "# The study at its own scale",
        "",
        "Generated by `hitbench report --study-scale` from saved `hitbench compare` runs; do not edit by hand.",
        "",
    ]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["## Data", "", *data_lines(loaded[0][1], loaded[0][2], experiment, study), ""]
    lines += ["## Runs and the cost of each step", ""]
    for path, meta, _ in loaded:
        lines += [f"From `{path}`:", "", "```", str(meta.get("command", "command not recorded")), "```", ""]
        lines += [
            f"- hitbench {meta.get('hitbench_version', 'not recorded')}, commit {meta.get('commit', 'not recorded')}",
            f"- results folder: {_size(_folder_bytes(path))}",
            "",
        ]
        steps = step_table(meta)
        lines += [markdown(steps) if steps is not None else "Step costs (wall time, peak memory): not recorded.", ""]
    lines += [f"Page written by hitbench {__version__}.", ""]
    kinds = list(dict.fromkeys(k for e in entries for k in label_kinds(e.results)))
    lines += ["## How to read the tables", "", *_study_notes(kinds, study), ""]
    for entry in entries:
        lines += [f"## Table II: {entry.name}", ""]
        for kind in label_kinds(entry.results):
            table = beside_study(entry.results, entry.method, kind, study)
            lines += [f"### Scored against {kind}", "", closeness(table), "", markdown(table)]
        if len(entry.calls):
            lines += [
                "### Hits found, by the number of peaks on them",
                "",
                "The frames labelled hit (peak labels), pooled over runs, by the peaks the labeller found on each;",
                "`Sen` is the share the method calls hit, with its 95 % Wilson interval.",
                "",
                markdown(sensitivity_by_peaks(entry.calls)),
                "",
            ]
        crystals = misses_with_crystals(entry.scores, entry.events, entry.results, study)
        if len(crystals):
            lines += [
                "### Misses that hold a crystal: how low the specificity can go",
                "",
                "The frames labelled miss (fewer than two peaks) on each run, those of them that hold a crystal",
                "by the simulator's truth (and one with two detectable spots or more), and the method's calls on",
                "them. `Spe if all called hit` is the specificity a method would have if it called every miss",
                "holding a crystal a hit and no other: where the study's specificity lies below it, the study's",
                "misses held more hit-like frames than the simulated ones do. Read off the scored frames; it",
                "chooses nothing.",
                "",
                markdown(crystals),
                "",
            ]
        points = operating_points(entry.scores, entry.results, study)
        if len(points):
            lines += [
                "### Ranking or threshold: the scores at the study's operating point",
                "",
                "Each run's frames (the labels the methods trained on, ambiguous ones left out) ranked by the",
                "method's score: the area under the ROC curve, the sensitivity the scores reach where the",
                "specificity equals the study's on that run, and the specificity where the sensitivity equals the",
                "study's. Where these meet the study's rates and the tables above do not, the gap is where the",
                "decision threshold sits, not how the scores rank the frames. Read off the scored frames",
                "themselves: a diagnostic that chooses nothing (no table above uses it).",
                "",
                markdown(points),
                "",
            ]
    page = Path(docs) / PAGE
    write_text(page, "\n".join(lines))
    return page
