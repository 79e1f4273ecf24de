"""Facility HDF5 runs: NeXus/Eiger/Jungfrau master files whose frames lie in linked data files.

A DECTRIS Eiger (or a NeXus writer of Jungfrau data) writes a small master file and the frames in data files
beside it, reached through external links ``/entry/data/data_000001``, ``data_000002``, ... each an
(n_i, ss, fs) stack, usually bitshuffle-LZ4 compressed (read through hdf5plugin's filters). :class:`MasterRun`
reads those stacks as one run of ``sum(n_i)`` frames, with the master's pixel mask
(``/entry/instrument/detector/detectorSpecific/pixel_mask``, 0 = good) and geometry (``detector_distance``,
``x_pixel_size``, ``y_pixel_size``, ``/entry/instrument/beam/incident_wavelength``) when it records them.
Any other layout of (n, ss, fs) frames is read with an explicit HDF5 path (``--data-path``,
:class:`hitbench.data.cxi.CXIRun`). :func:`open_run` chooses.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from hitbench.constants import photon_energy_ev
from hitbench.data.cxi import DATA, CXIRun, _broken_link, _open, _plugin_filters
from hitbench.errors import HitbenchError
from hitbench.geometry import Geometry

#: The group of a NeXus master file that links the data files.
NEXUS_DATA = "/entry/data"
NEXUS_DETECTOR = "/entry/instrument/detector"
_LINK_NAME = re.compile(r"^data_\d{6}$")


def nexus_stacks(h5: h5py.File) -> list[str]:
    """The frame stacks of a NeXus master file (``/entry/data/data_NNNNNN``, in order), empty for other files.

    Parameters
    ----------
    h5 : h5py.File
        The open file.

    Returns
    -------
    list of str
        HDF5 paths.
    """
    group = h5.get(NEXUS_DATA)
    if not isinstance(group, h5py.Group):
        return []
    return [f"{NEXUS_DATA}/{name}" for name in sorted(group) if _LINK_NAME.match(name)]


class MasterRun(CXIRun):
    """A run stored as a NeXus master file and its linked data files, read like a CXI run.

    Frames, their count, shape and type come from the linked stacks; peaks and hitbench fields, once
    ``hitbench label`` has written them, from the master file (its CXI groups).

    Parameters
    ----------
    path : str or Path
        The master file.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, NEXUS_DATA)

    def _read_metadata(self, h5: h5py.File) -> None:
        """The linked stacks' frame count, shape and type, the pixel mask, geometry, fields (CXIRun's errors)."""
        self._stacks = nexus_stacks(h5)
        if not self._stacks:
            raise HitbenchError(
                f"{self.path}: no {NEXUS_DATA}/data_000001 ...; not a NeXus master file, give the "
                "frames' HDF5 path with --data-path"
            )
        shapes, dtypes = [], set()
        for key in self._stacks:
            error = _broken_link(h5, key)
            if error is not None:
                raise error
            dset = h5[key]
            if not isinstance(dset, h5py.Dataset) or dset.ndim != 3:
                raise HitbenchError(
                    f"{self.path}:{key} is not an (n, ss, fs) frame stack; fix the link or give --data-path"
                )
            shapes.append(dset.shape)
            dtypes.add(dset.dtype)
        if len({s[1:] for s in shapes}) != 1:
            raise HitbenchError(
                f"{self.path}: the linked stacks have frames of different shapes "
                f"{sorted({s[1:] for s in shapes})}; link the stacks of one detector"
            )
        self._starts = np.cumsum([0] + [s[0] for s in shapes])
        self.n_frames = int(self._starts[-1])
        self.frame_shape = (int(shapes[0][1]), int(shapes[0][2]))
        self.dtype = np.result_type(*dtypes)
        self._block_frames = 1
        self._block = None
        self.n_panels = 1  # Eiger stacks are (n, ss, fs)
        mask_key = f"{NEXUS_DETECTOR}/detectorSpecific/pixel_mask"
        self.has_mask = mask_key in h5
        self.mask = np.ones(self.frame_shape, dtype=bool)
        if self.has_mask:
            pixel_mask = np.asarray(h5[mask_key][()])
            if pixel_mask.shape != self.frame_shape:
                raise HitbenchError(
                    f"{self.path}:{mask_key} has shape {pixel_mask.shape}, frames are "
                    f"{self.frame_shape}; fix or remove the mask"
                )
            self.mask = pixel_mask == 0
        self.geometry = _nexus_geometry(h5)
        centre = [f"{NEXUS_DETECTOR}/beam_center_x", f"{NEXUS_DETECTOR}/beam_center_y"]
        #: Beam centre (x, y) in pixels as the master records it, else None.
        self.beam_center = (
            tuple(float(np.asarray(h5[k][()]).reshape(())) for k in centre) if all(k in h5 for k in centre) else None
        )
        grp = h5.get("/entry_1/hitbench")
        self.attrs = {k: v.item() if isinstance(v, np.generic) else v for k, v in grp.attrs.items()} if grp else {}
        self.fields = sorted(k for k in grp if isinstance(grp[k], h5py.Dataset)) if grp is not None else []
        self.has_peaks = "/entry_1/result_1/nPeaks" in h5

    def _read(self, spans: list[slice], what: str, apply_mask: bool) -> np.ndarray:
        """The frames of ``spans``, each read from the linked stacks that hold it."""
        _plugin_filters()
        frames = np.empty((sum(s.stop - s.start for s in spans), *self.frame_shape), dtype=np.float32)
        try:
            with h5py.File(self.path, "r") as h5:
                at = 0
                for span in spans:
                    for k, key in enumerate(self._stacks):
                        low, high = max(span.start, self._starts[k]), min(span.stop, self._starts[k + 1])
                        if low < high:
                            n = int(high - low)
                            source = np.s_[int(low - self._starts[k]) : int(high - self._starts[k])]
                            h5[key].read_direct(frames, source_sel=source, dest_sel=np.s_[at : at + n])
                            at += n
        except (OSError, KeyError, TypeError) as exc:
            raise HitbenchError(
                f"{self.path}: {what} unreadable ({exc}); a linked data file may be missing or corrupt"
            ) from None
        if apply_mask:
            frames *= self.mask
        return frames


def _nexus_geometry(h5: h5py.File) -> Geometry | None:
    """Distance, pixel size and photon energy as an Eiger master records them, or None where one is missing."""
    keys = {
        "distance": f"{NEXUS_DETECTOR}/detector_distance",
        "x": f"{NEXUS_DETECTOR}/x_pixel_size",
        "y": f"{NEXUS_DETECTOR}/y_pixel_size",
        "wavelength": "/entry/instrument/beam/incident_wavelength",
    }
    if not all(key in h5 for key in keys.values()):
        return None
    values = {}
    for name, key in keys.items():
        value = np.asarray(h5[key][()])
        if value.size != 1 or not np.issubdtype(value.dtype, np.number) or not value.reshape(()) > 0:
            raise HitbenchError(f"{h5.filename}:{key} is not a single positive number; fix or remove it")
        values[name] = float(value.reshape(()))
    return Geometry(values["distance"], values["x"], values["y"], photon_energy_ev(values["wavelength"]))


def data_path_for(path: str | Path, data_path: str | None, geometry_data: str | None) -> str | None:
    """The frames' HDF5 path for a run: the one given, else a geometry's ``data`` line where the file has it.

    A geometry's ``data`` (e.g. Eiger's ``/entry/data/data``, the path inside its data files) is a hint: a
    file without it (a NeXus master) gets None, the choice of :func:`open_run`.

    Parameters
    ----------
    path : str or Path
        The run file.
    data_path : str or None
        ``--data-path``.
    geometry_data : str or None
        The geometry's ``data`` line.

    Returns
    -------
    str or None
    """
    if data_path is not None or geometry_data is None:
        return data_path
    with _open(Path(path)) as h5:
        return geometry_data if geometry_data in h5 else None


def open_run(path: str | Path, data_path: str | None = None) -> CXIRun:
    """A run's reader: the frames at ``data_path``, else a NeXus master's linked stacks, else the CXI layout's.

    Parameters
    ----------
    path : str or Path
        A CXI file, a NeXus/Eiger master file or any HDF5 file of (n, ss, fs) frames.
    data_path : str, optional
        HDF5 path of the frame stack (``--data-path``).

    Returns
    -------
    CXIRun or MasterRun
    """
    if data_path is not None:
        return CXIRun(path, data_path)
    with _open(Path(path)) as h5:
        master = DATA not in h5 and bool(nexus_stacks(h5))
    return MasterRun(path) if master else CXIRun(path)
