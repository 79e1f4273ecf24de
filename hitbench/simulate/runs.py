"""Simulated runs: per-run conditions, chunked frame generation, and CXI output.

Seeding: with ``seed`` S, experiment-level randomness (structure factors, calibrated hot and dead pixels) uses
``SeedSequence(S, spawn_key=(0,))``, a run's conditions ``SeedSequence(S, spawn_key=(1, run))`` and its frames,
in chunks of :data:`FRAMES_PER_SEED`, ``SeedSequence(S, spawn_key=(2, run, chunk))``; so frames do not depend on
``n_jobs``.

Ground truth per frame: ``hit`` (a crystal was in the beam), ``n_spots`` (reflections with partiality >= 1 %
whose centre falls on a good pixel of the crop), ``n_spots_detectable`` (those whose expected photons S satisfy
``S >= 5 max(σ, 1)``, with ``σ² = B + 9 (σ_read / g)²`` the background variance in photons over the 3x3 box
around the spot: B the expected background photons there, σ_read the readout noise and g the gain), and the
spot lists ``spot_x``, ``spot_y`` (pixels) and ``spot_photons`` (expected photons), brightest first, padded
with NaN to the sample's ``max_spots``. A detector that records cosmic rays (``[detector] cosmic_rays_per_frame``)
adds ``n_cosmic_rays``, the muons of each frame, drawn from ``SeedSequence(S, spawn_key=(3, run, chunk))``.

A detector of whole panels (``[detector] panels = "RxC"``, :mod:`hitbench.simulate.panels`) is drawn as the
assembled image and stored raw, panel by panel: then ``spot_x``, ``spot_y`` are raw positions (fs, ss, as
peakXPosRaw/peakYPosRaw), ``spot_x_image``, ``spot_y_image`` the same spots in the assembled image (beam at
the run's ``beam_centre_x``, ``beam_centre_y``), and ``write_experiment`` writes the CrystFEL geometry
(:func:`geom_file_name`) beside the runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from scipy.spatial.transform import Rotation

from hitbench.atomic import atomic_path
from hitbench.constants import wavelength_angstrom
from hitbench.data.compression import DEFAULT_COMPRESSION, encode_chunk
from hitbench.data.cxi import DATA
from hitbench.data.cxi_write import CXIWriter
from hitbench.errors import HitbenchError
from hitbench.geometry import Geometry
from hitbench.simulate import physics
from hitbench.simulate.panels import RawLayout, grid_shape, raw_layout
from hitbench.simulate.presets import CONDITIONS, Experiment

#: What the run files hold, in cache keys: changed whenever the same seed writes different files
#: (2: frames in the detector's integer units, deflate-compressed).
FILE_FORMAT = 2
#: Frames generated from one seed (a chunk of a run): part of what a seed means, so changing it changes the files.
FRAMES_PER_SEED = 32
#: Chunks each worker may generate ahead of the writer (bounds the memory of chunks not yet written).
AHEAD_PER_JOB = 16
#: Chunks a worker makes per task (fewer tasks: the run's model is sent to a worker once per task).
CHUNKS_PER_TASK = 4
#: Readout noise of a chunk comes from windows at random offsets into this many frames' worth of Gaussian
#: samples (exact Gaussian per pixel, independent of the photons; saves most of the normal sampling).
NOISE_BANK_FRAMES = 4
#: Keys of the truth dictionary that are per-frame scalars.
TRUTH_SCALARS = ("hit", "n_spots", "n_spots_detectable", "flux", "jet_thickness", "crystal_size_um")
#: Keys of the truth dictionary that are padded per-frame spot lists.
TRUTH_SPOTS = ("spot_x", "spot_y", "spot_photons")


@dataclass
class SimulatedRun:
    """A simulated run held in memory.

    Attributes
    ----------
    frames : numpy.ndarray, shape (n, H, W)
        Detector values in the run's storage type (:func:`storage_dtype`): integer ADU (counts for
        counting detectors), or float32 ADU for calibrated detectors with sub-ADU readout noise.
    mask : numpy.ndarray, shape (H, W), bool
        True = good pixel (gaps, beam stop, dead and calibrated hot pixels are False).
    geometry : hitbench.geometry.Geometry
        Detector geometry.
    truth : dict of str to numpy.ndarray
        Per-frame ground truth (see the module docstring).
    conditions : dict
        The run's drawn conditions and bookkeeping (run, experiment, seed, beam centre, ...).
    """

    frames: np.ndarray
    mask: np.ndarray
    geometry: Geometry
    truth: dict
    conditions: dict


@dataclass
class _RunModel:
    """Everything needed to generate any chunk of a run (picklable, built once per run)."""

    run: int
    seed: int
    n_frames: int
    shape: tuple[int, int]
    counting: bool
    hit_fraction: float
    flux: float
    jet: float
    gain: float
    readout: float
    saturation: float
    common_mode: float
    dark_offset: float
    flux_jitter: float
    jet_jitter: float
    size_median_a: float
    size_spread: float
    jet_map: np.ndarray
    air_map: np.ndarray
    noise_map: np.ndarray
    open_map: np.ndarray
    mask: np.ndarray
    gaps: np.ndarray
    dead: np.ndarray
    panels: np.ndarray  # (first row, end row, first column, end column) of each panel
    hot_index: np.ndarray
    hot_photons: np.ndarray
    basis: np.ndarray
    hkl: np.ndarray
    hkl_weight: np.ndarray
    centre: tuple[float, float]
    wavelength: float
    bandwidth: float
    mosaicity: float
    distance: float
    pixel_size: float
    spot_photons: float
    reference_size_a: float
    wilson_b: float
    spot_sigma: float
    max_spots: int
    dtype: np.dtype
    cosmic_rays: float  # mean cosmic muons a frame
    sensor_thickness_um: float
    photon_energy_kev: float
    raw: RawLayout | None = None  # a detector of whole panels: frames stored raw


def storage_dtype(kind: str, readout_noise_adu: float, saturation: float) -> np.dtype:
    """The type a detector writes its frames in, as the simulator stores them.

    Counting detectors (Pilatus, Eiger) write photon counts as int32 with -1 in gaps and -2 on
    dead pixels. Integrating detectors (CSPAD, raw Jungfrau) write integer ADU: int16 when the
    saturation fits (CSPAD), else int32. Rounding to whole ADU adds 1/12 ADU² of variance, 0.5 % of
    the 4-ADU readout noise variance of the CSPAD-like preset; only a calibrated detector whose readout
    noise is below 1 ADU (frames in keV-like units, as facility pipelines write them) keeps float32,
    where rounding would add more noise than the detector has.

    Parameters
    ----------
    kind : {"integrating", "counting"}
        Detector kind.
    readout_noise_adu : float
        Readout noise, ADU.
    saturation : float
        Largest value the detector records, ADU.

    Returns
    -------
    numpy.dtype
    """
    if kind == "counting":
        return np.dtype(np.int32)
    if readout_noise_adu < 1.0:
        return np.dtype(np.float32)
    return np.dtype(np.int16 if saturation <= np.iinfo(np.int16).max else np.int32)


def _panel_layout(exp: Experiment, shape: tuple[int, int]) -> tuple[np.ndarray, list]:
    """Gap map (True = no pixel) and the (row slice, column slice) of each panel inside the crop."""
    det = exp.detector
    h, w = shape
    slices = []
    gap_axes = []
    for axis, (size, n_px) in enumerate(zip(det.panel_shape, (h, w), strict=True)):
        gap = det.panel_gap_px[axis]
        origin = (n_px - 1) / 2 + det.panel_origin_px[1 - axis]
        period = size + gap
        coord = np.arange(n_px) - int(np.floor(origin))
        pos = np.mod(coord, period)
        in_gap = pos >= size
        gap_axes.append(in_gap)
        tile = np.floor_divide(coord, period)
        spans = []
        for t in np.unique(tile):
            idx = np.flatnonzero((tile == t) & ~in_gap)
            if idx.size:
                spans.append(slice(int(idx[0]), int(idx[-1]) + 1))
        slices.append(spans)
    gaps = gap_axes[0][:, None] | gap_axes[1][None, :]
    panels = [(rs, cs) for rs in slices[0] for cs in slices[1]]
    return gaps, panels


def _draw_conditions(exp: Experiment, run: int, seed: int) -> tuple[dict, tuple[float, float]]:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, run)))
    ranges = dict(exp.conditions)
    ranges.update(exp.run_spec(run).conditions)
    drawn = {}
    for key in CONDITIONS:
        low, high = ranges[key]
        drawn[key] = int(rng.integers(low, high + 1)) if isinstance(low, int) else float(rng.uniform(low, high))
    offset = rng.normal(0.0, exp.beam.beam_centre_jitter_px, size=2) if exp.beam.beam_centre_jitter_px else (0, 0)
    return drawn, (float(offset[0]), float(offset[1]))


def _build_model(exp: Experiment, run: int, n_frames: int, seed: int, shape: tuple[int, int]) -> tuple[_RunModel, dict]:
    det, beam, sample, bg = exp.detector, exp.beam, exp.sample, exp.background
    spec = exp.run_spec(run)
    drawn, offset = _draw_conditions(exp, run, seed)
    h, w = shape
    wavelength = wavelength_angstrom(beam.photon_energy_ev)
    nominal = ((w - 1) / 2 + beam.beam_centre_offset_px[0], (h - 1) / 2 + beam.beam_centre_offset_px[1])
    centre = (nominal[0] + offset[0], nominal[1] + offset[1])

    # Experiment-level: reflections and their intensities, calibrated hot and dead pixels.
    exp_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    basis = physics.reciprocal_basis(sample.cell)
    reach = np.hypot(w, h) / 2 + abs(nominal[0] - (w - 1) / 2) + abs(nominal[1] - (h - 1) / 2) + 5
    two_theta_max = np.arctan2(reach * det.pixel_size_m, det.distance_m)
    hkl = physics.reflections(basis, wavelength / (2 * np.sin(two_theta_max / 2)))
    hkl_weight = exp_rng.exponential(1.0, size=len(hkl))  # acentric Wilson statistics
    raw = layout(exp)
    gaps, panels = _panel_layout(exp, shape) if raw is None else (raw.gaps, raw.footprints)
    n_px = h * w
    dead = np.zeros(n_px, dtype=bool)
    dead[exp_rng.choice(n_px, size=int(round(det.dead_pixel_fraction * n_px)), replace=False)] = True
    dead = dead.reshape(shape) & ~gaps
    base_hot = exp_rng.choice(n_px, size=min(det.hot_pixels, n_px), replace=False)
    base_hot_level = exp_rng.uniform(*det.hot_pixel_level, size=base_hot.size)

    # Run-level: new hot pixels.
    run_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, run, 1)))
    new_hot = run_rng.choice(n_px, size=min(drawn["new_hot_pixels"], n_px), replace=False)
    new_hot_level = run_rng.uniform(*det.hot_pixel_level, size=new_hot.size)

    y, x = np.indices(shape)
    radius = np.hypot(x - centre[0], y - centre[1])
    beam_stop = radius <= det.beam_stop_radius_px
    if det.beam_stop_arm_width_px > 0:
        beam_stop |= (np.abs(y - centre[1]) <= det.beam_stop_arm_width_px / 2) & (x >= centre[0])
    mask = ~(gaps | beam_stop | dead)
    mask.ravel()[base_hot] = False
    open_map = ~(gaps | beam_stop)
    inv_d, solid = physics.pixel_resolution(shape, centre, det.pixel_size_m, det.distance_m, wavelength)
    jet_map = (
        physics.background_profile(
            inv_d,
            solid,
            low_angle=bg.low_angle,
            low_angle_falloff=bg.low_angle_falloff,
            water_ring=bg.water_ring,
            water_ring_d=bg.water_ring_d,
            water_ring_width=bg.water_ring_width,
        )
        * open_map
    )
    air_map = bg.air * solid * open_map
    gain = det.gain_adu_per_photon * drawn["gain"]
    noise_map = np.full(shape, det.readout_noise_adu, dtype=np.float32)
    for rs, cs in panels:
        edge = np.zeros((rs.stop - rs.start, cs.stop - cs.start), dtype=bool)
        edge[[0, -1], :] = edge[:, [0, -1]] = True
        noise_map[rs, cs][edge] *= det.edge_noise_factor
    hot_index = np.concatenate([base_hot, new_hot])
    hot_photons = np.concatenate([base_hot_level, new_hot_level]) / gain
    model = _RunModel(
        run=run,
        seed=seed,
        n_frames=n_frames,
        shape=shape,
        counting=det.kind == "counting",
        hit_fraction=spec.hit_fraction,
        flux=drawn["flux"],
        jet=drawn["background"],
        gain=gain,
        readout=det.readout_noise_adu,
        saturation=det.saturation,
        common_mode=det.common_mode_adu,
        dark_offset=drawn["dark_offset_adu"],
        flux_jitter=beam.flux_jitter,
        jet_jitter=bg.jet_jitter,
        size_median_a=drawn["crystal_size_um"] * 1e4,
        size_spread=drawn["crystal_size_spread"],
        jet_map=jet_map.astype(np.float32),
        air_map=air_map.astype(np.float32),
        noise_map=noise_map,
        open_map=open_map,
        mask=mask,
        gaps=gaps,
        dead=dead,
        panels=np.array([[rs.start, rs.stop, cs.start, cs.stop] for rs, cs in panels], dtype=np.int64).reshape(-1, 4),
        hot_index=hot_index,
        hot_photons=hot_photons,
        basis=basis,
        hkl=hkl,
        hkl_weight=hkl_weight,
        centre=centre,
        wavelength=wavelength,
        bandwidth=beam.bandwidth,
        mosaicity=np.radians(sample.mosaicity_deg),
        distance=det.distance_m,
        pixel_size=det.pixel_size_m,
        spot_photons=sample.spot_photons,
        reference_size_a=sample.reference_size_um * 1e4,
        wilson_b=sample.wilson_b,
        spot_sigma=sample.spot_sigma_px,
        max_spots=sample.max_spots,
        dtype=storage_dtype(det.kind, det.readout_noise_adu, det.saturation),
        cosmic_rays=det.cosmic_rays_per_frame,
        sensor_thickness_um=det.sensor_thickness_um,
        photon_energy_kev=beam.photon_energy_ev / 1e3,
        raw=raw,
    )
    conditions = {
        "experiment": exp.name,
        "run": run,
        "seed": seed,
        "n_frames": n_frames,
        "events": spec.events,
        "hit_fraction": spec.hit_fraction,
        **drawn,
        "gain_adu_per_photon": gain,
        "hot_pixels_masked": int(base_hot.size),
        "beam_centre_x": centre[0],
        "beam_centre_y": centre[1],
        "photon_energy_ev": beam.photon_energy_ev,
        "wavelength_angstrom": wavelength,
        "detector_kind": det.kind,
        "unit_cell": tuple(sample.cell),
        "truth_criterion": f"n_spots_detectable: expected spot photons >= {physics.DETECTABLE_SIGMA:g} max(sigma, 1), "
        "sigma^2 = background photons in the 3x3 box + 9 (readout noise / gain)^2",
    }
    return model, conditions


def _frame_spots(
    m: _RunModel, orientation: np.ndarray, size: float, flux: float, bg_lam: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Spots of one hit: recorded x, y, photons (brightest first), detectable flags, and the pixels they light
    (flat, increasing) with their expected photons (float64 sums, each in the spots' order)."""
    spots = physics.predict_spots(
        orientation,
        m.basis,
        m.hkl,
        wavelength=m.wavelength,
        bandwidth=m.bandwidth,
        mosaicity=m.mosaicity,
        crystal_size=size,
        distance=m.distance,
        pixel_size=m.pixel_size,
        centre=m.centre,
    )
    h, w = m.shape
    x, y = spots["x"], spots["y"]
    col, row = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    inside[inside] = m.mask[row[inside], col[inside]]
    photons = (
        m.spot_photons
        * flux
        * (size / m.reference_size_a) ** 3
        * m.hkl_weight[spots["index"]]
        * np.exp(-m.wilson_b * spots["inv_d"] ** 2 / 2)
        * spots["partiality"]
    )
    order = np.argsort(-photons[inside], kind="stable")
    x, y, photons = x[inside][order], y[inside][order], photons[inside][order]
    cols, rows, weights = physics.spot_stencil(x, y, m.spot_sigma)
    valid = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    cols, rows = np.clip(cols, 0, w - 1), np.clip(rows, 0, h - 1)
    valid &= m.open_map[rows, cols]
    box_bg = np.where(valid, bg_lam[rows, cols], 0).sum(axis=1)
    sigma = np.sqrt(box_bg + 9 * (m.readout / m.gain) ** 2)
    detectable = photons >= physics.DETECTABLE_SIGMA * np.maximum(sigma, 1.0)
    pixels, where = np.unique((rows * w + cols)[valid], return_inverse=True)
    return x, y, photons, detectable, pixels, np.bincount(where, (photons[:, None] * weights)[valid])


def _chunk(m: _RunModel, index: int) -> tuple[np.ndarray, dict]:
    """Generate chunk ``index`` of a run: frames (n, H, W) in the run's storage type and per-frame truth.

    Frame by frame (each frame's arrays stay in the core's cache), drawing what the seed's stream holds in its
    order: the frames' conditions, every frame's uniform numbers of the Poisson sampling, the few counts left
    to numpy's sampler, then the detector's noise bank, its windows and the panels' offsets.
    """
    from hitbench.simulate import _kernels  # numba, compiled on first use

    start = index * FRAMES_PER_SEED
    n = min(FRAMES_PER_SEED, m.n_frames - start)
    rng = np.random.default_rng(np.random.SeedSequence(m.seed, spawn_key=(2, m.run, index)))
    h, w = m.shape
    n_px = h * w
    hit = rng.random(n) < m.hit_fraction
    flux = m.flux * physics.gamma_jitter(rng, m.flux_jitter, n)
    jet = m.jet * np.clip(1 + m.jet_jitter * rng.standard_normal(n), 0.1, None)
    size = m.size_median_a * np.exp(m.size_spread * rng.standard_normal(n))
    orientation = Rotation.random(n, random_state=rng).as_matrix()
    truth = {
        "hit": hit.astype(np.int8),
        "n_spots": np.zeros(n, np.int32),
        "n_spots_detectable": np.zeros(n, np.int32),
        "flux": flux.astype(np.float32),
        "jet_thickness": jet.astype(np.float32),
        "crystal_size_um": np.where(hit, size / 1e4, np.nan).astype(np.float32),
        **{key: np.full((n, m.max_spots), np.nan, np.float32) for key in TRUTH_SPOTS},
    }
    jet_scale, flux32 = (flux * jet).astype(np.float32), flux.astype(np.float32)
    nonzero, dense_lam = [], []
    for i in range(n):
        lam = _kernels.background(jet_scale[i], flux32[i], m.jet_map.reshape(-1), m.air_map.reshape(-1))
        if hit[i]:
            x, y, photons, detectable, pixels, spot_lam = _frame_spots(
                m, orientation[i], size[i], flux[i], lam.reshape(h, w)
            )
            lam[pixels] += spot_lam  # in float64, rounded to float32, as the frame plus a whole image of them
            keep = min(len(x), m.max_spots)
            truth["n_spots"][i] = len(x)
            truth["n_spots_detectable"][i] = int(detectable.sum())
            truth["spot_x"][i, :keep], truth["spot_y"][i, :keep] = x[:keep], y[:keep]
            truth["spot_photons"][i, :keep] = photons[:keep]
        lam[m.hot_index] += m.hot_photons
        pixels, counts, dense = physics.nonzero_counts(lam, rng.random(n_px, dtype=np.float32))
        nonzero.append((np.concatenate([pixels, dense]), counts))
        dense_lam.append(lam[dense])
    dense_counts = physics.zero_truncated(rng, np.concatenate(dense_lam))
    ends = np.cumsum([len(values) for values in dense_lam])
    nonzero = [
        (pixels, np.concatenate([counts, dense_counts[end - len(values) : end]]))
        for (pixels, counts), values, end in zip(nonzero, dense_lam, ends, strict=True)
    ]
    if m.counting:
        counts = np.zeros((n, n_px), dtype=np.int32)
        for i, (pixels, values) in enumerate(nonzero):
            counts[i, pixels] = values
        frames = np.minimum(counts, m.saturation).astype(m.dtype).reshape(n, h, w)
        frames[:, m.gaps] = -1
        frames[:, m.dead] = -2
        _add_cosmic_rays(m, index, frames, truth)
        return _stored(m, frames, truth)
    bank = rng.standard_normal(NOISE_BANK_FRAMES * n_px, dtype=np.float32)
    starts = rng.integers(0, bank.size - n_px, size=n)
    offsets = rng.normal(m.dark_offset, m.common_mode, size=(n, len(m.panels))).astype(np.float32)
    frames = np.empty((n, n_px), dtype=m.dtype)
    blank = (m.gaps | m.dead).reshape(-1)
    for i, (pixels, values) in enumerate(nonzero):
        _kernels.integrate(
            pixels,
            values,
            np.float32(m.gain),
            bank[starts[i] : starts[i] + n_px],
            m.noise_map.reshape(-1),
            offsets[i],
            m.panels,
            w,
            np.float32(m.saturation),
            blank,
            m.dtype.kind == "i",
            frames[i],
        )
    frames = frames.reshape(n, h, w)
    _add_cosmic_rays(m, index, frames, truth)
    return _stored(m, frames, truth)


def _add_cosmic_rays(m: _RunModel, index: int, frames: np.ndarray, truth: dict) -> None:
    """Add the cosmic muons of chunk ``index`` to its frames (in place) and their number to the truth.

    Drawn from their own stream, ``SeedSequence(S, spawn_key=(3, run, chunk))``, so that the rest of a frame is
    the same with and without them. A counting detector counts one in each pixel whose deposit passes its
    threshold at half a photon's energy; an integrating one reads the deposit in ADU. Gaps and dead pixels stay
    as they are; values stop at the saturation.
    """
    if m.cosmic_rays <= 0:
        return
    rng = np.random.default_rng(np.random.SeedSequence(m.seed, spawn_key=(3, m.run, index)))
    n_tracks = rng.poisson(m.cosmic_rays, len(frames))
    blank = (m.gaps | m.dead).reshape(-1)
    for frame, count in zip(frames.reshape(len(frames), -1), n_tracks, strict=True):
        pixels, energy = physics.cosmic_ray_deposit(rng, int(count), m.shape, m.sensor_thickness_um, m.pixel_size * 1e6)
        keep = ~blank[pixels]
        pixels, photons = pixels[keep], energy[keep] / m.photon_energy_kev
        if m.counting:
            frame[pixels] = np.minimum(frame[pixels] + (photons >= 0.5), m.saturation)
        else:
            added = frame[pixels] + photons * m.gain
            frame[pixels] = np.minimum(np.rint(added) if m.dtype.kind == "i" else added, m.saturation)
    truth["n_cosmic_rays"] = n_tracks.astype(np.int32)


def layout(exp: Experiment) -> RawLayout | None:
    """The experiment's grid of whole panels (see :mod:`hitbench.simulate.panels`), or None for a crop."""
    det = exp.detector
    if not det.panels:
        return None
    where = f"{exp.source}: detector"
    return raw_layout(
        grid_shape(det.panels, f"{where}.panels"),
        det.panel_shape,
        det.panel_gap_px,
        det.panel_rotations,
        exp.beam.beam_centre_offset_px,
        det.pixel_size_m,
        det.distance_m,
        where,
    )


def _stored(m: _RunModel, frames: np.ndarray, truth: dict) -> tuple[np.ndarray, dict]:
    """Frames and truth as the run file stores them: raw panel by panel for a detector of panels, else as drawn."""
    if m.raw is None:
        return frames, truth
    raw = frames.reshape(len(frames), -1)[:, m.raw.raw_index]
    x, y = truth["spot_x"], truth["spot_y"]
    truth["spot_x_image"], truth["spot_y_image"] = x, y
    fs, ss = m.raw.to_raw(x, y)
    truth["spot_x"], truth["spot_y"] = fs.astype(np.float32), ss.astype(np.float32)
    return raw, truth


def stored_mask(m: _RunModel) -> np.ndarray:
    """The good pixels of the stored frames (raw for a detector of panels)."""
    return m.mask if m.raw is None else m.mask.ravel()[m.raw.raw_index]


def geom_file_name(exp: Experiment) -> str:
    """File name of the CrystFEL geometry a detector of panels is written with, e.g. ``tiny-panels.geom``."""
    return f"{exp.name}.geom"


def _encoded_chunk(m: _RunModel, index: int, compression: str) -> tuple[dict, np.ndarray | None, list[bytes] | None]:
    """Chunk ``index`` of a run as the run file stores it: truth, frames, frames compressed by ``encode_chunk``.

    Only one of the frames travels to the writer: compressed, or, where HDF5 compresses, as they are (the other
    is None).
    """
    frames, truth = _chunk(m, index)
    encoded = [encode_chunk(frame[np.newaxis], compression) for frame in frames]
    return (truth, frames, None) if encoded[0] is None else (truth, None, encoded)


def _task(m: _RunModel, indices: list[int], compression: str | None) -> list[tuple]:
    """Chunks ``indices`` of a run, one worker task (the model travels to the worker once for them)."""
    if compression is None:
        return [_chunk(m, i) for i in indices]
    return [_encoded_chunk(m, i, compression) for i in indices]


def _chunks(models: list[_RunModel], n_jobs: int, compression: str | None = None) -> Iterator[tuple[int, tuple]]:
    """Chunks of several runs in order, generated in parallel with joblib: (position in ``models``, chunk).

    A chunk is ``(frames, truth)``, or, when ``compression`` is given, what :func:`_encoded_chunk` returns.
    A worker makes :data:`CHUNKS_PER_TASK` chunks of a run per task. Workers generate at most
    :data:`AHEAD_PER_JOB` chunks each ahead of the consumer: joblib hands on finished results whether or not
    they have been taken, so a consumer slower than the workers would otherwise gather the whole experiment
    in memory. The tasks go in batches, two at a time.
    """
    tasks = [
        (k, list(range(i, min(i + CHUNKS_PER_TASK, n_chunks))))
        for k, m in enumerate(models)
        for n_chunks in [-(-m.n_frames // FRAMES_PER_SEED)]
        for i in range(0, n_chunks, CHUNKS_PER_TASK)
    ]
    ahead = max(1, AHEAD_PER_JOB // CHUNKS_PER_TASK // 2) * effective_n_jobs(n_jobs)
    batches = [tasks[start : start + ahead] for start in range(0, len(tasks), ahead)]
    with (
        Parallel(n_jobs=n_jobs, return_as="generator") as even,
        Parallel(n_jobs=n_jobs, return_as="generator") as odd,
    ):
        # Two batches in flight, each of half the chunks ahead: the next batch is queued before the last results
        # of one are taken, so no worker waits at a batch's end.
        pending = None
        for b, batch in enumerate(batches):
            parallel = odd if b % 2 else even
            started = (batch, parallel(delayed(_task)(models[k], indices, compression) for k, indices in batch))
            if pending is not None:
                yield from _taken(*pending)
            pending = started
        if pending is not None:
            yield from _taken(*pending)


def _taken(batch: list, results: Iterator[list]) -> Iterator[tuple[int, tuple]]:
    """The chunks of a batch of tasks, in order: (position in the models, chunk)."""
    for (k, _), chunks in zip(batch, results, strict=True):
        for chunk in chunks:
            yield k, chunk


def _geometry(exp: Experiment) -> Geometry:
    det = exp.detector
    return Geometry(
        distance=det.distance_m,
        x_pixel_size=det.pixel_size_m,
        y_pixel_size=det.pixel_size_m,
        photon_energy=exp.beam.photon_energy_ev,
    )


def simulate_run(
    exp: Experiment,
    run: int,
    n_frames: int | None = None,
    seed: int = 0,
    frame_shape: tuple[int, int] | None = None,
    n_jobs: int = 1,
) -> SimulatedRun:
    """Simulate one run in memory.

    Parameters
    ----------
    exp : Experiment
        From :func:`hitbench.simulate.load_experiment`.
    run : int
        Run id (one of ``exp.runs``).
    n_frames : int, optional
        Frames to make; default the run's events times the experiment's scale.
    seed : int
        Seed; the same seed gives identical frames, truth and conditions.
    frame_shape : tuple of int, optional
        (H, W) of a crop around the beam other than the experiment's.
    n_jobs : int
        joblib workers (results do not depend on it).

    Returns
    -------
    SimulatedRun
    """
    shape = _shape(exp, frame_shape)
    n = exp.n_frames(run) if n_frames is None else int(n_frames)
    if n < 1:
        raise HitbenchError(f"n_frames must be at least 1, got {n_frames}")
    model, conditions = _build_model(exp, run, n, int(seed), shape)
    parts = [chunk for _, chunk in _chunks([model], n_jobs)]
    truth = {key: np.concatenate([p[1][key] for p in parts]) for key in parts[0][1]}
    return SimulatedRun(np.concatenate([p[0] for p in parts]), stored_mask(model), _geometry(exp), truth, conditions)


def _shape(exp: Experiment, frame_shape: tuple[int, int] | None) -> tuple[int, int]:
    raw = layout(exp)
    if raw is not None:
        if frame_shape is not None:
            raise HitbenchError(
                f"frame_shape {frame_shape}: {exp.name} simulates whole panels (detector.panels); "
                "its frames are the panels' raw frames, leave frame_shape out"
            )
        return raw.shape
    if frame_shape is None:
        return exp.frame_shape
    shape = tuple(int(s) for s in frame_shape)
    if len(shape) != 2 or min(shape) < 8:
        raise HitbenchError(f"frame_shape must be two sizes of at least 8 pixels, got {frame_shape}")
    return shape


def run_file_name(run: int) -> str:
    """File name of a run's CXI file, e.g. ``run_0090.cxi``."""
    return f"run_{run:04d}.cxi"


def write_experiment(
    exp: Experiment,
    out_dir: str | Path,
    runs: list[int] | None = None,
    scale: float | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    frame_shape: tuple[int, int] | None = None,
    compression: str = DEFAULT_COMPRESSION,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Simulate runs of an experiment and write one CXI file per run, chunk by chunk.

    Frames go to /entry_1/data_1/data, the truth (see the module docstring) to /entry_1/hitbench/<key>, and
    the run's conditions (including ``run`` and ``experiment``) to the attributes of /entry_1/hitbench.

    Parameters
    ----------
    exp : Experiment
        The experiment.
    out_dir : str or Path
        Output folder (created if missing). Existing run files are never overwritten.
    runs : list of int, optional
        Runs to write (default all).
    scale : float, optional
        Fraction of each run's events to simulate (default the experiment's scale).
    seed : int
        Seed.
    n_jobs : int
        joblib workers; the files do not depend on it.
    frame_shape : tuple of int, optional
        Crop size other than the experiment's.
    compression : str
        HDF5 compression of the files (see :mod:`hitbench.data.compression`).
    progress : callable, optional
        Called with the number of frames of every chunk written.

    Returns
    -------
    list of Path
        The written files, in run order.
    """
    runs = exp.runs if runs is None else list(runs)
    for run in runs:
        exp.run_spec(run)
    if scale is not None and not scale > 0:
        raise HitbenchError(f"scale must be positive, got {scale}")
    out = Path(out_dir)
    paths = [out / run_file_name(run) for run in runs]
    for path in paths:
        if path.exists():
            raise HitbenchError(f"{path}: file exists; choose another --out folder or remove it first")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HitbenchError(f"{out}: cannot create the output folder ({exc.strerror}); pick another --out") from None
    shape = _shape(exp, frame_shape)
    built = [_build_model(exp, run, exp.n_frames(run, scale), int(seed), shape) for run in runs]
    models = [m for m, _ in built]
    raw = models[0].raw if models else None
    if raw is not None:
        _write_geom(exp, out / geom_file_name(exp), raw)
    file_shape = shape if raw is None else raw.raw_shape
    writers: dict[int, CXIWriter] = {}
    done = [0] * len(models)
    written: list[Path] = []
    try:
        for k, (truth, frames, encoded) in _chunks(models, n_jobs, compression):
            if k not in writers:
                writers[k] = CXIWriter(
                    paths[k],
                    file_shape,
                    mask=stored_mask(models[k]),
                    geometry=_geometry(exp),
                    attrs=built[k][1],
                    max_peaks=exp.sample.max_spots,
                    dtype=models[k].dtype,
                    compression=compression,
                )
            if encoded is None:
                writers[k].append(frames, fields=truth)
            else:
                writers[k].append_encoded(encoded, fields=truth)
            n = len(truth["hit"])
            done[k] += n
            if progress is not None:
                progress(n)
            if done[k] == models[k].n_frames:
                written.append(writers.pop(k).close())
    finally:
        for writer in writers.values():
            writer.abort()
    return written


def _write_geom(exp: Experiment, path: Path, raw: RawLayout) -> None:
    """Write the layout's CrystFEL geometry (kept when the same text is there, refused when another one is)."""
    text = raw.geom_text(exp.beam.photon_energy_ev, exp.detector.gain_adu_per_photon, DATA)
    if path.exists():
        if path.read_text() != text:
            raise HitbenchError(f"{path}: another geometry is there; choose another --out folder or remove it first")
        return
    with atomic_path(path, overwrite=False) as tmp:
        tmp.write_text(text)
