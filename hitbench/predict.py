"""Classify every frame of CXI runs with a trained model, chunk by chunk: ``hitbench predict``.

For each run the output folder receives ``<run>.hits.csv`` (event index, score, label 0/1 for
every frame) and, when asked, ``<run>.hits.cxi``: only the hit frames, with their peaks from
/entry_1/result_1 when the run has them and their hitbench fields, the data-reduction "veto" a
facility keeps; beside it what CrystFEL's ``indexamajig`` reads (:mod:`hitbench.data.crystfel`):
``<run>.hits.lst`` listing its frames, ``<run>.geom`` and, for simulated runs, ``<run>.cell``.
Runs of raw multi-panel frames are scored through their CrystFEL geometry (``--geometry``): the model sees
each frame's assembled crop around the beam, of the side it was trained on, while ``<run>.hits.cxi`` keeps the
raw frames and their peaks in raw coordinates, for indexamajig with the same geometry.
Reading, inference and writing go chunk by chunk, so memory stays flat however long the run.
Chunks are scored by joblib tasks that receive (path, start, stop) and open the file themselves,
so under :func:`hitbench.parallel.parallel_backend` they run on a Dask cluster unchanged. With one local
worker the tasks run on two threads of this process, one chunk scored at a time (:data:`SCORING`): the next
chunk is read (inflated on threads, see :mod:`hitbench.data.chunk_read`) while one is scored.
Outputs are written to temporary names and renamed into place when complete, and existing
outputs are never overwritten.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import joblib
import numpy as np

from hitbench import modelfile
from hitbench.atomic import atomic_path
from hitbench.data.compression import DEFAULT_COMPRESSION, dataset_filters
from hitbench.data.crystfel import handoff_paths, refuse_existing, write_handoff
from hitbench.data.cxi import HITBENCH, RESULT, CXIRun, check_panel_stack
from hitbench.data.cxi_write import CXIWriter
from hitbench.data.detector import DetectorGeometry
from hitbench.data.geom import read_geom
from hitbench.data.nexus import data_path_for, open_run
from hitbench.errors import HitbenchError
from hitbench.frames import TASK_FRAMES
from hitbench.geometry import CROP_SIZE
from hitbench.methods.base import HitMethod
from hitbench.peaktable import MAX_PEAKS, PeakTable

PEAK_DATASETS = ("nPeaks", "peakXPosRaw", "peakYPosRaw", "peakTotalIntensity")
#: Held while a chunk is scored: a process scores one chunk at a time (a method need not be safe on several
#: threads), while another thread reads the next.
SCORING = threading.Lock()
#: Each thread's buffer of a chunk's frames, read into again for its next chunk (see :func:`_frames_buffer`).
_BUFFERS = threading.local()
#: The joblib backends that run the work in local processes or threads (not on a cluster).
LOCAL_BACKENDS = (
    joblib.parallel.LokyBackend,
    joblib.parallel.MultiprocessingBackend,
    joblib.parallel.SequentialBackend,
    joblib.parallel.ThreadingBackend,
)


def load_model(path: str | Path, *, trust_pickle: bool = False) -> HitMethod:
    """A trained hit finder from a file; only a pickle asked for by ``trust_pickle`` can run code.

    Parameters
    ----------
    path : str or Path
        A hitbench model file (``.hbm``, from ``hitbench compare --save-models`` or
        :func:`hitbench.modelfile.save_model`), or a ``.keras`` file from
        :func:`hitbench.methods.cnn_file.save_keras` (a hitbench model file too).
    trust_pickle : bool
        Also read a joblib/pickle file (a model record with key ``"model"`` or a bare fitted method)
        of an older hitbench. Unpickling runs whatever code the file holds: only for files you made.

    Returns
    -------
    HitMethod
        The fitted method.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            first = file.read(1)
    except IsADirectoryError:
        raise HitbenchError(
            f"--model {path}: a folder; give a model file (.hbm from `hitbench compare --save-models`)"
        ) from None
    except FileNotFoundError:
        raise HitbenchError(
            f"--model {path}: no such file; give a model saved by `hitbench compare --save-models`"
        ) from None
    except OSError as exc:
        raise HitbenchError(f"--model {path}: cannot read it ({exc.strerror})") from None
    if modelfile.is_model_file(path):
        model = modelfile.load_model(path)
    elif path.suffix == ".keras":
        raise HitbenchError(
            f"--model {path}: not a .keras file of hitbench (written by save_keras, holding a hitbench model "
            "file); save the model again with hitbench.methods.cnn_file.save_keras or `hitbench compare --save-models`"
        )
    elif not trust_pickle:
        what = "a pickle (joblib) file" if first == b"\x80" else "not a hitbench model file"
        raise HitbenchError(
            f"--model {path}: {what}; hitbench reads only its own model files (.hbm), which cannot run code. "
            "Train and save it again with `hitbench compare --save-models`, or, only if you made the file "
            "yourself, read it with --trust-pickle"
        )
    else:
        try:
            loaded = joblib.load(path)
        except Exception as exc:  # joblib/pickle raise many types for a file that is not theirs
            raise HitbenchError(f"--model {path}: not a joblib model file ({type(exc).__name__})") from None
        model = loaded["model"] if isinstance(loaded, dict) and "model" in loaded else loaded
    if not isinstance(model, HitMethod) or not hasattr(model, "frame_shape_"):
        raise HitbenchError(f"--model {path}: holds a {type(model).__name__}, not a fitted hitbench method")
    return model


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, stamp: tuple[int, int], trust_pickle: bool) -> HitMethod:
    return load_model(path, trust_pickle=trust_pickle)


def _model_in_worker(path: Path, trust_pickle: bool) -> HitMethod:
    """The model, loaded once per worker process (keyed by path, size and modification time)."""
    if not path.is_file():
        return load_model(path, trust_pickle=trust_pickle)  # raises the one-line error
    path = path.resolve()  # one entry whichever name the file is given by
    stat = path.stat()
    return _cached_model(str(path), (stat.st_size, stat.st_mtime_ns), trust_pickle)


@dataclass(frozen=True)
class ChunkResult:
    """What a worker returns for one chunk of a run."""

    start: int
    scores: np.ndarray
    labels: np.ndarray
    hit_frames: np.ndarray | None
    hit_peaks: dict[str, np.ndarray] | None
    hit_fields: dict[str, np.ndarray] | None


@dataclass(frozen=True)
class RawCrop:
    """How a worker turns raw multi-panel frames into the crop a model sees: source pixel and good crop pixels."""

    source: np.ndarray
    mask: np.ndarray

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        out = np.take(raw.reshape(len(raw), -1), self.source, axis=1)
        out *= self.mask
        return out


def raw_crop(run: CXIRun, geometry: DetectorGeometry, side: int) -> RawCrop:
    """The crop of a run's raw frames through its geometry (the run's and the geometry's bad pixels 0).

    Parameters
    ----------
    run : CXIRun
        A run of raw frames.
    geometry : DetectorGeometry
        Its detector's geometry.
    side : int
        Crop side.

    Returns
    -------
    RawCrop
    """
    geometry.check_shape(run.frame_shape, str(run.path))
    crop = geometry.crop_map(side)
    good = run.mask & geometry.good_pixels(run.path)
    return RawCrop(crop.source, crop.good & good.ravel()[crop.source])


def predict_chunk(
    model_path: Path,
    run_path: Path,
    start: int,
    stop: int,
    keep_hits: bool,
    trust_pickle: bool = False,
    crop: RawCrop | None = None,
    data_path: str | None = None,
) -> ChunkResult:
    """Score frames ``start:stop`` of a run; with ``keep_hits`` also return the hit frames, peaks and fields.

    Parameters
    ----------
    model_path : Path
        The model file (loaded once per worker process).
    run_path : Path
        The CXI run.
    start, stop : int
        Frame range.
    keep_hits : bool
        Return the hits' raw frames (as stored, mask not applied), peak rows and hitbench fields, plus
        their event indices in the run as the field ``source_event``.
    trust_pickle : bool
        See :func:`load_model`.
    crop : RawCrop, optional
        The frames are raw multi-panel frames; the model sees this crop of them.
    data_path : str, optional
        HDF5 path of the frames (see :func:`hitbench.data.nexus.open_run`).

    Returns
    -------
    ChunkResult
        Scores and 0/1 labels of the chunk's frames, and the hits' data when asked.
    """
    model = _model_in_worker(model_path, trust_pickle)
    run = open_run(run_path, data_path)
    masked = crop is None and not keep_hits  # bad pixels zeroed as read, in place: no second copy of the frames
    raw = run.read(start, stop, apply_mask=masked, out=_frames_buffer(stop - start, run.frame_shape))
    try:
        frames = raw if masked else raw * run.mask if crop is None else crop(raw)
        with SCORING:
            scores = np.asarray(model.decision_function(frames), dtype=np.float64)
            labels = model.decide(scores).astype(np.int8)
    except HitbenchError as exc:
        raise HitbenchError(f"{run_path} frames {start}-{stop - 1}: {exc}") from None
    if not keep_hits:
        return ChunkResult(start, scores, labels, None, None, None)
    hits = np.flatnonzero(labels)
    with h5py.File(run_path, "r") as h5:
        peaks = {k: h5[f"{RESULT}/{k}"][start:stop][hits] for k in PEAK_DATASETS} if run.has_peaks else None
        fields = {k: h5[f"{HITBENCH}/{k}"][start:stop][hits] for k in _frame_fields(h5, run.n_frames)}
    fields["source_event"] = (start + hits).astype(np.int64)
    return ChunkResult(start, scores, labels, raw[hits], peaks, fields)


def _frames_buffer(n_frames: int, frame_shape: tuple[int, int]) -> np.ndarray:
    """This thread's float32 buffer for ``n_frames`` frames, kept for its next chunk.

    A new array of a chunk's frames (~125 MB for 256 frames of 350x350) is memory the system maps and zeroes
    again at every chunk, ~0.1 ms a frame; a thread scores one chunk at a time, and nothing returned from
    :func:`predict_chunk` refers to its frames, so the next chunk is read into the same memory.
    """
    buffer = getattr(_BUFFERS, "frames", None)
    if buffer is None or buffer.shape[1:] != frame_shape or len(buffer) < n_frames:
        buffer = _BUFFERS.frames = np.empty((n_frames, *frame_shape), dtype=np.float32)
    return buffer[:n_frames]


def _frame_fields(h5: h5py.File, n_frames: int) -> list[str]:
    """Names of the per-frame datasets under /entry_1/hitbench (first dimension = number of frames)."""
    group = h5.get(HITBENCH)
    if group is None:
        return []
    return sorted(k for k, v in group.items() if isinstance(v, h5py.Dataset) and v.ndim and v.shape[0] == n_frames)


@dataclass(frozen=True)
class RunSummary:
    """Outcome of predicting one run."""

    run: Path
    n_frames: int
    n_hits: int
    seconds: float
    hit_list: Path
    hits_cxi: Path | None
    crystfel: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()


def output_paths(run_path: Path, out_dir: Path) -> tuple[Path, Path]:
    """The hit list and hits-only CXI file written for a run.

    Parameters
    ----------
    run_path : Path
        The run's CXI file.
    out_dir : Path
        Output folder.

    Returns
    -------
    (Path, Path)
        ``<out>/<run>.hits.csv`` and ``<out>/<run>.hits.cxi``.
    """
    return out_dir / f"{run_path.stem}.hits.csv", out_dir / f"{run_path.stem}.hits.cxi"


def crystfel_paths(run_path: Path, out_dir: Path) -> tuple[Path, Path, Path]:
    """The CrystFEL files written beside a run's hits-only CXI file.

    Parameters
    ----------
    run_path : Path
        The run's CXI file.
    out_dir : Path
        Output folder.

    Returns
    -------
    (Path, Path, Path)
        ``<out>/<run>.hits.lst``, ``<out>/<run>.geom`` and ``<out>/<run>.cell``.
    """
    return handoff_paths(out_dir, f"{run_path.stem}.hits", run_path.stem)


def _check_runs(
    model: object,
    runs: list[Path],
    out_dir: Path,
    hits_cxi: bool,
    geometry: DetectorGeometry | None = None,
    data_path: str | None = None,
) -> list[CXIRun]:
    shape = getattr(model, "frame_shape_", None)
    opened, seen = [], {}
    for path in runs:
        run = open_run(path, data_path_for(path, data_path, geometry.data if geometry is not None else None))
        if run.n_frames == 0:
            raise HitbenchError(f"{path}: no frames to predict (the run is empty); leave it out")
        check_panel_stack(run, geometry)
        if geometry is not None:
            geometry.check_shape(run.frame_shape, str(path))
        elif shape is not None and tuple(run.frame_shape) != tuple(shape):
            raise HitbenchError(
                f"{path}: frames are {run.frame_shape[0]}x{run.frame_shape[1]} but the model was trained on "
                f"{shape[0]}x{shape[1]}; give runs with the model's frame size (or crop them the same way)"
            )
        if path.stem in seen:
            raise HitbenchError(f"{path}: same name as {seen[path.stem]}; outputs would collide, predict them apart")
        seen[path.stem] = path
        hit_list, cxi_path = output_paths(path, out_dir)
        refuse_existing([hit_list, cxi_path, *crystfel_paths(path, out_dir)] if hits_cxi else [hit_list])
        opened.append(run)
    return opened


def _chunks(run: CXIRun, chunk_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, run.n_frames, chunk_size):
        yield start, min(start + chunk_size, run.n_frames)


def predict_runs(
    model_path: str | Path,
    runs: list[str | Path],
    out_dir: str | Path,
    *,
    chunk_size: int = TASK_FRAMES,
    hits_cxi: bool = False,
    n_jobs: int = 1,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
    compression: str = DEFAULT_COMPRESSION,
    trust_pickle: bool = False,
    geometry: str | Path | None = None,
    data_path: str | None = None,
) -> list[RunSummary]:
    """Classify every frame of each run and write its hit list (and hits-only CXI file).

    Parameters
    ----------
    model_path : str or Path
        Model file (see :func:`load_model`).
    runs : list of str or Path
        CXI runs.
    out_dir : str or Path
        Output folder (created if missing); existing outputs are refused before any work starts.
    chunk_size : int
        Frames read, scored and written per chunk.
    hits_cxi : bool
        Also write ``<run>.hits.cxi`` with the hit frames, their peaks and hitbench fields, and the CrystFEL
        files ``<run>.hits.lst``, ``<run>.geom`` and ``<run>.cell`` (the last two when the run records what they
        need; see :func:`hitbench.data.crystfel.write_handoff`).
    n_jobs : int
        joblib workers over chunks (under a Dask backend the chunks go to the cluster).
    progress : callable, optional
        ``progress(description, total)`` returns a function called once per finished chunk.
    compression : str
        HDF5 compression of ``<run>.hits.cxi`` (see :mod:`hitbench.data.compression`).
    trust_pickle : bool
        Also read a pickled model of an older hitbench (see :func:`load_model`).
    geometry : str or Path, optional
        CrystFEL geometry of raw multi-panel frames: the model scores each frame's assembled crop around the
        beam, of the side of the frames it was trained on (see :func:`raw_crop`).
    data_path : str, optional
        HDF5 path of the (n, ss, fs) frames (default the geometry's ``data``, else a NeXus master's linked stacks,
        else the CXI layout's).

    Returns
    -------
    list of RunSummary
        One per run, in order.
    """
    if chunk_size < 1:
        raise HitbenchError(f"--chunk-size {chunk_size}: give at least 1 frame")
    dataset_filters(compression)  # an unknown choice fails before any work
    # a one-line error before any work; kept for this process's tasks (with one worker, two threads share it)
    model = _model_in_worker(Path(model_path), trust_pickle)
    detector = read_geom(geometry) if geometry is not None else None
    trained = getattr(model, "frame_shape_", None)
    side = int(trained[0]) if trained is not None else CROP_SIZE
    if detector is not None and trained is not None and trained[0] != trained[1]:
        raise HitbenchError(
            f"--geometry {geometry}: the model was trained on {trained[0]}x{trained[1]} frames; the "
            "assembled crop is square, give a model trained on square crops"
        )
    model_path = Path(model_path).resolve()
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HitbenchError(f"{out_dir}: cannot create the output folder ({exc.strerror}); use another --out") from None
    opened = _check_runs(model, [Path(r) for r in runs], out_dir, hits_cxi, detector, data_path)
    summaries = []
    for run in opened:
        start_time = time.perf_counter()
        advance = progress(run.path.name, -(-run.n_frames // chunk_size)) if progress else None
        hit_list, cxi_path = output_paths(run.path, out_dir)
        crop = raw_crop(run, detector, side) if detector is not None else None
        n_hits = _predict_run(
            model_path,
            run,
            hit_list,
            cxi_path if hits_cxi else None,
            chunk_size,
            n_jobs,
            advance,
            compression,
            trust_pickle,
            crop,
            data_path_for(run.path, data_path, detector.data if detector is not None else None),
        )
        crystfel, notes = [], []
        if hits_cxi:
            crystfel, notes = write_handoff(
                CXIRun(cxi_path), range(n_hits), crystfel_paths(run.path, out_dir), detector
            )
        summaries.append(
            RunSummary(
                run.path,
                run.n_frames,
                n_hits,
                time.perf_counter() - start_time,
                hit_list,
                cxi_path if hits_cxi else None,
                tuple(crystfel),
                tuple(notes),
            )
        )
    return summaries


def _hits_writer(run: CXIRun, path: Path, compression: str) -> CXIWriter:
    with h5py.File(run.path, "r") as h5:
        max_peaks = h5[f"{RESULT}/peakXPosRaw"].shape[1] if run.has_peaks else MAX_PEAKS
    attrs = {**run.attrs, "source_run_file": str(run.path)}
    return CXIWriter(
        path,
        run.frame_shape,
        mask=run.mask,
        geometry=run.geometry,
        attrs=attrs,
        max_peaks=max_peaks,
        dtype=run.dtype,
        compression=compression,
    )


def _predict_run(
    model_path: Path,
    run: CXIRun,
    hit_list: Path,
    cxi_path: Path | None,
    chunk_size: int,
    n_jobs: int,
    advance: Callable[[], None] | None,
    compression: str,
    trust_pickle: bool,
    crop: RawCrop | None = None,
    data_path: str | None = None,
) -> int:
    n_hits = 0
    tasks = (
        joblib.delayed(predict_chunk)(
            model_path, run.path, start, stop, cxi_path is not None, trust_pickle, crop, data_path
        )
        for start, stop in _chunks(run, chunk_size)
    )
    with atomic_path(hit_list, overwrite=False) as tmp, open(tmp, "w", newline="") as text:
        writer = None
        try:
            writer = _hits_writer(run, cxi_path, compression) if cxi_path is not None else None
            text.write("event,score,label\n")
            for chunk in _parallel(n_jobs)(tasks):
                rows = zip(
                    range(chunk.start, chunk.start + chunk.scores.size),
                    chunk.scores.tolist(),
                    chunk.labels.tolist(),
                    strict=True,
                )
                text.writelines(f"{e},{s!r},{v}\n" for e, s, v in rows)
                n_hits += int(chunk.labels.sum())
                if writer is not None and chunk.hit_frames.shape[0]:
                    peaks = PeakTable(*(chunk.hit_peaks[k] for k in PEAK_DATASETS)) if chunk.hit_peaks else None
                    writer.append(chunk.hit_frames, fields=chunk.hit_fields, peaks=peaks)
                if advance is not None:
                    advance()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()
    return n_hits


def _parallel(n_jobs: int) -> joblib.Parallel:
    """The joblib runner of a run's chunks: with one local worker, two threads (one reads while one scores)."""
    if n_jobs == 1 and isinstance(joblib.parallel.get_active_backend()[0], LOCAL_BACKENDS):
        return joblib.Parallel(n_jobs=2, backend="threading", return_as="generator", pre_dispatch="n_jobs")
    return joblib.Parallel(n_jobs=n_jobs, return_as="generator")
