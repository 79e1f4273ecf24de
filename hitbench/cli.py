"""The ``hitbench`` command line: one click group, one command per job.

Errors a user can cause are :class:`hitbench.errors.HitbenchError`; the group prints them
as one line on stderr and exits with status 1, never with a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from hitbench import __version__
from hitbench.data.compression import COMPRESSIONS, DEFAULT_COMPRESSION
from hitbench.errors import HitbenchError
from hitbench.frames import TASK_FRAMES
from hitbench.labelrule import HIT_ABOVE, MISS_BELOW

HDF5_SUFFIXES = (".cxi", ".h5", ".hdf5", ".nxs")
#: Largest seed: numpy's and scikit-learn's seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1


def _n_jobs(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """--n-jobs checked and bounded by the cores (see :func:`hitbench.parallel.check_n_jobs`)."""
    from hitbench.parallel import check_n_jobs

    return check_n_jobs(value)  # a HitbenchError here is printed as one line by the group


def _n_jobs_option(help_text: str):
    """The --n-jobs option of a command: -1 all cores, 0 and below -1 refused, above the cores clamped."""
    return click.option(
        "--n-jobs",
        type=int,
        default=1,
        show_default=True,
        callback=_n_jobs,
        help=f"{help_text}; -1 all cores, more than the cores are lowered to them.",
    )


def _check_seed(seed: int, option: str = "--seed") -> int:
    if not 0 <= seed <= MAX_SEED:
        raise HitbenchError(f"{option} {seed}: give a seed from 0 to {MAX_SEED}")
    return seed


def _check_scale(scale: float | None) -> None:
    import math

    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise HitbenchError(f"--scale {scale}: give a positive fraction of each run's events, e.g. 0.1 (1 = all)")


class _Group(click.Group):
    """Click group that turns user errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HitbenchError as exc:
            click.echo(f"hitbench: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("hitbench: interrupted; finished outputs are kept, partial ones were discarded", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hitbench")
def main() -> None:
    """hitbench: hit finding for serial crystallography, compared across runs and experiments."""
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a batch system's stop) unwinds like Ctrl-C, so partial outputs are discarded on the way out."""
    raise KeyboardInterrupt


@main.command("methods")
def methods_command() -> None:
    """List the registered hit-finding methods."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from hitbench.methods import registry

    table = Table(title="hit-finding methods (entry-point group hitbench.methods)")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("parameters (--param NAME.PARAMETER=VALUE) and defaults")
    for name, description, params in registry.catalogue():
        if params is None:  # one broken plugin must not hide the others: its one-line error
            table.add_row(name, f"[red]{escape(description)}[/red]", "")
        else:
            table.add_row(name, escape(description), escape(", ".join(f"{k}={v}" for k, v in params.items())))
    Console().print(table)


def _geometry_option(command):
    """The --geometry option: a CrystFEL .geom of the raw multi-panel frames (see :mod:`hitbench.data.geom`)."""
    return click.option(
        "--geometry",
        type=click.Path(path_type=Path),
        help="CrystFEL geometry (.geom) of raw multi-panel frames: peaks are found on the raw frames "
        "(each pixel's radius from the beam, no peak across two panels) and written in raw "
        "coordinates; the methods see the assembled 350x350 crop around the beam.",
    )(command)


def _data_path_option(command):
    """The --data-path option: where the (n, ss, fs) frame stack is in an HDF5 file."""
    return click.option(
        "--data-path",
        help="HDF5 path of the (n, ss, fs) or (n, panel, ss, fs) frame stack "
        "[default: the geometry's 'data' line where the file has it, else a NeXus master's linked "
        "/entry/data/data_NNNNNN stacks, else /entry_1/data_1/data].",
    )(command)


@main.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@_geometry_option
@_data_path_option
def info_command(path: Path, geometry: Path | None, data_path: str | None) -> None:
    """Describe a CXI file or a detector image file: frames, shape, geometry, peaks and labels."""
    import h5py
    from rich.console import Console
    from rich.table import Table

    from hitbench.data.formats import read_image
    from hitbench.data.geom import read_geom
    from hitbench.data.nexus import MasterRun, data_path_for, open_run

    detector = read_geom(geometry) if geometry is not None else None
    if not path.exists():
        raise HitbenchError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise HitbenchError(
            f"{path}: is a folder; give one of its files (a CXI run or a detector image), or the "
            "folder to `hitbench compare --data`"
        )
    table = Table(title=str(path), show_header=False)
    if path.suffix.lower() in HDF5_SUFFIXES or (path.is_file() and h5py.is_hdf5(path)):
        run = open_run(path, data_path_for(path, data_path, detector.data if detector is not None else None))
        table.add_row("format", "NeXus master + data files" if isinstance(run, MasterRun) else "CXI/HDF5")
        if isinstance(run, MasterRun) and run.beam_center is not None:
            table.add_row("beam centre (x, y)", f"{run.beam_center[0]:.2f}, {run.beam_center[1]:.2f} px")
        table.add_row("frames", str(run.n_frames))
        table.add_row(
            "frame shape",
            f"{run.frame_shape[0]} x {run.frame_shape[1]}"
            + (
                f" ({run.n_panels} panels stacked along ss; give --geometry to assemble them)"
                if run.n_panels > 1
                else ""
            ),
        )
        table.add_row("dtype", str(run.dtype))
        table.add_row("good pixels", f"{int(run.mask.sum())} of {run.mask.size}")
        geometry = run.geometry
        table.add_row("peaks", "yes (/entry_1/result_1)" if run.has_peaks else "no")
        table.add_row("hitbench fields", ", ".join(run.fields) or "none")
        for key, value in run.attrs.items():
            table.add_row(f"run {key}", str(value))
        if detector is not None:
            detector.check_shape(run.frame_shape, str(path))
            _geometry_rows(table, detector, run.mask & detector.good_pixels(path))
    else:
        image = read_image(path)
        table.add_row(
            "format",
            "detector image (fabio)"
            if image.panels == 1
            else f"multi-panel CBF: {image.panels} panels stacked along ss (give --geometry to assemble them)",
        )
        table.add_row("frame shape", f"{image.frame.shape[0]} x {image.frame.shape[1]}")
        table.add_row("good pixels", f"{int(image.mask.sum())} of {image.mask.size}")
        geometry = image.geometry
        if image.beam_center is not None:
            table.add_row("beam centre (x, y)", f"{image.beam_center[0]:.2f}, {image.beam_center[1]:.2f} px")
        if detector is not None:
            detector.check_shape(image.frame.shape, str(path))
            _geometry_rows(table, detector, image.mask & detector.good_pixels())
    if geometry is not None:
        table.add_row("distance", f"{geometry.distance * 1e3:.1f} mm")
        table.add_row("pixel size", f"{geometry.x_pixel_size * 1e6:.0f} x {geometry.y_pixel_size * 1e6:.0f} um")
        table.add_row("photon energy", f"{geometry.photon_energy:.0f} eV")
    else:
        table.add_row("geometry", "not recorded")
    Console().print(table)


def _geometry_rows(table: object, detector: object, good: object) -> None:
    """Rows of `hitbench info` for a CrystFEL geometry: panels, beam, camera length, radii, good pixels."""
    import numpy as np

    panels = detector.panels
    table.add_row(
        "geometry",
        f"{detector.path}: {len(panels)} panels, raw frame {detector.raw_shape[0]} x {detector.raw_shape[1]} (ss x fs)",
    )
    table.add_row("panel pixels", ", ".join(sorted({f"{p.shape[0]} x {p.shape[1]}" for p in panels})))
    clen = detector.clen
    table.add_row("camera length", f"{clen * 1e3:.1f} mm" if clen is not None else f"from each run ({panels[0].clen})")
    table.add_row("pixel size", f"{1e6 / panels[0].res:.0f} um")
    on = good & (detector.panel_index >= 0)
    table.add_row("radius from the beam", f"{detector.radius[on].min():.1f} to {detector.radius[on].max():.1f} px")
    table.add_row("good pixels (with the geometry)", f"{int(np.count_nonzero(on))} of {on.size}")


def _compression_option(command):
    """The --compression option of the commands that write HDF5 (see :mod:`hitbench.data.compression`)."""
    return click.option(
        "--compression",
        type=click.Choice(COMPRESSIONS),
        default=DEFAULT_COMPRESSION,
        show_default=True,
        help="HDF5 compression of what is written: gzip (deflate + shuffle, which any HDF5 reader, "
        "CrystFEL included, reads), none, or lz4 (Blosc) / bitshuffle, whose readers need "
        "hdf5plugin.",
    )(command)


def _echo_crystfel(written: list[Path] | tuple[Path, ...], notes: list[str] | tuple[str, ...]) -> None:
    if written:
        click.echo(f"  for CrystFEL: {', '.join(str(p) for p in written)}")
    for note in notes:
        click.echo(f"  {note}")


@main.command("label")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--adc-threshold", type=float, help="Lowest peak-pixel value, ADU (default: PeakFinder8's).")
@click.option("--min-snr", type=float, help="Signal-to-noise ratio of pixels and peaks.")
@click.option("--min-pixel-count", type=int, help="Fewest pixels in a peak.")
@click.option("--max-pixel-count", type=int, help="Most pixels in a peak.")
@click.option("--local-bg-radius", type=int, help="Inner radius of the local background annulus, pixels.")
@click.option("--min-res", type=float, help="Smallest pixel distance from the beam centre.")
@click.option("--max-res", type=float, help="Largest pixel distance from the beam centre.")
@click.option("--max-num-peaks", type=int, help="Most peaks kept per frame.")
@click.option("--miss-below", type=int, default=MISS_BELOW, show_default=True, help="Fewer peaks than this: miss (0).")
@click.option("--hit-above", type=int, default=HIT_ABOVE, show_default=True, help="More peaks than this: hit (1).")
@click.option("--chunk-size", type=int, default=TASK_FRAMES, show_default=True, help="Frames per chunk.")
@_n_jobs_option("joblib workers over chunks")
@click.option(
    "--crystfel-out",
    type=click.Path(path_type=Path),
    help="Also write, into this folder, RUN.lst (the frames labelled hit), RUN.geom and RUN.cell for "
    "CrystFEL's indexamajig.",
)
@_compression_option
@_geometry_option
@_data_path_option
def label_command(
    paths: tuple[Path, ...],
    miss_below: int,
    hit_above: int,
    chunk_size: int,
    n_jobs: int,
    crystfel_out: Path | None,
    compression: str,
    geometry: Path | None,
    data_path: str | None,
    **finder_options: float | int | None,
) -> None:
    """Find peaks (peakfinder8) in CXI runs and write them, peak counts and labels into each file."""
    import numpy as np

    from hitbench.data.crystfel import handoff_paths, refuse_existing, write_handoff
    from hitbench.data.geom import read_geom
    from hitbench.data.nexus import data_path_for, open_run
    from hitbench.parallel import parallel_backend
    from hitbench.peaks import PeakFinder8
    from hitbench.peaks.labels import label_run

    _check_finder_options(finder_options, chunk_size)
    detector = read_geom(geometry) if geometry is not None else None
    handoffs = {path: handoff_paths(crystfel_out, path.stem, path.stem) for path in paths} if crystfel_out else {}
    if len(handoffs) != len({files[0] for files in handoffs.values()}):
        raise HitbenchError("--crystfel-out: two runs share a file name, their CrystFEL files would collide")
    refuse_existing(file for files in handoffs.values() for file in files)
    finder = PeakFinder8(**{k: v for k, v in finder_options.items() if v is not None})
    for path in paths:
        with parallel_backend():
            labels = label_run(
                path,
                finder,
                miss_below=miss_below,
                hit_above=hit_above,
                chunk_size=chunk_size,
                n_jobs=n_jobs,
                compression=compression,
                geometry=detector,
                data_path=data_path,
            )
        click.echo(
            f"{path}: {labels.size} frames, {int((labels == 1).sum())} hits, {int((labels == 0).sum())} "
            f"misses, {int((labels == -1).sum())} ambiguous"
        )
        if path in handoffs:
            run = open_run(path, data_path_for(path, data_path, detector.data if detector is not None else None))
            _echo_crystfel(*write_handoff(run, np.flatnonzero(labels == 1), handoffs[path], detector))


def _check_finder_options(options: dict[str, float | int | None], chunk_size: int) -> None:
    """Refuse peak-finder options that would make every frame a miss (NaN, empty ranges) with one line."""
    import math

    def option(name: str) -> str:
        return "--" + name.replace("_", "-")

    for name, value in options.items():
        if value is not None and (math.isnan(value) or (math.isinf(value) and name != "max_res")):
            raise HitbenchError(f"{option(name)} {value}: give a finite number")
    positive = ("min_pixel_count", "max_pixel_count", "local_bg_radius", "max_num_peaks")
    for name in positive:
        if options[name] is not None and options[name] < 1:
            raise HitbenchError(f"{option(name)} {options[name]}: give 1 or more")
    for name in ("adc_threshold", "min_snr", "min_res", "max_res"):
        if options[name] is not None and options[name] < 0:
            raise HitbenchError(f"{option(name)} {options[name]}: give 0 or more")
    for low, high in (("min_res", "max_res"), ("min_pixel_count", "max_pixel_count")):
        if options[low] is not None and options[high] is not None and options[low] >= options[high]:
            raise HitbenchError(
                f"{option(low)} {options[low]} and {option(high)} {options[high]}: the range is "
                f"empty, every frame would be a miss; give {option(low)} below {option(high)}"
            )
    if chunk_size < 1:
        raise HitbenchError(f"--chunk-size {chunk_size}: give 1 or more frames per chunk")


@main.command("simulate")
@click.option("--preset", help="Named experiment (e.g. cxi-streptavidin, tiny).")
@click.option("--experiment", "experiment_file", type=click.Path(path_type=Path), help="Experiment TOML file.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--runs", "runs_text", help="Runs to write, e.g. 90-93,98 (default all).")
@click.option("--scale", type=float, help="Fraction of each run's events to simulate (default the preset's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@_n_jobs_option("Parallel workers (joblib)")
@_compression_option
def simulate_command(
    preset: str | None,
    experiment_file: Path | None,
    out_dir: Path,
    runs_text: str | None,
    scale: float | None,
    seed: int,
    n_jobs: int,
    compression: str,
) -> None:
    """Simulate an experiment's runs: one CXI file per run (existing files are never overwritten)."""
    from hitbench.data.dataset import select_runs
    from hitbench.parallel import parallel_backend
    from hitbench.simulate import load_experiment, write_experiment

    if (preset is None) == (experiment_file is None):
        raise HitbenchError("simulate: give exactly one of --preset NAME or --experiment FILE")
    _check_seed(seed)
    _check_scale(scale)
    exp = load_experiment(_preset(preset) if preset is not None else experiment_file)
    runs = [int(r) for r in select_runs(runs_text, [str(r) for r in exp.runs], option="--runs")] if runs_text else None
    with parallel_backend():
        for path in write_experiment(
            exp, out_dir, runs=runs, scale=scale, seed=seed, n_jobs=n_jobs, compression=compression
        ):
            click.echo(str(path))


def _preset(preset: str) -> str:
    """--preset: a preset name (whatever is in the working folder) or an experiment TOML file, never data.

    A bare preset name always means the preset; a folder of the same name is data, given with --data.
    """
    from hitbench.simulate import preset_names

    if preset in preset_names() or not Path(preset).is_dir():
        return preset
    raise HitbenchError(
        f"--preset {preset}: is a folder; --preset takes a preset name ({', '.join(preset_names())}) "
        f"or an experiment TOML file, give data with --data {preset}"
    )


#: Seconds between two progress lines when the output is not a terminal (a log file).
LOG_PROGRESS_SECONDS = 30.0


def _progress_factory(progress: object):
    """A ``progress(description, total)`` callback factory over a rich Progress, shown from its first task.

    The callback takes the number of steps done (default 1). On a terminal the bar updates live;
    written to a file (``> log``), a plain line ``description: done/total, elapsed`` is printed when a
    step ends at least :data:`LOG_PROGRESS_SECONDS` after the last line, and when the task completes.
    """
    import time

    def factory(description: str, total: int):
        if progress.console.is_terminal:
            progress.start()
            task = progress.add_task(description, total=total)
            return lambda steps=1: progress.advance(task, steps)
        start = last = time.perf_counter()
        done = 0

        def log(steps: int = 1) -> None:
            nonlocal done, last
            done += steps
            now = time.perf_counter()
            if now - last >= LOG_PROGRESS_SECONDS or done >= total:
                last = now
                progress.console.print(f"{description}: {done}/{total}, {now - start:.0f} s", soft_wrap=True)

        return log

    return factory


def _print_table(console: object, title: str, table: object) -> None:
    """Print a results table as the Markdown files show it (intervals in brackets, undefined values as —)."""
    from rich.table import Table

    from hitbench.bench.display import display

    shown = display(table)
    view = Table(title=title)
    for column in shown.columns:
        view.add_column(str(column), justify="right")
    for row in shown.itertuples(index=False):
        view.add_row(*row)
    console.print(view)


def _dask_options(command):
    """The --scheduler/--dask-workers options (see :func:`hitbench.parallel.parallel_backend`)."""
    command = click.option(
        "--dask-workers", type=int, help="Run the joblib work on a local Dask cluster of N worker processes."
    )(command)
    return click.option(
        "--scheduler",
        help="Run the joblib work on the Dask cluster at this scheduler address "
        "(tcp://HOST:PORT); workers must see the same files.",
    )(command)


@main.command("compare")
@click.option(
    "--methods",
    default=",".join(("intensity", "litpix", "svm", "peaks", "cnn")),
    show_default=True,
    help="Comma-separated method names (see `hitbench methods`).",
)
@click.option("--data", type=click.Path(path_type=Path), help="Folder of CXI runs, or a labels CSV of image files.")
@click.option(
    "--preset", help="Simulated experiment (name or TOML file) when --data is not given [default: cxi-streptavidin]."
)
@click.option("--scale", type=float, help="Fraction of the preset's events to simulate [default: the preset's].")
@click.option("--train-runs", help="Runs to train on, e.g. 90-93 [default: the preset's training runs].")
@click.option("--test-runs", help="Runs to test on [default: all].")
@click.option(
    "--cross-experiment",
    multiple=True,
    help="Also test on another experiment: a preset name (always the preset; a folder of that name is "
    "given as ./NAME), a folder of CXI runs or of images with labels.csv (repeatable).",
)
@click.option(
    "--labels",
    type=click.Choice(["peaks", "truth"]),
    default="peaks",
    show_default=True,
    help="peaks: the study's peak-count rule; truth: the simulator's crystal-in-beam truth.",
)
@click.option("--param", "params", multiple=True, help="Method parameter METHOD.NAME=VALUE (repeatable).")
@click.option(
    "--holdout",
    type=float,
    default=0.3,
    show_default=True,
    help="Fraction of each training run's frames held out to score it.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("hitbench-results"),
    show_default=True,
    help="Folder for results, tables and figures.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    help="Cache of simulated data and trained models [default: $HITBENCH_CACHE or ~/.cache/hitbench].",
)
@_n_jobs_option("joblib workers")
@click.option(
    "--seed",
    "seeds",
    default="0",
    show_default=True,
    help="Seed of simulation, splits and training; several (0,1,2) repeat the training "
    "and add tables/seeds.md (the spread over seeds).",
)
@click.option("--save-models", is_flag=True, help="Also copy the trained models to OUT/models/.")
@_geometry_option
@_data_path_option
@_dask_options
def compare_command(
    methods: str,
    data: Path | None,
    preset: str | None,
    scale: float | None,
    train_runs: str | None,
    test_runs: str | None,
    cross_experiment: tuple[str, ...],
    labels: str,
    params: tuple[str, ...],
    holdout: float,
    out: Path,
    cache_dir: Path | None,
    n_jobs: int,
    seeds: str,
    save_models: bool,
    geometry: Path | None,
    data_path: str | None,
    scheduler: str | None,
    dask_workers: int | None,
) -> None:
    """Train and test hit finders across runs (and experiments); print and write Table II-style results."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hitbench.bench.compare import CompareSettings, parse_params, run_compare
    from hitbench.bench.data import default_cache_dir
    from hitbench.bench.tables import ALPHA, table_title
    from hitbench.parallel import parallel_backend

    names = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        seed_list = tuple(_check_seed(int(s)) for s in seeds.split(","))
    except ValueError:
        raise HitbenchError(f"--seed {seeds}: give an integer or a comma-separated list of integers") from None
    if data is not None and preset is not None:
        raise HitbenchError("--data and --preset: give one of them, not both")
    _check_scale(scale)
    preset = _preset(preset) if preset is not None else None
    settings = CompareSettings(
        methods=names,
        out=out,
        cache_dir=cache_dir or default_cache_dir(),
        data=data,
        preset=preset,
        scale=scale,
        train_runs=train_runs,
        test_runs=test_runs,
        cross_experiment=list(cross_experiment),
        labels=labels,
        params=parse_params(params, names),
        seeds=seed_list,
        holdout=holdout,
        n_jobs=n_jobs,
        save_models=save_models,
        geometry=geometry,
        data_path=data_path,
    )
    console = Console(width=None if sys.stdout.isatty() else 200)  # a log file gets whole table rows
    start = time.perf_counter()
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    try:
        with parallel_backend(scheduler, dask_workers):
            outcome = run_compare(settings, " ".join(["hitbench", *sys.argv[1:]]), _progress_factory(progress))
    finally:
        if progress.live.is_started:
            progress.stop()
    for stem, table in outcome["tables"].items():
        if stem == "pairs":  # one row per test: too long for the terminal
            found = int((table["better"] != "none").sum())
            console.print(
                f"{len(table)} paired tests (McNemar, Holm), {found} significant at {ALPHA:.0%}: {out}/tables/pairs.md"
            )
            continue
        _print_table(console, table_title(stem, outcome["results"]), table)
    console.print(
        f"trained {outcome['trained']} model(s), scored {outcome['predicted']} run(s) "
        f"(the rest from the cache) in {time.perf_counter() - start:.1f} s; results in {out}/"
    )


@main.command("report")
@click.argument("results", type=click.Path(path_type=Path))
@click.option(
    "--docs",
    type=click.Path(path_type=Path),
    default=Path("docs"),
    show_default=True,
    help="mkdocs docs folder to write results.md and img/results/ into.",
)
@click.option(
    "--study-scale",
    is_flag=True,
    help="Write study-scale.md instead: each method's Table II beside the "
    "study's (DOCS/reference/study_table2.csv), and the cost of each step.",
)
@click.option(
    "--with",
    "others",
    multiple=True,
    type=click.Path(path_type=Path),
    help="With --study-scale: another results folder of the same data whose methods get tables of "
    "their own, e.g. the cnn with the study's settings (repeatable).",
)
def report_command(results: Path, docs: Path, study_scale: bool, others: tuple[Path, ...]) -> None:
    """Regenerate the docs' results page and figures (or the study-scale page) from saved `hitbench compare` folders."""
    if others and not study_scale:
        raise HitbenchError("--with: only with --study-scale (the results page shows one comparison)")
    if study_scale:
        from hitbench.bench.study import write_study_page

        page = write_study_page(results, docs, others, " ".join(["hitbench", *sys.argv[1:]]))
    else:
        from hitbench.bench.report import write_docs

        page = write_docs(results, docs)
    click.echo(f"wrote {page}")


@main.command("predict")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Model file (.hbm) from `hitbench compare --save-models`, or a .keras file of the cnn.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--chunk-size", type=int, default=TASK_FRAMES, show_default=True, help="Frames per chunk.")
@click.option(
    "--hits-cxi",
    is_flag=True,
    help="Also write RUN.hits.cxi (the hit frames with their peaks and "
    "fields) and, for CrystFEL's indexamajig, RUN.hits.lst, RUN.geom and RUN.cell.",
)
@_n_jobs_option("joblib workers over chunks")
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Also read a pickled (joblib) model of an older hitbench. "
    "Unpickling runs any code the file holds: only for files you made yourself.",
)
@_compression_option
@_geometry_option
@_data_path_option
@_dask_options
def predict_command(
    runs: tuple[Path, ...],
    model_path: Path,
    out_dir: Path,
    chunk_size: int,
    hits_cxi: bool,
    n_jobs: int,
    trust_pickle: bool,
    compression: str,
    geometry: Path | None,
    data_path: str | None,
    scheduler: str | None,
    dask_workers: int | None,
) -> None:
    """Classify every frame of CXI runs; write RUN.hits.csv (event, score, label) per run into OUT."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hitbench.parallel import parallel_backend
    from hitbench.predict import predict_runs

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    try:
        with parallel_backend(scheduler, dask_workers):
            summaries = predict_runs(
                model_path,
                list(runs),
                out_dir,
                chunk_size=chunk_size,
                hits_cxi=hits_cxi,
                n_jobs=n_jobs,
                progress=_progress_factory(progress),
                compression=compression,
                trust_pickle=trust_pickle,
                geometry=geometry,
                data_path=data_path,
            )
    finally:
        if progress.live.is_started:
            progress.stop()
    for s in summaries:
        rate = s.n_frames / s.seconds if s.seconds else float("inf")
        outputs = ", ".join(str(p) for p in (s.hit_list, s.hits_cxi) if p is not None)
        click.echo(
            f"{s.run}: {s.n_frames} frames, {s.n_hits} hits ({100 * s.n_hits / max(1, s.n_frames):.1f}%), "
            f"{rate:.0f} frames/s -> {outputs}"
        )
        _echo_crystfel(s.crystfel, s.notes)
