"""The ``hitbench`` command line: one click group, one command per job.

Errors a user can cause are :class:`hitbench.errors.HitbenchError`; the group prints them
as one line on stderr and exits with status 1, never with a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hitbench import __version__
from hitbench.errors import HitbenchError

HDF5_SUFFIXES = (".cxi", ".h5", ".hdf5", ".nxs")


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


@main.command("methods")
def methods_command() -> None:
    """List the registered hit-finding methods."""
    from rich.console import Console
    from rich.table import Table

    from hitbench.methods import registry

    table = Table(title="hit-finding methods (entry-point group hitbench.methods)")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name in registry.names():
        table.add_row(name, registry.describe(name))
    Console().print(table)


@main.command("info")
@click.argument("path", type=click.Path(path_type=Path))
def info_command(path: Path) -> None:
    """Describe a CXI file or a detector image file: frames, shape, geometry, peaks and labels."""
    import h5py
    from rich.console import Console
    from rich.table import Table

    from hitbench.data.cxi import CXIRun
    from hitbench.data.formats import read_image

    if not path.exists():
        raise HitbenchError(f"{path}: no such file; check the path")
    table = Table(title=str(path), show_header=False)
    if path.suffix.lower() in HDF5_SUFFIXES or (path.is_file() and h5py.is_hdf5(path)):
        run = CXIRun(path)
        table.add_row("format", "CXI/HDF5")
        table.add_row("frames", str(run.n_frames))
        table.add_row("frame shape", f"{run.frame_shape[0]} x {run.frame_shape[1]}")
        table.add_row("dtype", str(run.dtype))
        table.add_row("good pixels", f"{int(run.mask.sum())} of {run.mask.size}")
        geometry = run.geometry
        table.add_row("peaks", "yes (/entry_1/result_1)" if run.has_peaks else "no")
        table.add_row("hitbench fields", ", ".join(run.fields) or "none")
        for key, value in run.attrs.items():
            table.add_row(f"run {key}", str(value))
    else:
        image = read_image(path)
        table.add_row("format", "detector image (fabio)")
        table.add_row("frame shape", f"{image.frame.shape[0]} x {image.frame.shape[1]}")
        table.add_row("good pixels", f"{int(image.mask.sum())} of {image.mask.size}")
        geometry = image.geometry
        if image.beam_center is not None:
            table.add_row("beam centre (x, y)", f"{image.beam_center[0]:.2f}, {image.beam_center[1]:.2f} px")
    if geometry is not None:
        table.add_row("distance", f"{geometry.distance * 1e3:.1f} mm")
        table.add_row("pixel size", f"{geometry.x_pixel_size * 1e6:.0f} x {geometry.y_pixel_size * 1e6:.0f} um")
        table.add_row("photon energy", f"{geometry.photon_energy:.0f} eV")
    else:
        table.add_row("geometry", "not recorded")
    Console().print(table)


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
@click.option("--miss-below", type=int, default=2, show_default=True, help="Fewer peaks than this: miss (0).")
@click.option("--hit-above", type=int, default=10, show_default=True, help="More peaks than this: hit (1).")
@click.option("--chunk-size", type=int, default=256, show_default=True, help="Frames per chunk.")
@click.option("--n-jobs", type=int, default=1, show_default=True, help="joblib workers over chunks.")
def label_command(paths: tuple[Path, ...], miss_below: int, hit_above: int, chunk_size: int, n_jobs: int,
                  **finder_options: float | int | None) -> None:
    """Find peaks (peakfinder8) in CXI runs and write them, peak counts and labels into each file."""
    from hitbench.peaks import PeakFinder8
    from hitbench.peaks.labels import label_run

    finder = PeakFinder8(**{k: v for k, v in finder_options.items() if v is not None})
    for path in paths:
        labels = label_run(path, finder, miss_below=miss_below, hit_above=hit_above, chunk_size=chunk_size,
                           n_jobs=n_jobs)
        click.echo(f"{path}: {labels.size} frames, {int((labels == 1).sum())} hits, {int((labels == 0).sum())} "
                   f"misses, {int((labels == -1).sum())} ambiguous")
