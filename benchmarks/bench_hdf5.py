"""HDF5 compression speed (writes JSON): the portable default (gzip = deflate + shuffle) against Blosc and the
other choices, in the same run: write and read frames/s and bytes per frame through hitbench's CXIWriter and CXIRun.

Frames: simulated cxi-streptavidin run 90 (350x350) in three types: as the simulator stores them (its storage
type, integer ADU), as int32, and as float32 calibrated values (the same ADU plus a seeded uniform part in
[-0.5, 0.5) on good pixels: the sub-ADU fractions of calibrated float frames, which compress far less). Each
setting writes the frames to a new CXI file in chunks of 32 (frames + mask, one frame per HDF5 chunk) and reads
them back in chunks of 32 (``CXIRun.read``); the best of ``--repeats`` is kept. gzip is measured with hitbench's
zlib strategy (``compression.GZIP_STRATEGY``, run-length matches; the default) and with zlib's default strategy at
deflate levels 1, 4 and 6.
Timings share the machine's cores with whatever else runs; the load is reported with the numbers.

Usage: python benchmarks/bench_hdf5.py [--frames 64] [--repeats 2] [--out benchmarks/results/hdf5.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import zlib
from pathlib import Path
from unittest import mock

import h5py
import hdf5plugin
import numpy as np

from hitbench.data import compression
from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import CXIWriter
from hitbench.simulate import load_experiment, simulate_run

CHUNK = 32
#: (label, compression choice, (deflate level, zlib strategy) for gzip)
SETTINGS = [
    ("gzip-rle (default)", "gzip", (compression.GZIP_LEVEL, compression.GZIP_STRATEGY)),
    *((f"gzip-{level}", "gzip", (level, zlib.Z_DEFAULT_STRATEGY)) for level in (1, 4, 6)),
    ("none", "none", None),
    ("blosc-lz4 (lz4)", "lz4", None),
    ("bitshuffle-lz4 (bitshuffle)", "bitshuffle", None),
]


def _measure(frames: np.ndarray, mask: np.ndarray, choice: str, deflate: tuple | None, folder: Path) -> dict:
    path = folder / f"{choice}.cxi"
    level, strategy = deflate or (compression.GZIP_LEVEL, compression.GZIP_STRATEGY)
    with mock.patch.object(compression, "GZIP_LEVEL", level), mock.patch.object(compression, "GZIP_STRATEGY", strategy):
        start = time.perf_counter()
        with CXIWriter(path, frames.shape[1:], mask=mask, dtype=frames.dtype, compression=choice) as writer:
            for i in range(0, len(frames), CHUNK):
                writer.append(frames[i : i + CHUNK])
        write_s = time.perf_counter() - start
    start = time.perf_counter()
    run = CXIRun(path)
    for i in range(0, run.n_frames, CHUNK):
        run.read(i, i + CHUNK, apply_mask=False)
    read_s = time.perf_counter() - start
    size = path.stat().st_size
    path.unlink()
    return {"write_s": write_s, "read_s": read_s, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hdf5.json"))
    args = parser.parse_args()
    sim = simulate_run(load_experiment("cxi-streptavidin"), run=90, n_frames=args.frames, seed=0)
    fractions = np.random.default_rng(0).uniform(-0.5, 0.5, sim.frames.shape).astype(np.float32)
    stacks = {
        f"{sim.frames.dtype} (simulator)": sim.frames,
        "int32": sim.frames.astype(np.int32),
        "float32 (calibrated)": sim.frames.astype(np.float32) + fractions * sim.mask,
    }
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "hdf5plugin": hdf5plugin.version,
        "frames": args.frames,
        "frame_shape": list(sim.frames.shape[1:]),
        "hits": int(sim.truth["hit"].sum()),
        "repeats": args.repeats,
        "results": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for dtype, frames in stacks.items():
            rows = {}
            for label, choice, deflate in SETTINGS:
                runs = [_measure(frames, sim.mask, choice, deflate, Path(tmp)) for _ in range(args.repeats)]
                rows[label] = {
                    "write_frames_per_s": round(args.frames / min(r["write_s"] for r in runs), 1),
                    "read_frames_per_s": round(args.frames / min(r["read_s"] for r in runs), 1),
                    "bytes_per_frame": round(runs[0]["bytes"] / args.frames),
                    "ratio": round(frames[0].nbytes * args.frames / runs[0]["bytes"], 2),
                }
            result["results"][dtype] = rows
    result["load_average_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
