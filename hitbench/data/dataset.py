"""An experiment as runs of frames with labels, over CXI files or detector image files.

- A folder of CXI files is one experiment, one run per file (the run name is the file's
  ``run`` attribute, else its stem).
- A labels CSV (columns ``file,label`` with label hit/miss/ambiguous, paths relative to the
  CSV), or a folder holding ``labels.csv``, is one run of image files read through fabio,
  each cropped around its beam centre (from the header; else the frame centre).

Label kinds: ``"peaks"`` = the peak-finder rule written by ``hitbench label`` (field
``label``), ``"truth"`` = the simulator's crystal-in-beam truth (field ``hit``), ``"detectable"``
= that truth restricted to crystals that can be seen (fields ``hit`` and ``n_spots_detectable``,
see :func:`run_labels`). Image runs carry the CSV's labels for every kind.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hitbench.data.cxi import CXIRun, check_panel_stack
from hitbench.data.detector import DetectorGeometry
from hitbench.data.formats import crop, read_image
from hitbench.data.nexus import open_run
from hitbench.errors import HitbenchError
from hitbench.frames import CHUNK_FRAMES, FrameSource, check_frames
from hitbench.geometry import CROP_SIZE, Geometry
from hitbench.labelrule import MISS_BELOW

#: Label kinds and the per-frame fields of a CXI run each is made from.
LABEL_KINDS = {"peaks": ("label",), "truth": ("hit",), "detectable": ("hit", "n_spots_detectable")}
#: Fewest spots the simulator counts as detectable for a crystal to be seen at all: the study's rule's
#: miss bound (one spot cannot be told from a stray bright pixel).
MIN_DETECTABLE_SPOTS = MISS_BELOW
CSV_LABELS = {"hit": 1, "miss": 0, "ambiguous": -1}


class ImageRun:
    """A run made of detector image files with labels from a CSV.

    Parameters
    ----------
    files : list of Path
        The image files, in event order.
    labels : numpy.ndarray
        1 hit, 0 miss, -1 ambiguous, one per file.
    name : str
        Run name.
    crop_size : int
        Side of the square crop around the beam centre.
    detector : DetectorGeometry, optional
        The images are raw multi-panel frames: each is assembled through this geometry and cropped around its beam.
    """

    def __init__(
        self,
        files: list[Path],
        labels: np.ndarray,
        name: str,
        crop_size: int = CROP_SIZE,
        detector: DetectorGeometry | None = None,
    ) -> None:
        self.files = list(files)
        self.detector = detector
        #: What the crop depends on besides the files, for cache keys (the geometry file's text).
        self.geometry_key = detector.path.read_bytes() if detector is not None else b""
        self.labels = np.asarray(labels, dtype=np.int8)
        self.name = name
        self.crop_size = int(crop_size)
        self.n_frames = len(self.files)
        self.frame_shape = (self.crop_size, self.crop_size)
        self.attrs: dict[str, object] = {"run": name}
        self._first = self._frame(0)

    def __len__(self) -> int:
        return self.n_frames

    def _frame(self, index: int) -> tuple[np.ndarray, np.ndarray, Geometry | None]:
        image = read_image(self.files[index])
        if self.detector is None and image.panels > 1:
            raise HitbenchError(
                f"{self.files[index]}: a multi-panel CBF ({image.panels} panels, stacked along ss: "
                f"{image.frame.shape[0]} x {image.frame.shape[1]}); give its --geometry FILE.geom"
            )
        if self.detector is None:
            frame, mask = crop(image.frame, image.mask, self.crop_size, image.beam_center)
            return frame, mask, image.geometry
        self.detector.check_shape(image.frame.shape, str(self.files[index]))
        where = self.detector.crop_map(self.crop_size)
        good = image.mask & self.detector.good_pixels()
        mask = where.good & good.ravel()[where.source]
        return image.frame.ravel()[where.source] * mask, mask, image.geometry

    @property
    def mask(self) -> np.ndarray:
        """Mask of the first frame's crop (True = good)."""
        return self._first[1]

    @property
    def geometry(self) -> Geometry | None:
        """Geometry from the first file's header."""
        return self._first[2]

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Cropped frames ``start:stop`` (float32, bad pixels 0).

        Parameters
        ----------
        start, stop : int
            Frame range.

        Returns
        -------
        numpy.ndarray, shape (n, crop_size, crop_size)
            The frames.
        """
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        return self.read_at(np.arange(start, stop))

    def read_at(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Cropped frames at ``indices`` (float32, bad pixels 0).

        Parameters
        ----------
        indices : numpy.ndarray
            Frame indices.
        out : numpy.ndarray, optional
            A float32 array of shape (len(indices), crop_size, crop_size) to write the frames into; by default a
            new one.

        Returns
        -------
        numpy.ndarray, shape (len(indices), crop_size, crop_size)
            The frames (``out`` when given).
        """
        if out is None:
            out = np.empty((len(indices), *self.frame_shape), dtype=np.float32)
        for k, i in enumerate(indices):
            out[k] = self._frame(int(i))[0]
        return out


Run = CXIRun | ImageRun


@dataclass
class Experiment:
    """Runs of one experiment, by name.

    Parameters
    ----------
    name : str
        Experiment name.
    runs : dict of str to run
        The runs, in order.
    train_runs : list of str
        The runs a comparison trains on unless told otherwise (e.g. a preset's 90-93).
    """

    name: str
    runs: dict[str, Run] = field(default_factory=dict)
    train_runs: list[str] = field(default_factory=list)


def select_runs(text: str | None, available: list[str], *, option: str = "--train-runs") -> list[str]:
    """Run names from a list such as ``"90-93,98"``.

    Parameters
    ----------
    text : str or None
        Comma-separated run names or numeric ranges ``a-b`` (inclusive); None = all runs.
    available : list of str
        The experiment's run names.
    option : str
        The option being parsed, for error messages.

    Returns
    -------
    list of str
        The selected run names, in the experiment's order.
    """
    if text is None:
        return list(available)
    wanted: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = (p.strip() for p in part.partition("-"))
        if sep and lo.isdigit() and hi.isdigit():
            if int(hi) < int(lo):
                raise HitbenchError(f"{option} {text}: range '{part}' runs backwards")
            span = [str(r) for r in range(int(lo), int(hi) + 1)]
            wanted.update(r for r in span if r in available)
        elif part in available:
            wanted.add(part)
        else:
            raise HitbenchError(f"{option} {text}: no run '{part}'; runs are {', '.join(available)}")
    if not wanted:
        raise HitbenchError(f"{option} {text}: selects no run; runs are {', '.join(available)}")
    return [r for r in available if r in wanted]


def iter_frames(run: Run, frames: np.ndarray | None, chunk_frames: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """The selected frames of a run, chunk by chunk (never the whole run at once).

    Parameters
    ----------
    run : CXIRun or ImageRun
        The run.
    frames : numpy.ndarray or None
        Sorted frame indices to read (None = all).
    chunk_frames : int
        Frames read per chunk.

    Returns
    -------
    iterator of numpy.ndarray
        Frame stacks (n, H, W), in index order.
    """
    for start in range(0, run.n_frames, chunk_frames):
        stop = min(start + chunk_frames, run.n_frames)
        if frames is None:
            yield run.read(start, stop)
            continue
        inside = frames[(frames >= start) & (frames < stop)]
        if inside.size:
            yield run.read(start, stop)[inside - start]


def run_source(run: Run) -> Path:
    """The file (CXI) or folder (image files) a run is read from, for error messages."""
    return run.path if isinstance(run, CXIRun) else Path(run.files[0]).parent


class RunFrames(FrameSource):
    """Selected frames of several runs as one frame source, read lazily from the run files.

    The training set of a comparison: chunks are read in order with :func:`iter_frames`, shuffled
    batches with :meth:`take` (one read per run per batch). Nothing is held beyond what is asked for.

    Parameters
    ----------
    parts : sequence of (run, numpy.ndarray)
        Each run with the sorted indices of its frames to use; positions run through the parts in order.
    """

    def __init__(self, parts: list[tuple[Run, np.ndarray]] | tuple[tuple[Run, np.ndarray], ...]) -> None:
        self.parts = [(run, np.asarray(indices, dtype=np.int64)) for run, indices in parts]
        shapes = {tuple(run.frame_shape) for run, _ in self.parts}
        if len(shapes) != 1:
            raise HitbenchError(f"training runs have frames of different shapes {sorted(shapes)}; crop them alike")
        self.frame_shape = shapes.pop()
        self._starts = np.cumsum([0] + [len(indices) for _, indices in self.parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def chunks(self) -> Iterator[np.ndarray]:
        for run, indices in self.parts:
            for chunk in iter_frames(run, indices):
                yield check_frames(chunk, where=str(run_source(run)))

    def take(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((positions.size, *self.frame_shape), dtype=np.float32)
        part = np.searchsorted(self._starts, positions, side="right") - 1
        increasing = bool(np.all(np.diff(positions) > 0))
        for k in np.unique(part):
            run, indices = self.parts[k]
            chosen = np.flatnonzero(part == k)
            local = indices[positions[chosen] - self._starts[k]]
            if increasing and bool(np.all(np.diff(local) > 0)):
                # this run's frames are one block of ``out``, in the run's order: read into it, not copied
                block = out[chosen[0] : chosen[-1] + 1]
                check_frames(run.read_at(local, out=block), where=str(run_source(run)))
                continue
            order = np.argsort(local)
            out[chosen[order]] = check_frames(run.read_at(local[order]), where=str(run_source(run)))
        return out


def run_labels(run: Run, kind: str = "peaks") -> np.ndarray:
    """Labels of a run: 1 hit, 0 miss, -1 ambiguous (left out of training and scoring).

    ``"detectable"`` labels a frame without a crystal a miss, a crystal with at least
    :data:`MIN_DETECTABLE_SPOTS` detectable spots (expected photons >= 5 sigma of the background,
    see the simulator) a hit, and a crystal with fewer -1: it is in the beam, but no image of
    it could show it, so neither call is held against a method.

    Parameters
    ----------
    run : CXIRun or ImageRun
        The run.
    kind : {"peaks", "truth", "detectable"}
        The peak-finder rule, the simulator's truth, or the truth of crystals that can be seen.

    Returns
    -------
    numpy.ndarray of int8
        One label per frame.
    """
    if kind not in LABEL_KINDS:
        raise HitbenchError(f"labels '{kind}': unknown kind; use one of {', '.join(LABEL_KINDS)}")
    if isinstance(run, ImageRun):
        return run.labels
    if kind == "detectable":
        seen = run.field("n_spots_detectable") >= MIN_DETECTABLE_SPOTS
        return np.where(run.field("hit") == 0, 0, np.where(seen, 1, -1)).astype(np.int8)
    return run.field(LABEL_KINDS[kind][0]).astype(np.int8)


def label_sources(run: Run, kind: str) -> list[str]:
    """The label kinds a run can be scored against: ``kind`` and every other kind it has its own fields for.

    Parameters
    ----------
    run : CXIRun or ImageRun
        The run.
    kind : str
        The kind a comparison trains with (an image run's CSV labels stand in for it alone).

    Returns
    -------
    list of str
        Label kinds in :data:`LABEL_KINDS` order.
    """
    if isinstance(run, ImageRun):
        return [kind]
    return [k for k, fields in LABEL_KINDS.items() if k == kind or set(fields) <= set(run.fields)]


def read_labels_csv(path: Path, crop_size: int = CROP_SIZE, detector: DetectorGeometry | None = None) -> ImageRun:
    """An image run from a labels CSV (columns ``file`` and ``label``).

    Parameters
    ----------
    path : Path
        The CSV file; image paths in it are relative to its folder.
    crop_size : int
        Crop side.
    detector : DetectorGeometry, optional
        The images are raw multi-panel frames of this detector (see :class:`ImageRun`).

    Returns
    -------
    ImageRun
        The run, named after the CSV's folder. A file listed again with the same label is read once
        (a copy would be both trained on and held out); with another label it is refused.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not the header
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise HitbenchError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise HitbenchError(f"{path}: not a text CSV ({exc}); give columns 'file,label', one row per frame") from None
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise HitbenchError(f"{path}: expected a CSV with header columns 'file' and 'label' and one row per frame")
    first: dict[Path, tuple[int, int]] = {}  # each file's first row and label, in row order
    for line, row in enumerate(rows, start=2):
        if not (row["file"] or "").strip() or row["label"] is None:
            raise HitbenchError(f"{path}:{line}: row without a file or a label; give 'file,label' on every row")
        label = row["label"].strip().lower()
        if label not in CSV_LABELS:
            raise HitbenchError(f"{path}:{line}: label '{row['label']}' is not one of hit, miss, ambiguous")
        file = Path(os.path.normpath(path.parent / row["file"].strip()))
        if file not in first:
            first[file] = (line, CSV_LABELS[label])
        elif first[file][1] != CSV_LABELS[label]:  # identical rows are kept once: a copy would be trained and tested
            raise HitbenchError(
                f"{path}:{line}: {row['file'].strip()} is labelled '{label}' here and otherwise in "
                f"row {first[file][0]}; list each image once with one label"
            )
    labels = np.array([label for _, label in first.values()])
    return ImageRun(list(first), labels, name=path.parent.name, crop_size=crop_size, detector=detector)


def _cxi_run(path: Path, data_path: str | None, detector: DetectorGeometry | None) -> CXIRun:
    run = open_run(path, data_path)
    if run.n_frames == 0:
        raise HitbenchError(f"{path}: no frames (the run is empty); move it out of the data folder")
    check_panel_stack(run, detector)
    return run


def open_experiment(
    source: str | Path,
    crop_size: int = CROP_SIZE,
    data_path: str | None = None,
    detector: DetectorGeometry | None = None,
) -> Experiment:
    """Open an experiment from a folder of CXI files, a labels CSV or a folder holding labels.csv.

    A folder's runs are its ``*.cxi`` files and NeXus master files (``*_master.h5``, ``*.nxs``; see
    :mod:`hitbench.data.nexus`); with ``data_path``, every ``*.cxi``, ``*.h5``, ``*.hdf5`` and ``*.nxs`` file, its
    frames read at that HDF5 path.

    Parameters
    ----------
    source : str or Path
        Where the data is.
    crop_size : int
        Crop side for image runs.
    data_path : str, optional
        HDF5 path of the (n, ss, fs) frames in every run file.
    detector : DetectorGeometry, optional
        Image files are raw multi-panel frames of this detector (CXI runs are read through it by
        :func:`hitbench.data.assembled.assembled_experiment`).

    Returns
    -------
    Experiment
        Its runs.
    """
    source = Path(source)
    if not source.exists():
        raise HitbenchError(f"{source}: no such file or folder; give a folder of CXI files or a labels CSV")
    if source.is_file() and source.suffix == ".csv":
        run = read_labels_csv(source, crop_size, detector)
        return Experiment(source.parent.name, {run.name: run})
    if source.is_file():
        run = _cxi_run(source, data_path, detector)
        return Experiment(source.stem, {str(run.attrs.get("run", source.stem)): run})
    if (source / "labels.csv").is_file():
        run = read_labels_csv(source / "labels.csv", crop_size, detector)
        return Experiment(source.name, {run.name: run})
    patterns = ("*.cxi", "*.h5", "*.hdf5", "*.nxs") if data_path else ("*.cxi", "*_master.h5", "*.nxs")
    cxi_files = sorted({path for pattern in patterns for path in source.glob(pattern)})
    if not cxi_files:
        raise HitbenchError(
            f"{source}: no *.cxi files, NeXus masters or labels.csv; simulate some with `hitbench simulate`"
        )
    runs: dict[str, Run] = {}
    name = source.name
    for path in cxi_files:
        run = _cxi_run(path, data_path, detector)
        run_name = str(run.attrs.get("run", path.stem))
        if run_name in runs:
            raise HitbenchError(
                f"{path} and {run_source(runs[run_name])}: both are run '{run_name}' (their 'run' "
                "attribute); keep one of them in the data folder"
            )
        runs[run_name] = run
        name = str(run.attrs.get("experiment", name))
    return Experiment(name, runs)
