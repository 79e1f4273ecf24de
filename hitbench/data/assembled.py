"""Runs of raw multi-panel frames read through their CrystFEL geometry: the assembled crop around the beam.

Peak finding works on the raw frames (:func:`hitbench.peaks.labels.label_run` with a geometry); the methods,
which need images of one fixed size, see :class:`AssembledRun`: each frame assembled from its panels and
cropped to a square around the beam (the study's 350 x 350), the raw pixel behind every crop pixel looked up
once per geometry (:meth:`hitbench.data.geom.DetectorGeometry.crop_map`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from hitbench.data.cxi import DATA, CXIRun
from hitbench.data.dataset import Experiment, ImageRun
from hitbench.data.geom import CROP_SIDE, DetectorGeometry


class AssembledRun(CXIRun):
    """A CXI run of raw multi-panel frames, read as the assembled crop around the beam.

    Everything but the frames (fields, peaks in raw coordinates, attributes) is the run file's.

    Parameters
    ----------
    path : str or Path
        The run file.
    geometry : DetectorGeometry
        The detector's geometry (its panels must fit the frames).
    side : int
        Side of the square crop.
    data_path : str, optional
        HDF5 path of the frames (default the geometry's ``data``, else the CXI layout's).
    """

    def __init__(self, path: str | Path, geometry: DetectorGeometry, side: int = CROP_SIDE,
                 data_path: str | None = None) -> None:
        super().__init__(path, data_path or geometry.data or DATA)
        geometry.check_shape(self.frame_shape, str(self.path))
        self.raw_shape = self.frame_shape
        self.raw_mask = self.mask & geometry.good_pixels(self.path)
        self._crop = geometry.crop_map(side)
        #: What the crop depends on, for cache keys: the geometry file's text and the side.
        self.geometry_key = hashlib.sha256(geometry.path.read_bytes() + str(side).encode()).digest()
        self.geometry_path = geometry.path
        self._raw = CXIRun(path, self.data_path)
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

    def read_at(self, indices: np.ndarray) -> np.ndarray:
        """The assembled crops of the frames at ``indices`` (increasing, distinct).

        Parameters
        ----------
        indices : numpy.ndarray
            Frame indices.

        Returns
        -------
        numpy.ndarray, shape (len(indices), side, side)
        """
        return self._assemble(self._raw.read_at(indices))


def assembled_experiment(experiment: Experiment, geometry: DetectorGeometry, side: int = CROP_SIDE) -> Experiment:
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
    runs = {name: AssembledRun(run.path, geometry, side) if isinstance(run, CXIRun)
            else ImageRun(run.files, run.labels, run.name, side, geometry) for name, run in experiment.runs.items()}
    return Experiment(experiment.name, runs, list(experiment.train_runs))
