"""peakfinder8 on full raw multi-panel frames through a CrystFEL geometry: ms per 4-megapixel frame (writes JSON).

The detector is Jungfrau-4M-like: eight 512 x 1024 modules in a 4 x 2 grid (36- and 8-pixel gaps), stored raw
as a (4096, 1024) frame, 4.19 megapixels, with its .geom: the cxi-streptavidin experiment (9.5 keV, 0.10 m,
110 um pixels) simulated on it with ``[detector] panels`` (hitbench.simulate.panels), the truth listing every
spot (max_spots 8192). Timed, on one core:

- reading the .geom (parsing, per-pixel positions, radius and panel maps);
- ``find`` and ``count`` of the raw finder (each pixel's radius from the geometry, peaks kept on one panel; the
  frames in C order, as a run's reader gives them),
  and ``find`` without the panel map, for the cost of panel awareness;
- building the 350 x 350 crop map (once per geometry) and assembling one frame's crop.

Accuracy on the same frames: precision of the peaks and recall of spots of at least 20 photons (within 1.5 px of
the raw truth ``spot_x``, ``spot_y``).

Usage: python benchmarks/bench_geometry.py [--frames 6] [--out benchmarks/results/geometry.json]
"""

from __future__ import annotations

import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
from _common import arguments, load_average, machine, write_result
from scipy.spatial import cKDTree

from hitbench.data.detector import DetectorGeometry
from hitbench.data.geom import read_geom
from hitbench.peaks import PeakFinder8
from hitbench.peaks.labels import raw_finder
from hitbench.simulate import load_experiment, simulate_run
from hitbench.simulate.runs import SimulatedRun, layout

MATCH_PX = 1.5
BRIGHT_PHOTONS = 20.0
#: The preset's detector table, made Jungfrau-4M-like.
PANELS = {
    "panel_shape = [185, 194]": 'panel_shape = [512, 1024]\npanels = "4x2"',
    "panel_gap_px = [6, 6]": "panel_gap_px = [36, 8]",
    "max_spots = 512": "max_spots = 8192",  # the truth lists every spot of the whole detector
}


def _experiment(folder: Path):
    text = resources.files("hitbench.simulate").joinpath("presets/cxi-streptavidin.toml").read_text()
    for old, new in PANELS.items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "jungfrau4m.toml"
    path.write_text(text.replace('name = "cxi-streptavidin"', 'name = "jungfrau4m"'))
    return load_experiment(path)


def raw_frames(n_frames: int, seed: int = 1) -> tuple[DetectorGeometry, np.ndarray, SimulatedRun, float, float]:
    """The Jungfrau-4M-like geometry (read from its .geom) and ``n_frames`` raw frames of run 90 on it.

    Returns the geometry, the frames as float32 in C order with the masked pixels 0 (as a run's reader gives
    them; the simulator stores the frame index fastest), the simulated run (mask and truth), the ms to read the
    .geom and the seconds to simulate.
    """
    with tempfile.TemporaryDirectory() as tmp:
        exp = _experiment(Path(tmp))
        raw = layout(exp)
        geom_file = Path(tmp) / "jungfrau4m.geom"
        geom_file.write_text(
            raw.geom_text(exp.beam.photon_energy_ev, exp.detector.gain_adu_per_photon, "/entry_1/data_1/data")
        )
        start = time.perf_counter()
        geom = read_geom(geom_file)
        read_ms = 1e3 * (time.perf_counter() - start)
        start = time.perf_counter()
        sim = simulate_run(exp, 90, n_frames=n_frames, seed=seed)
        simulate_s = time.perf_counter() - start
    frames = np.ascontiguousarray(sim.frames * sim.mask, dtype=np.float32)
    return geom, frames, sim, read_ms, simulate_s


def _best_ms(function, repeats: int) -> float:
    """Median wall time of ``repeats`` calls, ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = arguments(__doc__, "geometry.json")
    parser.add_argument("--frames", type=int, default=6)
    args = parser.parse_args()
    load_before = load_average()
    geom, frames, sim, read_ms, simulate_s = raw_frames(args.frames)
    finder = raw_finder(PeakFinder8(), geom)
    no_panels = PeakFinder8(radius_map=geom.radius)
    mask = sim.mask & geom.mask
    finder.find(frames[0], mask)  # the per-geometry tables, built once
    no_panels.find(frames[0], mask)
    find_ms = [_best_ms(lambda f=f: finder.find(f, mask), 1) for f in frames]
    count_ms = [_best_ms(lambda f=f: finder.count(f[None], mask), 1) for f in frames]
    plain_ms = [_best_ms(lambda f=f: no_panels.find(f, mask), 1) for f in frames]
    start = time.perf_counter()
    geom.crop_map(350)
    crop_map_ms = 1e3 * (time.perf_counter() - start)
    crop_ms = _best_ms(lambda: geom.crop(frames[:1], 350), 5)
    n_peaks = n_true = n_bright = n_bright_found = 0
    for i, frame in enumerate(frames):
        peaks = finder.find(frame, mask)
        ok = np.isfinite(sim.truth["spot_x"][i])
        spots = np.c_[sim.truth["spot_x"][i][ok], sim.truth["spot_y"][i][ok]]
        bright = sim.truth["spot_photons"][i][ok] >= BRIGHT_PHOTONS
        n_peaks += len(peaks)
        n_bright += int(bright.sum())
        if len(peaks) and len(spots):
            found = np.c_[peaks.x, peaks.y]
            n_true += int((cKDTree(spots).query(found)[0] <= MATCH_PX).sum())
            n_bright_found += int((cKDTree(found).query(spots[bright])[0] <= MATCH_PX).sum())
    result = {
        "detector": {
            "panels": len(geom.panels),
            "panel_shape": list(geom.panels[0].shape),
            "raw_shape": list(geom.raw_shape),
            "megapixels": geom.raw_shape[0] * geom.raw_shape[1] / 1e6,
        },
        "frames": int(len(frames)),
        "hits": int(sim.truth["hit"].sum()),
        "read_geom_ms": read_ms,
        "find_ms_per_frame": {
            "median": float(np.median(find_ms)),
            "min": float(np.min(find_ms)),
            "max": float(np.max(find_ms)),
        },
        "count_ms_per_frame": float(np.median(count_ms)),
        "find_without_panel_map_ms_per_frame": float(np.median(plain_ms)),
        "crop_map_350_build_ms": crop_map_ms,
        "crop_350_ms_per_frame": crop_ms,
        "peaks": n_peaks,
        "precision": n_true / n_peaks if n_peaks else None,
        "recall_spots_ge_20_photons": n_bright_found / n_bright if n_bright else None,
        "simulate_s": simulate_s,
        "machine": machine(load_before),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
