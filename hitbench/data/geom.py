"""CrystFEL geometry files (``.geom``): multi-panel detectors, their raw frames and the assembled image.

A facility detector (CSPAD, Jungfrau, ePix, AGIPD, Eiger) stores a frame panel by panel: the raw frame is a
(ss, fs) array in which each panel owns a rectangle ``min_fs..max_fs`` x ``min_ss..max_ss``. The geometry
file places every panel in the laboratory frame, in pixels from the beam (CrystFEL's conventions, see
crystfel_geometry(5)):

- ``PANEL/corner_x``, ``PANEL/corner_y``: where the corner of the panel's first pixel (``min_fs``,
  ``min_ss``) lies, pixels from the beam;
- ``PANEL/fs``, ``PANEL/ss``: the lab directions of one step along the fast and slow scan, e.g.
  ``+0.0000x +1.0000y`` (a ``z`` term is read and ignored: the panels are assembled in projection);
- ``PANEL/res`` (pixels per metre), ``PANEL/clen`` (camera length, m, or an HDF5 path holding it),
  ``PANEL/coffset`` (m, added to clen);
- ``bad_REGION/min_x .. max_y`` (lab pixels) or ``bad_REGION/min_fs .. max_ss`` with ``bad_REGION/panel``
  (raw pixels): pixels left out; ``PANEL/no_index = 1`` leaves a whole panel out;
- ``data`` (the frame stack's HDF5 path), ``dim0 = %``, ``dim1 = ss``, ``dim2 = fs``;
- ``mask`` / ``mask_file`` / ``mask_good`` / ``mask_bad`` (CrystFEL 0.9) or ``mask0_data`` / ``mask0_file`` /
  ``mask0_goodbits`` / ``mask0_badbits`` (0.10 and later): a pixel mask in an HDF5 file (without a file: in
  each run file);
- a key without a panel name before the panels (``clen = 0.1``) is the default of the panels that follow;
- ``;`` starts a comment.

CrystFEL counts pixels from their corner, hitbench (like Cheetah's ``peakXPosRaw``) from their centre, so the
centre of raw pixel (fs, ss) lies at ``corner + (fs - min_fs + 0.5) * fs_vector + (ss - min_ss + 0.5) *
ss_vector``. Every user error is one line naming the file and line.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from hitbench.data.detector import BadRegion, DetectorGeometry, MaskSpec, Panel
from hitbench.errors import HitbenchError

#: Keys a panel takes (also as defaults before the panels).
PANEL_KEYS = frozenset(
    {
        "min_fs",
        "max_fs",
        "min_ss",
        "max_ss",
        "corner_x",
        "corner_y",
        "fs",
        "ss",
        "res",
        "clen",
        "coffset",
        "adu_per_eV",
        "adu_per_photon",
        "max_adu",
        "data",
        "no_index",
        "badrow_direction",
        "mask",
        "mask_file",
        "mask_good",
        "mask_bad",
        "saturation_map",
        "saturation_map_file",
        "flag_lessthan",
        "flag_morethan",
        "flag_equal",
        "photon_energy",
        "wavelength",
        "electron_voltage",
        "bandwidth",
        "photon_energy_bandwidth",
        "photon_energy_scale",
        "peak_list",
        "peak_list_type",
        "detector_shift_x",
        "detector_shift_y",
        "rail_x",
        "rail_y",
        "rail_z",
        "clen_for_centering",
        "orig_min_fs",
        "orig_max_fs",
        "orig_min_ss",
        "orig_max_ss",
    }
)
_NUMBERED = re.compile(r"^(dim\d+|mask\d+_(data|file|goodbits|badbits))$")
_GROUPS = re.compile(r"^rigid_group(_collection)?_\S+$")
_BAD_KEYS = frozenset({"min_x", "max_x", "min_y", "max_y", "min_fs", "max_fs", "min_ss", "max_ss", "panel"})
_VECTOR_TERM = re.compile(r"\s*([+-]?)\s*(\d*\.?\d*(?:[eE][+-]?\d+)?)\s*([xyz])")
_REQUIRED = ("min_fs", "max_fs", "min_ss", "max_ss", "corner_x", "corner_y", "fs", "ss", "res", "clen")


# ---------------------------------------------------------------------- reading a .geom file
def _number(path: Path, line: int, key: str, value: str, *, integer: bool = False) -> float:
    try:
        number = int(value, 0) if integer and not value.lstrip("+-").replace(".", "", 1).isdigit() else float(value)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise HitbenchError(f"{path}:{line}: {key} = {value}: not {kind}; give {kind}") from None
    if not math.isfinite(number) or (integer and number != int(number)):
        raise HitbenchError(f"{path}:{line}: {key} = {value}: give a finite {'whole ' if integer else ''}number")
    return int(number) if integer else float(number)


def _vector(path: Path, line: int, key: str, value: str) -> tuple[float, float]:
    """``+0.0000x +1.0000y`` (z ignored) as (x, y)."""
    text = value.replace(" ", "")
    parts = {"x": 0.0, "y": 0.0, "z": 0.0}
    pos = 0
    for match in _VECTOR_TERM.finditer(value):
        if value[pos : match.start()].strip():
            break
        sign, number, axis = match.groups()
        parts[axis] = (-1.0 if sign == "-" else 1.0) * (float(number) if number not in ("", ".") else 1.0)
        pos = match.end()
    if not text or value[pos:].strip() or pos == 0:
        raise HitbenchError(f"{path}:{line}: {key} = {value}: not a direction; write it as e.g. '+0.0000x +1.0000y'")
    if math.hypot(parts["x"], parts["y"]) < 1e-6:
        raise HitbenchError(f"{path}:{line}: {key} = {value}: has no x or y part; a panel's {key} must lie in x-y")
    return parts["x"], parts["y"]


def _parse_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, key, value) of every setting, comments and blank lines dropped."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise HitbenchError(f"{path}: no such geometry file; check the --geometry path") from None
    except IsADirectoryError:
        raise HitbenchError(f"{path}: is a folder; give a CrystFEL .geom file") from None
    except UnicodeDecodeError:
        raise HitbenchError(f"{path}: not a text file; give a CrystFEL .geom file") from None
    except OSError as exc:
        raise HitbenchError(f"{path}: cannot read ({exc.strerror})") from None
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise HitbenchError(
                f"{path}:{number}: '{line}' is not 'key = value'; fix the line or comment it out with ';'"
            )
        out.append((number, key, value))
    if not out:
        raise HitbenchError(f"{path}: no settings (empty or only comments); give a CrystFEL .geom file")
    return out


def _check_key(path: Path, line: int, key: str, scope: str) -> None:
    if key in PANEL_KEYS or _NUMBERED.match(key):
        return
    raise HitbenchError(
        f"{path}:{line}: unknown key '{key}' ({scope}); see crystfel_geometry(5) for the keys "
        "(panel keys: min_fs, max_fs, min_ss, max_ss, corner_x, corner_y, fs, ss, res, clen, coffset)"
    )


def read_geom(path: str | Path) -> DetectorGeometry:
    """Read and check a CrystFEL geometry file.

    Parameters
    ----------
    path : str or Path
        The ``.geom`` file.

    Returns
    -------
    DetectorGeometry

    Raises
    ------
    HitbenchError
        One line naming the file and line: a line that is not ``key = value``, an unknown key, a value that is
        not a number or a direction, a panel missing a required key (the beam centre is ``corner_x``/``corner_y``,
        the camera length ``clen``), an empty or inverted pixel range, parallel fs/ss, panels overlapping in the
        raw frame or in the lab, a bad region naming no panel or an unknown one, or no panels.
    """
    path = Path(path)
    defaults: dict[str, tuple[int, str]] = {}
    panels: dict[str, dict[str, tuple[int, str]]] = {}
    first_line: dict[str, int] = {}
    bad: dict[str, dict[str, tuple[int, str]]] = {}
    for line, key, value in _parse_lines(path):
        owner, slash, name = key.rpartition("/")
        if not slash:
            if not _GROUPS.match(key):
                _check_key(path, line, key, "a global setting")
                defaults[key] = (line, value)
            continue
        if not owner or "/" in owner:
            raise HitbenchError(f"{path}:{line}: '{key}': give PANEL/KEY or bad_REGION/KEY")
        if owner.startswith("bad"):
            if name not in _BAD_KEYS:
                raise HitbenchError(
                    f"{path}:{line}: unknown key '{name}' of bad region {owner}; give min_x, max_x, "
                    "min_y, max_y, or min_fs, max_fs, min_ss, max_ss with panel"
                )
            bad.setdefault(owner, {})[name] = (line, value)
            first_line.setdefault(owner, line)
            continue
        _check_key(path, line, name, f"panel {owner}")
        if owner not in panels:
            panels[owner] = dict(defaults)  # the defaults given so far
            first_line[owner] = line
        panels[owner][name] = (line, value)
    if not panels:
        raise HitbenchError(f"{path}: no panels (no PANEL/min_fs ... lines); give at least one panel")
    built = [_panel(path, name, settings, first_line[name]) for name, settings in panels.items()]
    offsets = _stack_offsets(path, built, panels)
    built = [replace(p, min_ss=p.min_ss + offsets[p.name], max_ss=p.max_ss + offsets[p.name]) for p in built]
    _check_overlaps(path, built)
    regions = [_bad_region(path, name, settings, first_line[name], built, offsets) for name, settings in bad.items()]
    geom = DetectorGeometry(
        path,
        built,
        regions,
        _masks(path, defaults),
        _data(path, defaults),
        _optional_number(path, defaults, "photon_energy"),
        _optional_number(path, defaults, "adu_per_photon"),
        frozenset(defaults),
    )
    if not geom.mask.any():
        raise HitbenchError(f"{path}: no good pixel left (bad regions and no_index cover every panel); fix them")
    return geom


def _optional_number(path: Path, settings: dict[str, tuple[int, str]], key: str) -> float | None:
    if key not in settings:
        return None
    line, value = settings[key]
    if value.startswith("/"):  # an HDF5 path: a value per run file
        return None
    return _number(path, line, key, value.split()[0])


def _panel(path: Path, name: str, settings: dict[str, tuple[int, str]], line: int) -> Panel:
    for key in _REQUIRED:
        if key not in settings:
            what = {
                "corner_x": " (the beam centre: corner_x/corner_y place the panel relative to the beam)",
                "corner_y": " (the beam centre: corner_x/corner_y place the panel relative to the beam)",
                "clen": " (the camera length, metres, or the HDF5 path holding it)",
                "res": " (pixels per metre)",
            }.get(key, "")
            raise HitbenchError(
                f"{path}:{line}: panel {name} has no {key}{what}; add '{name}/{key} = ...' or a "
                f"global '{key} = ...' before the panels"
            )
    value: dict[str, float] = {}
    for key in ("min_fs", "max_fs", "min_ss", "max_ss"):
        at, text = settings[key]
        value[key] = _number(path, at, f"{name}/{key}", text, integer=True)
        if value[key] < 0:
            raise HitbenchError(f"{path}:{at}: {name}/{key} = {text}: give 0 or more (raw pixels)")
    for low, high in (("min_fs", "max_fs"), ("min_ss", "max_ss")):
        if value[high] < value[low]:
            at = settings[high][0]
            raise HitbenchError(
                f"{path}:{at}: panel {name}: {high} {value[high]} is below {low} {value[low]}; "
                "give the inclusive pixel range"
            )
    for key in ("corner_x", "corner_y", "res", "coffset"):
        if key in settings:
            value[key] = _number(path, settings[key][0], f"{name}/{key}", settings[key][1])
    if value["res"] <= 0:
        raise HitbenchError(
            f"{path}:{settings['res'][0]}: {name}/res = {settings['res'][1]}: give the pixels per "
            "metre, a positive number"
        )
    clen_line, clen_text = settings["clen"]
    clen: float | str = clen_text if clen_text.startswith("/") else _number(path, clen_line, f"{name}/clen", clen_text)
    if isinstance(clen, float) and clen <= 0:
        raise HitbenchError(
            f"{path}:{clen_line}: {name}/clen = {clen_text}: give the camera length in metres, a positive number"
        )
    fs = _vector(path, settings["fs"][0], f"{name}/fs", settings["fs"][1])
    ss = _vector(path, settings["ss"][0], f"{name}/ss", settings["ss"][1])
    if abs(fs[0] * ss[1] - ss[0] * fs[1]) < 1e-6:
        raise HitbenchError(
            f"{path}:{settings['ss'][0]}: panel {name}: fs ({settings['fs'][1]}) and ss "
            f"({settings['ss'][1]}) are parallel; give perpendicular directions"
        )
    no_index = False
    if "no_index" in settings:
        no_index = bool(
            _number(path, settings["no_index"][0], f"{name}/no_index", settings["no_index"][1], integer=True)
        )
    return Panel(
        name,
        value["min_fs"],
        value["max_fs"],
        value["min_ss"],
        value["max_ss"],
        value["corner_x"],
        value["corner_y"],
        fs,
        ss,
        value["res"],
        clen,
        value.get("coffset", 0.0),
        no_index,
        line,
    )


def _check_overlaps(path: Path, panels: list[Panel]) -> None:
    """Refuse two panels sharing raw pixels, or covering the same lab area (by more than a tenth of a pixel)."""
    for i, a in enumerate(panels):
        for b in panels[i + 1 :]:
            if a.min_fs <= b.max_fs and b.min_fs <= a.max_fs and a.min_ss <= b.max_ss and b.min_ss <= a.max_ss:
                raise HitbenchError(
                    f"{path}:{b.line}: panels {a.name} and {b.name} share raw pixels (fs {max(a.min_fs, b.min_fs)}-"
                    f"{min(a.max_fs, b.max_fs)}, ss {max(a.min_ss, b.min_ss)}-{min(a.max_ss, b.max_ss)}); give each "
                    "panel its own min_fs..max_fs, min_ss..max_ss"
                )
            if _outlines_overlap(a.outline(), b.outline(), 0.1):
                raise HitbenchError(
                    f"{path}:{b.line}: panels {a.name} and {b.name} overlap on the detector (their corner_x/corner_y "
                    "and fs/ss put them on the same place); fix the corners"
                )


def _outlines_overlap(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    """Whether two convex quadrilaterals overlap by more than ``tolerance`` (separating-axis test)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for ex, ey in edges:
            normal = np.array([-ey, ex]) / math.hypot(ex, ey)
            pa, pb = a @ normal, b @ normal
            if pa.max() <= pb.min() + tolerance or pb.max() <= pa.min() + tolerance:
                return False
    return True


def _stack_offsets(path: Path, panels: list[Panel], settings: dict[str, dict[str, tuple[int, str]]]) -> dict[str, int]:
    """Rows each panel moves by when an (n, panel, ss, fs) stack is read with its panels stacked along ss.

    The dims of every panel (its own or the defaults) are either ``%, ss, fs`` (no move) or ``%, K, ss, fs``: the
    panel is module K of the stack, read at ss ``K * rows + min_ss`` (rows: the modules' ss size, the largest
    ``max_ss + 1``), as :class:`hitbench.data.cxi.CXIRun` reads such a stack.
    """
    rows = max(p.max_ss for p in panels) + 1
    offsets, stacked = {}, set()
    for panel in panels:
        dims = {int(key[3:]): item for key, item in settings[panel.name].items() if key.startswith("dim")}
        order = [dims[k][1] for k in sorted(dims)]
        if not dims or order == ["%", "ss", "fs"]:
            offsets[panel.name] = 0
        elif sorted(dims) == [0, 1, 2, 3] and [order[0], *order[2:]] == ["%", "ss", "fs"] and order[1].isdigit():
            offsets[panel.name] = int(order[1]) * rows
            stacked.add(panel.name)
        else:
            line = dims[1][0] if 1 in dims else max(at for at, _ in dims.values())
            raise HitbenchError(
                f"{path}:{line}: panel {panel.name}: dims {' '.join(order)}: hitbench reads (frame, "
                "ss, fs) stacks, or (frame, panel, ss, fs) with the panel's module number; give dim0 = "
                "%, dim1 = ss, dim2 = fs, or dim0 = %, PANEL/dim1 = MODULE, dim2 = ss, dim3 = fs"
            )
    if 0 < len(stacked) < len(panels):
        line = min(settings[p.name]["dim1"][0] for p in panels if "dim1" in settings[p.name])
        raise HitbenchError(
            f"{path}:{line}: some panels give a module number (dim1) and some do not; give every "
            "panel its module, or none"
        )
    return offsets


def _bad_region(
    path: Path, name: str, settings: dict[str, tuple[int, str]], line: int, panels: list[Panel], offsets: dict[str, int]
) -> BadRegion:
    lab, raw = ("min_x", "max_x", "min_y", "max_y"), ("min_fs", "max_fs", "min_ss", "max_ss")
    given = set(settings) - {"panel"}
    if given == set(lab):
        keys, is_raw = lab, False
    elif given == set(raw):
        keys, is_raw = raw, True
    else:
        raise HitbenchError(
            f"{path}:{line}: bad region {name} gives {', '.join(sorted(given)) or 'no bounds'}; give "
            "all four of min_x, max_x, min_y, max_y, or of min_fs, max_fs, min_ss, max_ss"
        )
    bounds = tuple(_number(path, settings[k][0], f"{name}/{k}", settings[k][1]) for k in keys)
    panel = settings["panel"][1] if "panel" in settings else None
    if is_raw and panel is None:
        raise HitbenchError(
            f"{path}:{line}: bad region {name} is in fs/ss; add '{name}/panel = PANEL' (the panel it lies on)"
        )
    if panel is not None and panel not in [p.name for p in panels]:
        raise HitbenchError(
            f"{path}:{settings['panel'][0]}: bad region {name}: no panel '{panel}'; name one of the file's panels"
        )
    if is_raw:  # fs/ss in the panel's module, as its min_ss..max_ss
        bounds = (bounds[0], bounds[1], bounds[2] + offsets[panel], bounds[3] + offsets[panel])
    return BadRegion(name, bounds, is_raw, panel, line)


def _masks(path: Path, settings: dict[str, tuple[int, str]]) -> list[MaskSpec]:
    """The masks of the global settings (CrystFEL 0.9 ``mask``..., 0.10 ``maskN_data``...)."""
    groups: dict[str, dict[str, tuple[int, str]]] = {}
    old = {"mask": "data", "mask_file": "file", "mask_good": "goodbits", "mask_bad": "badbits"}
    for key, item in settings.items():
        if key in old:
            groups.setdefault("mask", {})[old[key]] = item
        elif key.startswith("mask") and "_" in key:
            prefix, part = key.split("_", 1)
            groups.setdefault(prefix, {})[part] = item
    specs = []
    for prefix, parts in groups.items():
        if "data" not in parts:
            line = min(at for at, _ in parts.values())
            raise HitbenchError(
                f"{path}:{line}: mask {prefix} has no {prefix}_data (its HDF5 path); add it or drop the mask lines"
            )
        bits = {
            k: _number(path, parts[k][0], f"{prefix}_{k}", parts[k][1], integer=True) if k in parts else 0
            for k in ("goodbits", "badbits")
        }
        file = parts["file"][1] if "file" in parts else None
        specs.append(MaskSpec(parts["data"][1], file, int(bits["goodbits"]), int(bits["badbits"])))
    return specs


def _data(path: Path, settings: dict[str, tuple[int, str]]) -> str | None:
    """The frame stack's HDF5 path (the dims are checked per panel, :func:`_stack_offsets`)."""
    if "data" not in settings:
        return None
    return settings["data"][1]


# ---------------------------------------------------------------------- writing a .geom file
def geom_text(
    panels: list[Panel],
    *,
    photon_energy: float | None = None,
    adu_per_photon: float | None = None,
    data: str | None = None,
    header: str = "",
) -> str:
    """A CrystFEL geometry file of panels (the inverse of :func:`read_geom`).

    Parameters
    ----------
    panels : list of Panel
        The panels (each with a numeric clen).
    photon_energy : float, optional
        eV.
    adu_per_photon : float, optional
        Detector units per photon.
    data : str, optional
        HDF5 path of the frames (with dims %, ss, fs).
    header : str
        Comment lines put first (without the ``;``).

    Returns
    -------
    str
    """
    lines = [f"; {text}" for text in header.splitlines()]
    if photon_energy is not None:
        lines.append(f"photon_energy = {photon_energy:g}")
    if adu_per_photon is not None:
        lines.append(f"adu_per_photon = {adu_per_photon:g}")
    if data is not None:
        lines += [f"data = {data}", "dim0 = %", "dim1 = ss", "dim2 = fs"]
    shared_clen = len({panel.clen for panel in panels}) == 1  # CrystFEL 0.10 and later take clen for all panels
    if shared_clen:
        lines.append(f"clen = {panels[0].clen:.6g}")
    for panel in panels:
        lines.append("")
        lines += [f"{panel.name}/{key} = {getattr(panel, key)}" for key in ("min_fs", "max_fs", "min_ss", "max_ss")]
        lines += [f"{panel.name}/corner_x = {panel.corner_x:.4f}", f"{panel.name}/corner_y = {panel.corner_y:.4f}"]
        for key in ("fs", "ss"):
            vx, vy = getattr(panel, key)
            lines.append(f"{panel.name}/{key} = {vx:+.6f}x {vy:+.6f}y")
        lines.append(f"{panel.name}/res = {panel.res:.8g}")
        if not shared_clen:
            lines.append(f"{panel.name}/clen = {panel.clen:.6g}")
        if panel.coffset:
            lines.append(f"{panel.name}/coffset = {panel.coffset:g}")
    return "\n".join(lines) + "\n"
