"""Runs of raw multi-panel frames read through their CrystFEL geometry: the assembled crop around the beam.

Peak finding works on the raw frames (:func:`hitbench.peaks.labels.label_run` with a geometry); the methods,
which need images of one fixed size, see :class:`AssembledRun`: each frame assembled from its panels and
cropped to a square around the beam (the study's 350 x 350), the raw pixel behind every crop pixel looked up
once per geometry (:meth:`hitbench.data.detector.DetectorGeometry.crop_map`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from hitbench.data.cxi import CXIRun
from hitbench.data.dataset import Experiment, ImageRun
from hitbench.data.detector import DetectorGeometry
from hitbench.geometry import CROP_SIZE


class AssembledRun(CXIRun):
    """A run of raw multi-panel frames (a CXI file, a NeXus master, any HDF5 layout), read as the assembled crop.

    Everything but the frames (fields, peaks in raw coordinates, attributes) is the run file's.

    Parameters
    ----------
    raw : CXIRun
        The run of raw frames (from :func:`hitbench.data.nexus.open_run`).
    geometry : DetectorGeometry
        The detector's geometry (its panels must fit the frames).
    side : int
        Side of the square crop.
    """

    def __init__(self, raw: CXIRun, geometry: DetectorGeometry, side: int = CROP_SIZE) -> None:
        geometry.check_shape(raw.frame_shape, str(raw.path))
        self._raw = raw
        for name in ("path", "data_path", "n_frames", "dtype", "has_mask", "geometry", "attrs", "fields", "has_peaks"):
            setattr(self, name, getattr(raw, name))
        self.raw_shape = raw.frame_shape
        self.raw_mask = raw.mask & geometry.good_pixels(raw.path)
        self._crop = geometry.crop_map(side)
        #: What the crop depends on, for cache keys: the geometry file's text and the side.
        self.geometry_key = hashlib.sha256(geometry.path.read_bytes() + str(side).encode()).digest()
        self.geometry_path = geometry.path
        self.frame_shape = (side, side)
        self.mask = self._crop.good & self.raw_mask.ravel()[self._crop.source]

    def _assemble(self, raw: np.ndarray) -> np.ndarray:
        out = np.take(raw.reshape(len(raw), -1), self._crop.source, axis=1)
        out *= self.mask
        return out

    def read(self, start: int = 0, stop: int | None = None, *, apply_mask: bool = True) -> np.ndarray:
        """The assembled crops of frames ``start:stop`` (float32, pixels off the panels or masked 0).

        Parameters
        ----------
        start, stop : int
            Frame range.
        apply_mask : bool
            Accepted for the reader's interface: a crop always has its bad pixels set to 0.

        Returns
        -------
        numpy.ndarray, shape (stop - start, side, side)
        """
        return self._assemble(self._raw.read(start, stop, apply_mask=False))

    def read_at(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The assembled crops of the frames at ``indices`` (increasing, distinct).

        Parameters
        ----------
        indices : numpy.ndarray
            Frame indices.
        out : numpy.ndarray, optional
            A float32 array of shape (len(indices), side, side) to write the crops into; by default a new one.

        Returns
        -------
        numpy.ndarray, shape (len(indices), side, side)
            The crops (``out`` when given).
        """
        crops = self._assemble(self._raw.read_at(indices))
        if out is None:
            return crops
        out[...] = crops
        return out


def assembled_experiment(experiment: Experiment, geometry: DetectorGeometry, side: int = CROP_SIZE) -> Experiment:
    """The experiment with every run read through the geometry (:class:`AssembledRun`, image runs assembled too).

    Parameters
    ----------
    experiment : Experiment
        Runs of raw frames.
    geometry : DetectorGeometry
        Their detector's geometry.
    side : int
        Crop side.

    Returns
    -------
    Experiment
    """
    runs = {
        name: AssembledRun(run, geometry, side)
        if isinstance(run, CXIRun)
        else run
        if run.detector is not None
        else ImageRun(run.files, run.labels, run.name, side, geometry)
        for name, run in experiment.runs.items()
    }
    return Experiment(experiment.name, runs, list(experiment.train_runs))
