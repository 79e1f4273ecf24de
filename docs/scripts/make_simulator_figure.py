"""Figures for docs/simulator.md (writes PNGs under docs/img/).

Per preset (simulator_<preset>.png): three hits and three misses of its first run, the radial background
profile (mean of the miss frames, photons per pixel) per run, and the distribution of detectable spots on hits
per run. simulator_real_vs_sim.png: a real thaumatin Pilatus frame (central 350x350 crop around Beam_xy) next
to a simulated i24-thaumatin hit, same colour scale.

Usage: python docs/scripts/make_simulator_figure.py [--frames 48] [--out docs/img]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hitbench.data.formats import crop, read_image
from hitbench.simulate import load_experiment, preset_names, simulate_run

REAL = Path(__file__).resolve().parents[3] / "shared" / "realdata" / "thaumatin_grid" / "thau_3_2_0003.cbf.bz2"


def radial_profile(frames: np.ndarray, mask: np.ndarray, centre: tuple[float, float], step: float = 5.0):
    y, x = np.indices(mask.shape)
    r = (np.hypot(x - centre[0], y - centre[1]) / step).astype(int)[mask]
    mean = frames.mean(axis=0)[mask]
    sums, counts = np.bincount(r, mean), np.bincount(r)
    good = counts > 0
    return np.flatnonzero(good) * step, sums[good] / counts[good]


def preset_figure(name: str, n_frames: int, out: Path) -> None:
    exp = load_experiment(name)
    fig = plt.figure(figsize=(15, 6.5), layout="constrained")
    grid = fig.add_gridspec(2, 5)
    first = simulate_run(exp, run=exp.runs[0], n_frames=n_frames, seed=0)
    gain = first.conditions["gain_adu_per_photon"]
    hits, misses = np.flatnonzero(first.truth["hit"] == 1), np.flatnonzero(first.truth["hit"] == 0)
    order = hits[np.argsort(first.truth["n_spots_detectable"][hits])]
    picks = [("hit", i) for i in order[[0, len(order) // 2, -1]]] + [("miss", i) for i in misses[:3]]
    vmax = np.percentile(first.frames[:, first.mask], 99.9)
    for k, (kind, i) in enumerate(picks):
        ax = fig.add_subplot(grid[k // 3, k % 3])
        ax.imshow(np.where(first.mask, first.frames[i], 0), cmap="gray_r", vmin=0, vmax=vmax)
        detail = f", {first.truth['n_spots_detectable'][i]} detectable spots" if kind == "hit" else ""
        ax.set_title(f"run {exp.runs[0]} frame {i}: {kind}{detail}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_bg, ax_spots = fig.add_subplot(grid[0, 3:]), fig.add_subplot(grid[1, 3:])
    spot_counts, labels = [], []
    for run in exp.runs:
        sim = first if run == exp.runs[0] else simulate_run(exp, run=run, n_frames=n_frames, seed=0)
        miss = sim.truth["hit"] == 0
        if miss.any():
            centre = (sim.conditions["beam_centre_x"], sim.conditions["beam_centre_y"])
            r, prof = radial_profile(sim.frames[miss], sim.mask, centre)
            ax_bg.plot(r, prof / sim.conditions["gain_adu_per_photon"], label=f"run {run}")
        spot_counts.append(sim.truth["n_spots_detectable"][sim.truth["hit"] == 1])
        labels.append(str(run))
    ax_bg.set_xlabel("radius (pixels)")
    ax_bg.set_ylabel("mean of misses (photons / pixel)")
    ax_bg.legend(fontsize=6, ncol=2)
    ax_spots.boxplot(spot_counts, tick_labels=labels)
    ax_spots.set_xlabel("run")
    ax_spots.set_ylabel("detectable spots per hit")
    fig.suptitle(f"{name}: {exp.description} ({n_frames} frames per run; display in ADU, gain {gain:.1f})",
                 fontsize=10)
    fig.savefig(out / f"simulator_{name}.png", dpi=80)
    plt.close(fig)


def real_vs_sim(out: Path) -> None:
    image = read_image(REAL)
    real_frame, real_mask = crop(image.frame, image.mask, 350, image.beam_center)
    exp = load_experiment("i24-thaumatin")
    sim = simulate_run(exp, run=exp.runs[0], n_frames=32, seed=0)
    hits = np.flatnonzero(sim.truth["hit"] == 1)
    i = hits[np.argmax(sim.truth["n_spots_detectable"][hits])]
    vmax = np.percentile(real_frame[real_mask], 99.5)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2), layout="constrained")
    for ax, frame, mask, title in ((axes[0], real_frame, real_mask, f"real: {REAL.name} (central 350x350)"),
                                   (axes[1], sim.frames[i], sim.mask, f"simulated i24-thaumatin run 1 frame {i}")):
        im = ax.imshow(np.where(mask, frame, 0), cmap="gray_r", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, label="counts", shrink=0.8)
    fig.savefig(out / "simulator_real_vs_sim.png", dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in preset_names():
        preset_figure(name, args.frames, args.out)
    real_vs_sim(args.out)


if __name__ == "__main__":
    main()
