"""HDF5 compression speed (writes JSON): the portable default (gzip = deflate + shuffle) against Blosc and the
other choices, in the same run: write and read frames/s and bytes per frame through hitbench's CXIWriter and CXIRun.

Frames: simulated cxi-streptavidin run 90 (350x350) in three types: as the simulator stores them (its storage
type, integer ADU), as int32, and as float32 calibrated values (the same ADU plus a seeded uniform part in
[-0.5, 0.5) on good pixels: the sub-ADU fractions of calibrated float frames, which compress far less). Each
setting writes the frames to a new CXI file in chunks of 32 (frames + mask, one frame per HDF5 chunk) and reads
them back in chunks of 32 (``CXIRun.read``); the best of ``--repeats`` is kept. gzip is measured with hitbench's
encoder (``compression.encode_chunk``: shuffle, then ISA-L level 1 with one deflate block per byte plane; the
default), and, in its place, with ISA-L on the whole shuffled chunk (one block), zlib's run-length strategy
``Z_RLE`` at level 1 and zlib's default strategy at levels 1, 4 and 6: every variant writes the same HDF5 shuffle +
deflate chunks, readable by any libhdf5.
Timings share the machine's cores with whatever else runs; the load is reported with the numbers.

Usage: python benchmarks/bench_hdf5.py [--frames 64] [--repeats 2] [--out benchmarks/results/hdf5.json]
"""

from __future__ import annotations

import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import h5py
import hdf5plugin
import numpy as np
from _common import arguments, load_average, machine, write_result
from isal import isal_zlib

from hitbench.data import compression
from hitbench.data.cxi import CXIRun
from hitbench.data.cxi_write import CXIWriter
from hitbench.simulate import load_experiment, simulate_run

CHUNK = 32


def _shuffled(chunk: np.ndarray) -> bytes:
    """The chunk's bytes as HDF5's shuffle filter orders them (byte k of every value, for each k)."""
    values = np.ascontiguousarray(chunk).reshape(-1)
    return np.ascontiguousarray(values.view(np.uint8).reshape(values.size, values.itemsize).T).tobytes()


def _zlib_encoder(level: int, strategy: int) -> Callable[[np.ndarray, str], bytes]:
    def encode(chunk: np.ndarray, choice: str) -> bytes:
        stream = zlib.compressobj(level, zlib.DEFLATED, 15, 8, strategy)
        return stream.compress(_shuffled(chunk)) + stream.flush()

    return encode


def _isal_one_block(chunk: np.ndarray, choice: str) -> bytes:
    return isal_zlib.compress(_shuffled(chunk), compression.ISAL_LEVEL)


#: (label, compression choice, the frames' chunk encoder in place of ``encode_chunk``, None = hitbench's own)
SETTINGS = [
    ("gzip (default: ISA-L 1 per byte plane)", "gzip", None),
    ("gzip, ISA-L 1 one block", "gzip", _isal_one_block),
    ("gzip, zlib 1 Z_RLE", "gzip", _zlib_encoder(1, zlib.Z_RLE)),
    *((f"gzip, zlib {level}", "gzip", _zlib_encoder(level, zlib.Z_DEFAULT_STRATEGY)) for level in (1, 4, 6)),
    ("none", "none", None),
    ("blosc-lz4 (lz4)", "lz4", None),
    ("bitshuffle-lz4 (bitshuffle)", "bitshuffle", None),
]


def _measure(frames: np.ndarray, mask: np.ndarray, choice: str, encoder: Callable | None, folder: Path) -> dict:
    path = folder / f"{choice}.cxi"
    with mock.patch("hitbench.data.cxi_write.encode_chunk", encoder or compression.encode_chunk):
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
    parser = arguments(__doc__, "hdf5.json")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sim = simulate_run(load_experiment("cxi-streptavidin"), run=90, n_frames=args.frames, seed=0)
    fractions = np.random.default_rng(0).uniform(-0.5, 0.5, sim.frames.shape).astype(np.float32)
    stacks = {
        f"{sim.frames.dtype} (simulator)": sim.frames,
        "int32": sim.frames.astype(np.int32),
        "float32 (calibrated)": sim.frames.astype(np.float32) + fractions * sim.mask,
    }
    load_before = load_average()
    result = {
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
            for label, choice, encoder in SETTINGS:
                runs = [_measure(frames, sim.mask, choice, encoder, Path(tmp)) for _ in range(args.repeats)]
                rows[label] = {
                    "write_frames_per_s": round(args.frames / min(r["write_s"] for r in runs), 1),
                    "read_frames_per_s": round(args.frames / min(r["read_s"] for r in runs), 1),
                    "bytes_per_frame": round(runs[0]["bytes"] / args.frames),
                    "ratio": round(frames[0].nbytes * args.frames / runs[0]["bytes"], 2),
                }
            result["results"][dtype] = rows
    result["machine"] = machine(load_before)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
