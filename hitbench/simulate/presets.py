"""Named experiments: TOML files describing beam, detector, sample, background and runs.

An experiment file has top-level keys ``name``, ``description``, ``scale`` and ``frame_shape`` and the
tables ``[beam]``, ``[detector]``, ``[sample]``, ``[background]``, ``[conditions]`` and ``[[runs]]``.
Every field is listed, with its unit and meaning, in the dataclasses below and in docs/simulator.md.
Unknown or ill-typed fields raise :class:`hitbench.errors.HitbenchError` naming the field.

Run conditions (``[conditions]`` and per-run overrides in ``[[runs]]``) are either a number or a
``[low, high]`` range from which each run draws its value uniformly (seeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import tomllib

from hitbench.errors import HitbenchError

#: Run conditions, their meaning, and whether they must be integers.
CONDITIONS = {
    "flux": "mean pulse intensity relative to nominal (scales spots and background)",
    "background": "jet/solvent thickness relative to nominal (scales the solvent and water-ring background)",
    "gain": "detector gain relative to the detector's gain_adu_per_photon",
    "crystal_size_um": "median crystal size, micrometres (log-normal across hits)",
    "crystal_size_spread": "log-normal sigma of the crystal size across hits",
    "new_hot_pixels": "hot pixels that appear in this run (unmasked, persist through the run)",
    "dark_offset_adu": "stale dark (pedestal) calibration: ADU every pixel of an integrating detector reads too high",
}
_INTEGER_CONDITIONS = {"new_hot_pixels"}


@dataclass(frozen=True)
class Beam:
    """X-ray beam.

    Parameters
    ----------
    photon_energy_ev : float
        Photon energy, eV.
    bandwidth : float
        Relative rms spectral width (SASE ~0.001-0.003; monochromator ~1e-4).
    flux_jitter : float
        Relative rms shot-to-shot pulse-intensity fluctuation (gamma distributed, SASE-like).
    beam_centre_offset_px : tuple of float
        Nominal beam centre (x, y) relative to the crop centre, pixels.
    beam_centre_jitter_px : float
        rms of the per-run random beam-centre offset, pixels.
    """

    photon_energy_ev: float
    bandwidth: float = 0.002
    flux_jitter: float = 0.2
    beam_centre_offset_px: tuple[float, float] = (0.0, 0.0)
    beam_centre_jitter_px: float = 0.0


@dataclass(frozen=True)
class Detector:
    """Detector and the mask of its crop.

    Parameters
    ----------
    kind : str
        ``"integrating"`` (CSPAD/Jungfrau/ePix: gain, readout noise, common mode) or ``"counting"``
        (Pilatus/Eiger: no readout noise, count cut-off, gaps -1, dead pixels -2).
    pixel_size_m : float
        Pixel pitch, metres.
    distance_m : float
        Sample-detector distance, metres.
    panel_shape : tuple of int
        (rows, columns) of one panel/ASIC.
    panel_gap_px : tuple of int
        Gap between panels (rows, columns), pixels.
    panel_origin_px : tuple of float
        (x, y) of a panel corner (gap crossing) relative to the crop centre, pixels.
    beam_stop_radius_px : float
        Radius of the beam stop's shadow around the beam centre, pixels.
    beam_stop_arm_width_px : float
        Width of the beam-stop holder's shadow running from the beam centre to the right edge (0 = none).
    gain_adu_per_photon : float
        Detector units per photon (1 for counting detectors).
    readout_noise_adu : float
        rms readout noise, ADU (0 for counting detectors).
    edge_noise_factor : float
        Readout noise multiplier on panel edge pixels.
    common_mode_adu : float
        rms of the per-panel, per-frame common-mode offset, ADU.
    saturation : float
        Largest recorded value (ADU, or the count cut-off for counting detectors).
    hot_pixels : int
        Hot pixels known from calibration (masked, present in every run).
    hot_pixel_level : tuple of float
        Range of a hot pixel's mean excess value per frame, ADU (counts).
    dead_pixel_fraction : float
        Fraction of dead pixels (masked; -2 on counting detectors, 0 otherwise).
    panels : str
        ``"RxC"``: a detector of R x C whole panels stored raw, panel by panel, with its CrystFEL ``.geom``
        (see :mod:`hitbench.simulate.panels`; ``frame_shape`` is then the side of the assembled crop around
        the beam that the methods see); ``""`` (default): frames are a crop of the assembled image.
    panel_rotations : tuple of int
        With ``panels``: each panel's rotation, 0, 90, 180 or 270 degrees, row by row (default all 0).
    cosmic_rays_per_frame : float
        Mean number of cosmic muons a frame records (Poisson; 0 = none): each deposits its ionisation along a
        track through the sensor (:func:`hitbench.simulate.physics.cosmic_ray_deposit`), unmasked and in no two
        frames at the same place. The truth then has ``n_cosmic_rays`` per frame.
    sensor_thickness_um : float
        Silicon sensor thickness, micrometres (the cosmic muons' path; CSPAD 500, Jungfrau 320, Pilatus 450).
    """

    kind: str
    pixel_size_m: float
    distance_m: float
    panel_shape: tuple[int, int] = (185, 194)
    panel_gap_px: tuple[int, int] = (4, 4)
    panel_origin_px: tuple[float, float] = (0.0, 0.0)
    beam_stop_radius_px: float = 8.0
    beam_stop_arm_width_px: float = 0.0
    gain_adu_per_photon: float = 1.0
    readout_noise_adu: float = 0.0
    edge_noise_factor: float = 1.0
    common_mode_adu: float = 0.0
    saturation: float = 1e6
    hot_pixels: int = 0
    hot_pixel_level: tuple[float, float] = (100.0, 1000.0)
    dead_pixel_fraction: float = 0.0
    panels: str = ""
    panel_rotations: tuple[int, ...] = ()
    cosmic_rays_per_frame: float = 0.0
    sensor_thickness_um: float = 500.0


@dataclass(frozen=True)
class Sample:
    """Crystals.

    Parameters
    ----------
    cell : tuple of float
        Unit cell a, b, c (Å) and alpha, beta, gamma (degrees).
    wilson_b : float
        Overall B factor (Å²): intensities fall as exp(-B / (2 d²)).
    mosaicity_deg : float
        Mosaic spread, degrees (partiality width grows with resolution).
    spot_photons : float
        Mean photons of a fully recorded reflection at zero resolution from a crystal of ``reference_size_um``
        at nominal flux; scales with crystal volume and flux.
    reference_size_um : float
        Crystal size at which ``spot_photons`` holds, micrometres.
    spot_sigma_px : float
        rms spot width on the detector, pixels (spots are spread over a 3x3 box with sub-pixel centre).
    max_spots : int
        Spots kept per frame in the truth lists (brightest first); counts are never truncated.
    """

    cell: tuple[float, float, float, float, float, float]
    wilson_b: float = 20.0
    mosaicity_deg: float = 0.1
    spot_photons: float = 50.0
    reference_size_um: float = 1.0
    spot_sigma_px: float = 0.5
    max_spots: int = 512


@dataclass(frozen=True)
class Background:
    """Diffuse background in photons per pixel at nominal flux (scaled by solid angle).

    Parameters
    ----------
    low_angle : float
        Solvent/jet scatter at zero angle, photons per pixel (scales with the run's ``background``).
    low_angle_falloff : float
        e-folding length of the low-angle scatter in 1/d, 1/Å.
    water_ring : float
        Peak of the water ring, photons per pixel (scales with ``background``).
    water_ring_d : float
        d-spacing of the water ring, Å.
    water_ring_width : float
        rms width of the water ring in 1/d, 1/Å.
    air : float
        Air scatter, photons per pixel (flux only).
    jet_jitter : float
        Relative rms shot-to-shot variation of the jet thickness.
    """

    low_angle: float = 0.5
    low_angle_falloff: float = 0.05
    water_ring: float = 0.0
    water_ring_d: float = 3.15
    water_ring_width: float = 0.035
    air: float = 0.02
    jet_jitter: float = 0.1


@dataclass(frozen=True)
class RunSpec:
    """One run: id, number of events at scale 1, hit fraction, and condition overrides."""

    id: int
    events: int
    hit_fraction: float
    conditions: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A named experiment: geometry, detector, sample, background, condition ranges and runs."""

    name: str
    description: str
    scale: float
    frame_shape: tuple[int, int]
    beam: Beam
    detector: Detector
    sample: Sample
    background: Background
    conditions: dict
    run_specs: tuple[RunSpec, ...]
    source: str = ""
    train_runs: tuple[int, ...] = ()

    @property
    def runs(self) -> list[int]:
        """Run ids in file order."""
        return [spec.id for spec in self.run_specs]

    def run_spec(self, run: int) -> RunSpec:
        """The specification of run ``run`` (HitbenchError if absent)."""
        for spec in self.run_specs:
            if spec.id == run:
                return spec
        raise HitbenchError(f"experiment '{self.name}': no run {run}; runs are {self.runs}")

    def n_frames(self, run: int, scale: float | None = None) -> int:
        """Frames of ``run`` at ``scale`` (the experiment's default scale if None), at least 1."""
        return max(1, round(self.run_spec(run).events * (self.scale if scale is None else scale)))


def preset_names() -> list[str]:
    """Names of the presets shipped with hitbench."""
    return sorted(
        p.name[:-5]
        for p in resources.files("hitbench.simulate").joinpath("presets").iterdir()
        if p.name.endswith(".toml")
    )


def _number(where: str, value: object, *, integer: bool = False, positive: bool = False) -> float | int:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise HitbenchError(f"{where} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise HitbenchError(f"{where} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise HitbenchError(f"{where} must be {'positive' if positive else 'non-negative'}, got {value!r}")
    return value


def _value(where: str, default: object, value: object) -> object:
    if isinstance(default, str):
        if not isinstance(value, str):
            raise HitbenchError(f"{where} must be a string, got {value!r}")
        return value
    if default == ():  # a list of any length of whole numbers
        if not isinstance(value, list):
            raise HitbenchError(f"{where} must be a list of whole numbers, got {value!r}")
        return tuple(_number(f"{where}[{i}]", v, integer=True) for i, v in enumerate(value))
    if isinstance(default, tuple):
        if not isinstance(value, list) or len(value) != len(default):
            raise HitbenchError(f"{where} must be a list of {len(default)} numbers, got {value!r}")
        items = []
        for i, (d, v) in enumerate(zip(default, value, strict=True)):
            if "offset" in where or "origin" in where:
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise HitbenchError(f"{where}[{i}] must be a number, got {v!r}")
                items.append(v)
            else:
                items.append(_number(f"{where}[{i}]", v, integer=isinstance(d, int)))
        return tuple(items)
    return _number(where, value, integer=isinstance(default, int) and not isinstance(default, float))


def _section(cls: type, table: object, where: str, required: tuple[str, ...] = ()) -> object:
    if not isinstance(table, dict):
        raise HitbenchError(f"{where} must be a table")
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise HitbenchError(f"{where}.{key}: unknown field; known fields are {', '.join(known)}")
    for key in required:
        if key not in table:
            raise HitbenchError(f"{where}.{key}: required field is missing")
    defaults = {
        "kind": "",
        "pixel_size_m": 0.0,
        "distance_m": 0.0,
        "photon_energy_ev": 0.0,
        "cell": (0.0,) * 6,
    }
    values = {}
    for key, value in table.items():
        default = known[key].default if key not in defaults else defaults[key]
        values[key] = _value(f"{where}.{key}", default, value)
    return cls(**values)


def _conditions(table: object, where: str) -> dict:
    if not isinstance(table, dict):
        raise HitbenchError(f"{where} must be a table")
    out = {}
    for key, value in table.items():
        if key not in CONDITIONS:
            raise HitbenchError(f"{where}.{key}: unknown condition; known conditions are {', '.join(CONDITIONS)}")
        integer = key in _INTEGER_CONDITIONS
        if isinstance(value, list):
            if len(value) != 2:
                raise HitbenchError(f"{where}.{key} must be a number or a [low, high] range, got {value!r}")
            low, high = (_number(f"{where}.{key}", v, integer=integer) for v in value)
            if high < low:
                raise HitbenchError(f"{where}.{key}: range [low, high] has high < low")
            out[key] = (low, high)
        else:
            v = _number(f"{where}.{key}", value, integer=integer)
            out[key] = (v, v)
    return out


def _experiment(doc: dict, source: str) -> Experiment:
    top = {
        "name",
        "description",
        "scale",
        "frame_shape",
        "train_runs",
        "beam",
        "detector",
        "sample",
        "background",
        "conditions",
        "runs",
    }
    for key in doc:
        if key not in top:
            raise HitbenchError(f"{source}: {key}: unknown field; known fields are {', '.join(sorted(top))}")
    for key in ("name", "frame_shape", "beam", "detector", "sample", "runs"):
        if key not in doc:
            raise HitbenchError(f"{source}: {key}: required field is missing")
    name = _value(f"{source}: name", "", doc["name"])
    shape = _value(f"{source}: frame_shape", (0, 0), doc["frame_shape"])
    if min(shape) < 8:
        raise HitbenchError(f"{source}: frame_shape must be at least 8 x 8 pixels, got {list(shape)}")
    detector = _section(Detector, doc["detector"], f"{source}: detector", ("kind", "pixel_size_m", "distance_m"))
    if detector.kind not in ("integrating", "counting"):
        raise HitbenchError(f"{source}: detector.kind must be 'integrating' or 'counting', got {detector.kind!r}")
    for key in ("pixel_size_m", "distance_m", "gain_adu_per_photon", "saturation", "sensor_thickness_um"):
        _number(f"{source}: detector.{key}", getattr(detector, key), positive=True)
    _number(f"{source}: detector.cosmic_rays_per_frame", detector.cosmic_rays_per_frame)
    if detector.panels:
        from hitbench.simulate.panels import grid_shape, raw_layout

        grid = grid_shape(detector.panels, f"{source}: detector.panels")
        raw_layout(
            grid,
            detector.panel_shape,
            detector.panel_gap_px,
            detector.panel_rotations,
            (0.0, 0.0),
            detector.pixel_size_m,
            detector.distance_m,
            f"{source}: detector",
        )
        if shape[0] != shape[1]:
            raise HitbenchError(
                f"{source}: frame_shape {list(shape)}: with detector.panels it is the square crop "
                "around the beam the methods see; give two equal sides"
            )
    beam = _section(Beam, doc["beam"], f"{source}: beam", ("photon_energy_ev",))
    _number(f"{source}: beam.photon_energy_ev", beam.photon_energy_ev, positive=True)
    sample = _section(Sample, doc["sample"], f"{source}: sample", ("cell",))
    if min(sample.cell) <= 0:
        raise HitbenchError(f"{source}: sample.cell must hold positive lengths and angles, got {list(sample.cell)}")
    background = _section(Background, doc.get("background", {}), f"{source}: background")
    conditions = {
        "flux": (1.0, 1.0),
        "background": (1.0, 1.0),
        "gain": (1.0, 1.0),
        "crystal_size_um": (1.0, 1.0),
        "crystal_size_spread": (0.5, 0.5),
        "new_hot_pixels": (0, 0),
        "dark_offset_adu": (0.0, 0.0),
    }
    conditions.update(_conditions(doc.get("conditions", {}), f"{source}: conditions"))
    runs_doc = doc["runs"]
    if not isinstance(runs_doc, list) or not runs_doc:
        raise HitbenchError(f"{source}: runs must be a non-empty array of tables ([[runs]])")
    specs = []
    for i, entry in enumerate(runs_doc):
        where = f"{source}: runs[{i}]"
        if not isinstance(entry, dict):
            raise HitbenchError(f"{where} must be a table")
        for key in ("id", "events", "hit_fraction"):
            if key not in entry:
                raise HitbenchError(f"{where}.{key}: required field is missing")
        run_id = _number(f"{where}.id", entry["id"], integer=True)
        events = _number(f"{where}.events", entry["events"], integer=True, positive=True)
        hit_fraction = _number(f"{where}.hit_fraction", entry["hit_fraction"])
        if hit_fraction > 1:
            raise HitbenchError(f"{where}.hit_fraction must be between 0 and 1, got {hit_fraction}")
        rest = {k: v for k, v in entry.items() if k not in ("id", "events", "hit_fraction")}
        specs.append(RunSpec(run_id, events, float(hit_fraction), _conditions(rest, where)))
    if len({s.id for s in specs}) != len(specs):
        raise HitbenchError(f"{source}: runs: run ids must be unique")
    scale = _number(f"{source}: scale", doc.get("scale", 1.0), positive=True)
    train_runs = doc.get("train_runs", [])
    if not isinstance(train_runs, list) or any(r not in {s.id for s in specs} for r in train_runs):
        raise HitbenchError(f"{source}: train_runs must list ids of the experiment's runs, got {train_runs!r}")
    return Experiment(
        name=name,
        description=_value(f"{source}: description", "", doc.get("description", "")),
        scale=float(scale),
        frame_shape=tuple(int(s) for s in shape),
        beam=beam,
        detector=detector,
        sample=sample,
        background=background,
        conditions=conditions,
        run_specs=tuple(specs),
        source=source,
        train_runs=tuple(train_runs),
    )


def load_experiment(name_or_path: str | Path) -> Experiment:
    """Load a preset by name, or an experiment TOML file by path.

    Parameters
    ----------
    name_or_path : str or Path
        A preset name (see :func:`preset_names`) or the path of a TOML file.

    Returns
    -------
    Experiment
        The validated experiment.

    Raises
    ------
    HitbenchError
        Unknown preset, unreadable file, or a bad field (the message names it).
    """
    text_name = str(name_or_path)
    if text_name in preset_names():
        source = f"preset {text_name}"
        text = resources.files("hitbench.simulate").joinpath("presets", f"{text_name}.toml").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise HitbenchError(f"{text_name}: neither a preset ({', '.join(preset_names())}) nor an existing file")
        source = str(path)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise HitbenchError(f"{source}: not a text file; give an experiment TOML file") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HitbenchError(f"{source}: not valid TOML ({exc})") from None
    if "base" in doc:
        doc = _on_base(doc, source)
    return _experiment(doc, source)


def _on_base(doc: dict, source: str) -> dict:
    """An experiment file that names a preset as its ``base``: the preset's fields, with the file's in their place
    (a section's keys one by one, ``runs`` and the other top-level fields whole)."""
    name = doc.pop("base")
    if not isinstance(name, str) or name not in preset_names():
        raise HitbenchError(f"{source}: base: {name!r} is not a preset; give one of {', '.join(preset_names())}")
    merged = tomllib.loads(resources.files("hitbench.simulate").joinpath("presets", f"{name}.toml").read_text())
    for key, value in doc.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
