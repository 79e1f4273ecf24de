"""Hand-off to CrystFEL: the list, geometry and unit-cell files ``indexamajig`` reads beside a CXI file.

- List file (``.lst``): one line per frame, ``FILE //EVENT`` (FILE absolute, EVENT the frame's index).
- Geometry file (``.geom``): photon energy, camera length, pixel size, ``adu_per_photon``, the frame stack, the
  mask and the peak table (``peak_list = /entry_1/result_1``, ``peak_list_type = cxi``) of the same file, and
  one panel whose corner puts the beam centre at CrystFEL's origin. CrystFEL counts pixels from their corner,
  hitbench from their centre (CrystFEL adds 0.5 to the peak positions it imports from a CXI file), so
  ``corner_x = -(beam_centre_x + 0.5)`` and ``corner_y = -(beam_centre_y + 0.5)``.
- Unit-cell file (``.cell``): the simulated sample's cell, primitive (the simulator has no systematic absences),
  lattice type from the cell's metric.

The geometry needs the run's geometry (:class:`hitbench.geometry.Geometry`) and the run attributes
``beam_centre_x``, ``beam_centre_y`` (pixels) and ``gain_adu_per_photon``; the cell file needs ``unit_cell``.
The simulator records all of them. Every file appears whole or not at all, and existing files are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from hitbench.atomic import atomic_path
from hitbench.data.cxi import DETECTOR, RESULT, CXIRun
from hitbench.data.detector import DetectorGeometry, Panel
from hitbench.data.geom import geom_text
from hitbench.errors import HitbenchError

#: Run attributes the geometry file needs (besides the CXI geometry).
GEOMETRY_ATTRS = ("beam_centre_x", "beam_centre_y", "gain_adu_per_photon")


def refuse_existing(paths: Iterable[Path]) -> None:
    """Raise HitbenchError naming the first of ``paths`` that exists (checked before any work starts).

    Parameters
    ----------
    paths : iterable of Path
        Files about to be written.
    """
    for path in paths:
        if path.exists():
            raise HitbenchError(f"{path}: already exists; remove it or choose another output folder")


def _write_new(path: Path, text: str) -> Path:
    """Write ``text`` to a file that must not exist yet, atomically."""
    refuse_existing([path])
    with atomic_path(path, overwrite=False) as tmp:
        tmp.write_text(text)
    return path


def write_list(path: str | Path, cxi_path: str | Path, events: Iterable[int]) -> Path:
    """Write a CrystFEL list file: one ``FILE //EVENT`` line per frame.

    Parameters
    ----------
    path : str or Path
        The list file (must not exist).
    cxi_path : str or Path
        The CXI file holding the frames (written as an absolute path).
    events : iterable of int
        Frame indices in that file.

    Returns
    -------
    Path
        The written list file.
    """
    name = Path(cxi_path).resolve()
    return _write_new(Path(path), "".join(f"{name} //{int(event)}\n" for event in events))


def geometry_gaps(run: CXIRun) -> list[str]:
    """What the run lacks for a CrystFEL geometry file (empty when it has everything).

    Parameters
    ----------
    run : CXIRun
        The CXI file.

    Returns
    -------
    list of str
        Descriptions of the missing items.
    """
    gaps = [f"attribute {key} of /entry_1/hitbench" for key in GEOMETRY_ATTRS if key not in run.attrs]
    if run.geometry is None:
        gaps.insert(0, f"distance, pixel size and photon energy under {DETECTOR} and /entry_1/instrument_1/source_1")
    elif run.geometry.x_pixel_size != run.geometry.y_pixel_size:
        gaps.insert(0, "square pixels (x_pixel_size differs from y_pixel_size)")
    return gaps


def geometry_text(run: CXIRun) -> str:
    """The CrystFEL geometry file of a run (frames, mask and peaks read from the file being indexed).

    Parameters
    ----------
    run : CXIRun
        The CXI file.

    Returns
    -------
    str
        The geometry file's text.
    """
    gaps = geometry_gaps(run)
    if gaps:
        raise HitbenchError(f"{run.path}: no CrystFEL geometry without {'; '.join(gaps)}")
    centre_x, centre_y = float(run.attrs["beam_centre_x"]), float(run.attrs["beam_centre_y"])
    height, width = run.frame_shape
    panel = Panel(
        "p0",
        0,
        width - 1,
        0,
        height - 1,
        -(centre_x + 0.5),
        -(centre_y + 0.5),
        (1.0, 0.0),
        (0.0, 1.0),
        1.0 / run.geometry.x_pixel_size,
        run.geometry.distance,
    )
    lines = [
        f"; CrystFEL geometry of {run.path.name} (hitbench): one {width}x{height} panel, beam centre at pixel "
        f"({centre_x:.3f}, {centre_y:.3f})",
        "; hitbench counts pixels from their centre, CrystFEL from their corner: corner = -(beam centre + 0.5)",
        *_reading_lines(run, set()),
    ]
    return "\n".join(lines) + "\n" + geom_text([panel])


def raw_geometry_text(detector: DetectorGeometry, run: CXIRun) -> str:
    """A multi-panel detector's own geometry, with what indexamajig needs to read a run of its raw frames.

    The run's peaks are in raw coordinates (``hitbench label --geometry``), so the user's geometry places them;
    lines the file lacks are put first: the peak table (``peak_list``, ``peak_list_type = cxi``), the frames
    (``data`` and dims), the run's mask, the photon energy and ``adu_per_photon`` where the run records them.

    Parameters
    ----------
    detector : DetectorGeometry
        The geometry the run was labelled with.
    run : CXIRun
        The CXI file indexamajig will read.

    Returns
    -------
    str
        The geometry file's text.
    """
    lines = [
        f"; {detector.path.name} for {run.path.name} (hitbench): peaks in raw coordinates from {RESULT}",
        *_reading_lines(run, detector.global_keys),
    ]
    return "\n".join(lines) + "\n\n" + detector.path.read_text()


def _reading_lines(run: CXIRun, keys: set[str]) -> list[str]:
    """What indexamajig needs to read ``run`` that a geometry with the global ``keys`` lacks.

    The peak table (``peak_list``, ``peak_list_type = cxi``), the frames (``data`` and dims), the run's mask, the
    photon energy and ``adu_per_photon``, the last two where the run records them.
    """
    lines = []
    if "peak_list" not in keys:
        lines += [f"peak_list = {RESULT}", "peak_list_type = cxi"]
    if "data" not in keys:
        lines += [f"data = {run.data_path}"] + (
            [] if any(k.startswith("dim") for k in keys) else ["dim0 = %", "dim1 = ss", "dim2 = fs"]
        )
    if run.has_mask and not any(k.startswith("mask") for k in keys):
        lines += [f"mask0_data = {DETECTOR}/mask", "mask0_goodbits = 0x0", "mask0_badbits = 0xffff"]
    if not {"photon_energy", "wavelength", "electron_voltage"} & keys and run.geometry is not None:
        lines.append(f"photon_energy = {run.geometry.photon_energy:.6g}")
    if not {"adu_per_photon", "adu_per_eV"} & keys and "gain_adu_per_photon" in run.attrs:
        lines.append(f"adu_per_photon = {float(run.attrs['gain_adu_per_photon']):.6g}")
    return lines


def write_geometry(path: str | Path, run: CXIRun) -> Path:
    """Write a run's CrystFEL geometry file (see :func:`geometry_text`).

    Parameters
    ----------
    path : str or Path
        The geometry file (must not exist).
    run : CXIRun
        The CXI file.

    Returns
    -------
    Path
        The written file.
    """
    return _write_new(Path(path), geometry_text(run))


def lattice(cell: Sequence[float]) -> tuple[str, str]:
    """CrystFEL lattice type and unique axis of a cell, from its metric.

    Parameters
    ----------
    cell : sequence of float
        a, b, c (Å), alpha, beta, gamma (degrees).

    Returns
    -------
    (str, str)
        ``lattice_type`` (triclinic ... cubic) and ``unique_axis`` (a, b, c, or * when it has none).
    """
    a, b, c, alpha, beta, gamma = (float(v) for v in cell)

    def same(x: float, y: float) -> bool:
        return abs(x - y) <= 1e-4 * max(abs(x), abs(y))

    right = [same(angle, 90.0) for angle in (alpha, beta, gamma)]
    if all(right):
        if same(a, b) and same(b, c):
            return "cubic", "*"
        for axis, (x, y) in zip("cab", ((a, b), (b, c), (a, c)), strict=True):
            if same(x, y):
                return "tetragonal", axis
        return "orthorhombic", "*"
    if same(a, b) and right[0] and right[1] and same(gamma, 120.0):
        return "hexagonal", "c"
    if same(a, b) and same(b, c) and same(alpha, beta) and same(beta, gamma):
        return "rhombohedral", "*"
    if sum(right) == 2:
        return "monoclinic", "abc"[right.index(False)]
    return "triclinic", "*"


def cell_text(cell: Sequence[float]) -> str:
    """A CrystFEL unit-cell file of a primitive cell.

    Parameters
    ----------
    cell : sequence of float
        a, b, c (Å), alpha, beta, gamma (degrees).

    Returns
    -------
    str
        The cell file's text.
    """
    if len(cell) != 6 or min(cell) <= 0:
        raise HitbenchError(f"unit cell {list(cell)}: give a, b, c (Å) and alpha, beta, gamma (degrees), positive")
    lattice_type, unique_axis = lattice(cell)
    names = ("a", "b", "c", "al", "be", "ga")
    units = ("A",) * 3 + ("deg",) * 3
    return (
        "\n".join(
            [
                "CrystFEL unit cell file version 1.0",
                "",
                f"lattice_type = {lattice_type}",
                "centering = P",
                f"unique_axis = {unique_axis}",
                "",
                *(f"{name} = {float(value):.4f} {unit}" for name, value, unit in zip(names, cell, units, strict=True)),
            ]
        )
        + "\n"
    )


def handoff_paths(out_dir: Path, list_stem: str, run_stem: str) -> tuple[Path, Path, Path]:
    """The list, geometry and cell files written for a CXI file.

    Parameters
    ----------
    out_dir : Path
        Output folder.
    list_stem : str
        Stem of the list file (the CXI file's).
    run_stem : str
        Stem of the geometry and cell files (the run's).

    Returns
    -------
    (Path, Path, Path)
        ``<list_stem>.lst``, ``<run_stem>.geom`` and ``<run_stem>.cell`` in ``out_dir``.
    """
    return out_dir / f"{list_stem}.lst", out_dir / f"{run_stem}.geom", out_dir / f"{run_stem}.cell"


def write_handoff(
    run: CXIRun, events: Iterable[int], paths: tuple[Path, Path, Path], detector: DetectorGeometry | None = None
) -> tuple[list[Path], list[str]]:
    """Write the list file of ``events`` of a CXI file, and its geometry and cell files when the run allows.

    Parameters
    ----------
    run : CXIRun
        The CXI file indexamajig will read (frames, mask and peaks).
    events : iterable of int
        Frames to list.
    paths : (Path, Path, Path)
        List, geometry and cell files (see :func:`handoff_paths`); none may exist.
    detector : DetectorGeometry, optional
        The frames are raw multi-panel frames of this detector: the geometry file is its own
        (:func:`raw_geometry_text`).

    Returns
    -------
    (list of Path, list of str)
        The files written, and why the geometry or cell file was left out (empty when both were written).
    """
    list_file, geometry_file, cell_file = paths
    written = [write_list(list_file, run.path, events)]
    notes = []
    gaps = geometry_gaps(run) if detector is None else []
    if detector is not None:
        written.append(_write_new(geometry_file, raw_geometry_text(detector, run)))
    elif gaps:
        notes.append(f"no {geometry_file.name}: the run lacks {'; '.join(gaps)}")
    else:
        written.append(write_geometry(geometry_file, run))
    if "unit_cell" in run.attrs:
        written.append(_write_new(cell_file, cell_text(list(run.attrs["unit_cell"]))))
    else:
        notes.append(f"no {cell_file.name}: the run records no unit_cell (give indexamajig your own -p CELL file)")
    return written, notes
