"""Labelling a CXI run: its peaks found, counted and labelled by the study's rule (:mod:`hitbench.labelrule`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from hitbench.data.compression import DEFAULT_COMPRESSION, dataset_filters
from hitbench.data.cxi import check_panel_stack
from hitbench.data.cxi_write import update_cxi
from hitbench.data.detector import DetectorGeometry
from hitbench.data.nexus import MasterRun, data_path_for, open_run
from hitbench.errors import HitbenchError
from hitbench.frames import TASK_FRAMES
from hitbench.labelrule import HIT_ABOVE, MISS_BELOW, peak_labels, rule_record
from hitbench.peaks.peakfinder import PeakFinder8
from hitbench.peaktable import PeakTable

#: ADU per photon of the CSPAD-like detector of ``cxi-streptavidin``, on whose frames ``PeakFinder8``'s defaults
#: were chosen (docs/peaks.md): its ``adc_threshold`` of 50 ADU is 1.79 photons there.
DEFAULTS_ADU_PER_PHOTON = 28.0


def label_finder(adu_per_photon: float) -> PeakFinder8:
    """The peak finder that labels a detector's frames: the default finder, its ``adc_threshold`` in photons.

    Parameters
    ----------
    adu_per_photon : float
        The detector's units per photon (28 ADU for the CSPAD-like detector, 12.4 for a Jungfrau in keV at
        12.4 keV, 1 for a photon-counting detector).

    Returns
    -------
    PeakFinder8
        The default finder with ``adc_threshold`` the same photons as its 50 ADU at
        :data:`DEFAULTS_ADU_PER_PHOTON` (50 ADU at 28 ADU per photon, 22.1 keV at 12.4 keV, 1.79 counts).
    """
    default = PeakFinder8()
    return replace(default, adc_threshold=default.adc_threshold * adu_per_photon / DEFAULTS_ADU_PER_PHOTON)


def finder_code() -> str:
    """A digest of the peak finder's code: the source files of :mod:`hitbench.peaks` (kernels included).

    ``hitbench label`` records it beside the finder's parameters, so that a cached simulated run labelled
    by other code (an older hitbench, whose peaks may differ) is labelled again.

    Returns
    -------
    str
        The first 16 hex digits of the SHA-256 of the files, in name order.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def raw_finder(finder: PeakFinder8, geometry: DetectorGeometry) -> PeakFinder8:
    """``finder`` for the raw frames of a multi-panel detector: each pixel's true radius, peaks kept on one panel.

    Parameters
    ----------
    finder : PeakFinder8
        The configured peak finder (its ``min_res``/``max_res`` are radii from the beam in pixels).
    geometry : DetectorGeometry
        The detector's geometry.

    Returns
    -------
    PeakFinder8
        A copy with ``radius_map`` and ``panel_map`` from the geometry.
    """
    return replace(finder, radius_map=geometry.radius, panel_map=geometry.panel_index)


def _find_chunk(
    path: str, start: int, stop: int, finder: PeakFinder8, data_path: str | None = None, mask: np.ndarray | None = None
) -> PeakTable:
    """Peaks of frames ``start:stop`` of a run file (a joblib worker: it opens the file itself)."""
    run = open_run(path, data_path)
    try:
        return finder.find_stack(run.read(start, stop), mask=run.mask if mask is None else mask)
    except HitbenchError as exc:
        raise HitbenchError(f"{path} frames {start}-{min(stop, run.n_frames) - 1}: {exc}") from None


def label_run(
    path: str | Path,
    finder: PeakFinder8,
    *,
    miss_below: int = MISS_BELOW,
    hit_above: int = HIT_ABOVE,
    chunk_size: int = TASK_FRAMES,
    n_jobs: int = 1,
    compression: str = DEFAULT_COMPRESSION,
    geometry: DetectorGeometry | None = None,
    data_path: str | None = None,
) -> np.ndarray:
    """Find the peaks of a CXI run and write them, the peak counts and the labels into the file.

    Peaks go to /entry_1/result_1 (nPeaks, peakXPosRaw, peakYPosRaw, peakTotalIntensity), the
    fields ``n_peaks`` and ``label`` to /entry_1/hitbench, and the finder's parameters and the
    label rule to attributes of /entry_1/hitbench (``peakfinder8``, ``label_rule``, JSON), with a geometry its
    file as ``geometry`` (an empty ``geometry`` when a run labelled with one is labelled again without).
    The frames are not rewritten; the update is staged so that an interruption leaves the
    previous results.

    Parameters
    ----------
    path : str or Path
        The CXI file.
    finder : PeakFinder8
        The configured peak finder.
    miss_below, hit_above : int
        The label rule (see :func:`hitbench.labelrule.peak_labels`).
    chunk_size : int
        Frames read and searched at a time.
    n_jobs : int
        joblib workers over chunks.
    compression : str
        HDF5 compression of the datasets added to the file (see :mod:`hitbench.data.compression`).
    geometry : DetectorGeometry, optional
        The detector's geometry: the frames are raw multi-panel frames, searched with :func:`raw_finder` and the
        geometry's good pixels, and the peaks are written in raw coordinates (as Cheetah and CrystFEL expect).
    data_path : str, optional
        HDF5 path of the frames (default the geometry's ``data`` where the file has it, else a NeXus master's
        linked stacks, else the CXI layout's; see :func:`hitbench.data.nexus.data_path_for` and ``open_run``). A
        master file that records the beam centre gives it to the finder, unless the finder has one or a geometry
        is given.

    Returns
    -------
    numpy.ndarray, shape (n_frames,)
        The labels written.
    """
    if chunk_size < 1:
        raise HitbenchError(f"chunk_size={chunk_size}: give 1 frame or more")
    dataset_filters(compression)  # an unknown choice fails before the search
    data_path = data_path_for(path, data_path, geometry.data if geometry is not None else None)
    run = open_run(path, data_path)
    if run.n_frames == 0:
        raise HitbenchError(f"{run.path}: no frames to label (the run is empty); leave it out")
    check_panel_stack(run, geometry)
    mask = None
    attrs = {}
    if geometry is not None:
        geometry.check_shape(run.frame_shape, str(run.path))
        mask = run.mask & geometry.good_pixels(run.path)
        finder = raw_finder(finder, geometry)
        attrs["geometry"] = str(geometry.path.resolve())
    elif isinstance(run, MasterRun) and run.beam_center is not None and finder.center is None:
        finder = replace(finder, center=run.beam_center)
    elif "geometry" in run.attrs:  # labelled before with a geometry: no more
        attrs["geometry"] = ""
    starts = range(0, run.n_frames, chunk_size)
    table = PeakTable.concatenate(
        Parallel(n_jobs=n_jobs)(
            delayed(_find_chunk)(str(run.path), start, start + chunk_size, finder, data_path, mask) for start in starts
        )
    )
    labels = peak_labels(table.n_peaks, miss_below=miss_below, hit_above=hit_above)
    update_cxi(
        run.path,
        peaks=table,
        fields={"n_peaks": table.n_peaks.astype(np.int32), "label": labels},
        attrs={
            "peakfinder8": json.dumps(finder.record()),
            "peakfinder8_code": finder_code(),
            "label_rule": json.dumps(rule_record(miss_below, hit_above)),
            **attrs,
        },
        max_peaks=max(int(finder.max_num_peaks), table.x.shape[1]),
        compression=compression,
    )
    return labels
