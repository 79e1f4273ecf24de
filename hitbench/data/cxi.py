"""CXI files in the Cheetah / CXIDB layout that CrystFEL reads.

Layout (see DESIGN.md)::

    /entry_1/data_1/data                         (n, H, W) frames, one frame per chunk
    /entry_1/result_1/nPeaks                     (n,)             peak count per frame
    /entry_1/result_1/peakXPosRaw, peakYPosRaw   (n, max_peaks)   peak centroids, pixels (0-based)
    /entry_1/result_1/peakTotalIntensity         (n, max_peaks)   integrated intensity, ADU
    /entry_1/instrument_1/detector_1/distance    camera length, m
    /entry_1/instrument_1/detector_1/x_pixel_size, y_pixel_size   m
    /entry_1/instrument_1/detector_1/mask        (H, W) on disk 0 = good, non-zero = bad (CXI pixel_mask)
    /entry_1/instrument_1/source_1/energy        photon energy, J (CXI); eV kept as attribute
    /entry_1/hitbench/<field>                    hitbench's per-frame fields (label, simulated truth, ...)
    /entry_1/hitbench attributes                 run attributes (run number, experiment, conditions)

Every dataset is written with one compression (:mod:`hitbench.data.compression`; by default deflate + shuffle,
which any libhdf5 reads). Reading registers hdf5plugin's filters, so files compressed with Blosc, bitshuffle
or LZ4 (Eiger data) open too. Frames are read lazily in slices; a run of any size is never loaded whole. Frames
stored one per chunk with shuffle + deflate are inflated on several threads (:mod:`hitbench.data.chunk_read`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from hitbench.constants import JOULE_PER_EV
from hitbench.data.chunk_read import direct_frames, read_frames
from hitbench.errors import HitbenchError
from hitbench.geometry import Geometry
from hitbench.peaktable import PeakTable

DATA = "/entry_1/data_1/data"
RESULT = "/entry_1/result_1"
DETECTOR = "/entry_1/instrument_1/detector_1"
SOURCE = "/entry_1/instrument_1/source_1"
HITBENCH = "/entry_1/hitbench"
#: Largest block of frames stored many to an HDF5 chunk that a reader keeps decompressed between reads
#: (such files are read whole chunks at a time; a larger block is read as asked, chunk by chunk).
BLOCK_BYTES = 512 * 2**20


def _plugin_filters() -> None:
    """Register hdf5plugin's filters (Blosc, bitshuffle, LZ4, ...) so that others' compressed files read."""
    import hdf5plugin  # noqa: F401  (importing registers the filters with libhdf5)


def check_panel_stack(run: CXIRun, geometry: object | None) -> None:
    """Refuse a run stored panel by panel, (n_frames, panel, ss, fs), when no geometry says where its panels are.

    Without one, its panels would be searched for peaks and cropped as if they were one image.

    Parameters
    ----------
    run : CXIRun
        The run.
    geometry : DetectorGeometry or None
        The ``--geometry`` given, if any.
    """
    if geometry is None and run.n_panels > 1:
        raise HitbenchError(
            f"{run.path}:{run.data_path} holds {run.n_panels} panels a frame (n_frames, panel, ss, fs); give the "
            "detector's CrystFEL geometry with --geometry so that they are placed where they sit"
        )


def _access_error(path: Path, exc: OSError) -> HitbenchError | None:
    """The one line for an HDF5 file that cannot be opened although intact: no permission, or locked."""
    if isinstance(exc, PermissionError):
        return HitbenchError(f"{path}: cannot read: permission denied; get read access to it (ls -l shows who has)")
    if isinstance(exc, BlockingIOError) or "unable to lock file" in str(exc):
        return HitbenchError(
            f"{path}: locked by another process (HDF5 file locking: a program has it open for writing); wait until it "
            "is done, or if every program only reads it, set HDF5_USE_FILE_LOCKING=FALSE"
        )
    return None


def _broken_link(h5: h5py.File, key: str) -> HitbenchError | None:
    """The one line for ``key`` reached through an external link whose file cannot be opened, else None."""
    parts = key.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        at = "/" + "/".join(parts[:depth])
        try:
            link = h5.get(at, getlink=True)
        except (KeyError, OSError, RuntimeError, ValueError):
            return None
        if isinstance(link, h5py.ExternalLink):
            try:
                h5[at]
            except (KeyError, OSError):
                target = Path(h5.filename).parent / link.filename
                return HitbenchError(
                    f"{h5.filename}:{at} is an external link to {link.filename}:{link.path}, which cannot be opened "
                    f"({'missing' if not target.exists() else 'unreadable'}: {target}); put that file there or fix "
                    "the link"
                )
            return None
        if link is None:
            return None
    return None


def _open(path: Path, mode: str = "r") -> h5py.File:
    _plugin_filters()
    if not path.exists():
        raise HitbenchError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise HitbenchError(f"{path}: is a folder, expected a CXI/HDF5 file")
    try:
        with open(path, "rb"):  # h5py would call an unreadable file "not HDF5"
            pass
    except OSError as exc:
        raise _access_error(path, exc) or HitbenchError(f"{path}: cannot read ({exc.strerror})") from None
    if not h5py.is_hdf5(path):
        raise HitbenchError(f"{path}: not an HDF5 file (empty, truncated or another format); give a CXI/HDF5 file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise _access_error(path, exc) or HitbenchError(
            f"{path}: cannot open as HDF5 ({exc}); the file may be truncated or corrupt"
        ) from None


class CXIRun:
    """Lazy reader of one run stored as a CXI file.

    Parameters
    ----------
    path : str or Path
        The CXI file.
    data_path : str
        HDF5 path of the frame stack.
    """

    def __init__(self, path: str | Path, data_path: str = DATA) -> None:
        self.path = Path(path)
        self.data_path = data_path
        with _open(self.path) as h5:
            try:
                self._read_metadata(h5)
            except (KeyError, OSError, RuntimeError, ValueError) as exc:  # h5py's errors for damaged objects
                raise (
                    _broken_link(h5, self.data_path)
                    or _broken_link(h5, f"{DETECTOR}/mask")
                    or HitbenchError(
                        f"{self.path}: HDF5 metadata unreadable ({exc}); the file may be corrupt, copy it again"
                    )
                ) from None

    def _read_metadata(self, h5: h5py.File) -> None:
        """Frame stack shape and dtype, mask, geometry, attributes and field names, checked."""
        data_path = self.data_path
        if data_path not in h5 or not isinstance(h5[data_path], h5py.Dataset):
            raise HitbenchError(
                f"{self.path}: no frames at '{data_path}'; a CXI file keeps them at {DATA} (give the right data path)"
            )
        dset = h5[data_path]
        if dset.ndim not in (3, 4):
            raise HitbenchError(
                f"{self.path}:{data_path} has shape {dset.shape}; expected a frame stack (n_frames, height, width) "
                "or (n_frames, panel, ss, fs)"
            )
        if not _is_real(dset.dtype) or dset.dtype == bool:
            raise HitbenchError(
                f"{self.path}:{data_path} has dtype {dset.dtype}; expected real-valued (integer or float) frames"
            )
        self.n_frames = int(dset.shape[0])
        # an (n, panel, ss, fs) stack (AGIPD, Jungfrau modules) is read with its panels stacked along ss
        self._stored_shape = tuple(int(s) for s in dset.shape[1:])
        self.n_panels = int(np.prod(self._stored_shape[:-2]))
        self.frame_shape: tuple[int, int] = (int(np.prod(dset.shape[1:-1])), int(dset.shape[-1]))
        self.dtype = dset.dtype
        # frames per HDF5 chunk, read a whole block at a time when a block is small enough to keep
        per_chunk = int(dset.chunks[0]) if dset.chunks else 1
        block_bytes = per_chunk * self.frame_shape[0] * self.frame_shape[1] * dset.dtype.itemsize
        self._block_frames = per_chunk if block_bytes <= BLOCK_BYTES else 1
        self._block: tuple[int, np.ndarray] | None = None  # (first frame, frames) of the last block read
        det = h5.get(DETECTOR)
        self.has_mask = det is not None and "mask" in det
        if self.has_mask:
            raw = det["mask"][()]
            if not _is_real(raw.dtype):
                raise HitbenchError(
                    f"{self.path}:{DETECTOR}/mask has dtype {raw.dtype}; expected numbers (0 = good pixel)"
                )
            if raw.shape != self.frame_shape:
                raise HitbenchError(f"{self.path}:{DETECTOR}/mask has shape {raw.shape}, frames are {self.frame_shape}")
            self.mask = raw == 0
            if not self.mask.any():
                raise HitbenchError(
                    f"{self.path}:{DETECTOR}/mask marks every pixel bad (0 = good); fix or remove the mask"
                )
        else:
            self.mask = np.ones(self.frame_shape, dtype=bool)
        self.geometry = _read_geometry(h5)
        grp = h5.get(HITBENCH)
        self.attrs = {k: _plain(v) for k, v in grp.attrs.items()} if grp is not None else {}
        self.fields = sorted(k for k in grp if isinstance(grp[k], h5py.Dataset)) if grp is not None else []
        self.has_peaks = f"{RESULT}/nPeaks" in h5

    def __len__(self) -> int:
        return self.n_frames

    def read(
        self, start: int = 0, stop: int | None = None, *, apply_mask: bool = True, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Frames ``start:stop`` as float32, bad pixels set to 0 unless ``apply_mask`` is False.

        Parameters
        ----------
        start, stop : int
            Frame range.
        apply_mask : bool
            Zero the pixels the mask marks bad.
        out : numpy.ndarray, optional
            A C-contiguous float32 array of shape (stop - start, H, W) to read into (a buffer reused from read to
            read: its memory is not mapped and zeroed again by the system each time); by default a new one.

        Returns
        -------
        numpy.ndarray, shape (stop - start, H, W)
            The frames (``out`` when given).
        """
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        return self._read_into([slice(start, max(start, stop))], f"frames {start}-{stop}", apply_mask, out)

    def read_at(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The frames at ``indices`` (increasing, distinct) as float32, bad pixels set to 0.

        hitbench stores each frame as its own chunk: only those asked for are decompressed, shared out
        among threads however scattered they are (:mod:`hitbench.data.chunk_read`). Other files are read
        through h5py, runs of consecutive indices as one slice each (an HDF5 point selection over many
        frames is several times slower), or a block of whole chunks at a time (see :meth:`_read`).

        Parameters
        ----------
        indices : numpy.ndarray
            Frame indices, strictly increasing.
        out : numpy.ndarray, optional
            A C-contiguous float32 array of shape (len(indices), H, W) to read into (e.g. a block of a larger
            batch, which is then not copied); by default a new one.

        Returns
        -------
        numpy.ndarray, shape (len(indices), H, W)
            The frames (``out`` when given).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.zeros((0, *self.frame_shape), dtype=np.float32) if out is None else out
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        starts, stops = indices[np.r_[0, breaks]], indices[np.r_[breaks - 1, indices.size - 1]] + 1
        spans = [slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
        return self._read_into(spans, f"frames {indices[0]}-{indices[-1]}", True, out)

    def _read_into(self, spans: list[slice], what: str, apply_mask: bool, out: np.ndarray | None) -> np.ndarray:
        """:meth:`_read` into ``out`` when given, also for a reader of other files whose ``_read`` takes no buffer."""
        if out is None:
            return self._read(spans, what, apply_mask)
        if type(self)._read is not CXIRun._read:  # a reader of other files (MasterRun) whose _read takes no buffer
            out[...] = self._read(spans, what, apply_mask)
            return out
        return self._read(spans, what, apply_mask, out)

    def __getstate__(self) -> dict:
        """Pickled (to a worker) without the block of frames kept from the last read."""
        return {**self.__dict__, "_block": None}

    def _read(self, spans: list[slice], what: str, apply_mask: bool, out: np.ndarray | None = None) -> np.ndarray:
        """The frames of ``spans`` one after another, converted to float32 (and masked) as they are read.

        A file storing many frames per HDF5 chunk is read a block of whole chunks at a time, and the
        last block is kept: read frame by frame, each chunk is decompressed once, not once per frame.
        """
        _plugin_filters()  # also in a worker process that received this reader pickled
        shape = (sum(s.stop - s.start for s in spans), *self.frame_shape)
        if out is None:
            frames = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}")
        else:
            frames = out
        # bad pixels zeroed by multiplying by the mask as 0 / 1 (as frames *= mask would, -0.0 included)
        weights = self.mask.astype(np.float32).reshape(self._stored_shape) if apply_mask else None
        try:
            with contextlib.ExitStack() as stack:
                h5: list[h5py.Dataset] = []  # the dataset, opened at the first read from the file

                def dataset() -> h5py.Dataset:
                    if not h5:
                        h5.append(stack.enter_context(h5py.File(self.path, "r"))[self.data_path])
                    return h5[0]

                stored = frames.reshape(len(frames), *self._stored_shape)
                if len(frames) and self._block_frames == 1 and direct_frames(dataset()):
                    # inflated on threads, not under h5py's lock, each frame masked while in cache
                    indices = np.concatenate([np.arange(span.start, span.stop) for span in spans])
                    read_frames(dataset(), indices, stored, weights)
                    return frames
                at = 0
                for span in spans:
                    n = span.stop - span.start
                    if n > 0 and self._block_frames > 1:
                        self._read_blocks(dataset, span, frames[at : at + n])
                    elif n > 0:
                        dataset().read_direct(stored, source_sel=np.s_[span], dest_sel=np.s_[at : at + n])
                    if n > 0 and weights is not None:
                        stored[at : at + n] *= weights
                    at += n
        except OSError as exc:
            raise _access_error(self.path, exc) or HitbenchError(
                f"{self.path}: {what} unreadable ({exc}); the file may be corrupt"
            ) from None
        except (KeyError, TypeError) as exc:  # TypeError: frames past the end of a truncated stack
            raise HitbenchError(f"{self.path}: {what} unreadable ({exc}); the file may be corrupt") from None
        return frames

    def _read_blocks(self, dataset: Callable[[], h5py.Dataset], span: slice, out: np.ndarray) -> None:
        """Frames ``span`` into ``out`` from blocks of ``_block_frames`` frames (whole chunks), the last one kept."""
        pos = span.start
        while pos < span.stop:
            first = pos - pos % self._block_frames
            kept = self._block  # read once: another thread (the cnn's batch prefetch) may replace it meanwhile
            if kept is None or kept[0] != first:
                stop = min(first + self._block_frames, self.n_frames)
                kept = (first, dataset()[first:stop].reshape(-1, *self.frame_shape))
                self._block = kept
            block = kept[1]
            end = min(span.stop, first + len(block))
            if end <= pos:  # the stack ends before the span (a truncated file)
                raise TypeError(f"frame {pos} is past the {self.n_frames} frames")
            out[pos - span.start : end - span.start] = block[pos - first : end - first]
            pos = end

    def field(self, name: str) -> np.ndarray:
        """A per-frame hitbench field (e.g. ``label``, ``hit``).

        Parameters
        ----------
        name : str
            Field name under /entry_1/hitbench.

        Returns
        -------
        numpy.ndarray
            Its values.
        """
        with _open(self.path) as h5:
            key = f"{HITBENCH}/{name}"
            if key not in h5:
                raise HitbenchError(f"{self.path}: no field {key}; run `hitbench label` first or check the name")
            return h5[key][()]

    @property
    def peaks(self) -> PeakTable | None:
        """The peak lists in /entry_1/result_1, or None."""
        with _open(self.path) as h5:
            if f"{RESULT}/nPeaks" not in h5:
                return None
            res = h5[RESULT]
            return PeakTable(
                n_peaks=res["nPeaks"][()],
                x=res["peakXPosRaw"][()],
                y=res["peakYPosRaw"][()],
                intensity=res["peakTotalIntensity"][()],
            )


def _is_real(dtype: np.dtype) -> bool:
    """Integers, floats or booleans (not strings, compounds or complex numbers)."""
    return any(np.issubdtype(dtype, kind) for kind in (np.integer, np.floating, np.bool_))


def _plain(value: object) -> object:
    """An HDF5 attribute as a plain Python value; text that is not UTF-8 (a damaged file) is a ValueError."""
    if isinstance(value, bytes):
        return value.decode()  # UnicodeDecodeError is a ValueError
    if isinstance(value, str):
        value.encode()  # h5py keeps undecodable bytes as surrogates: UnicodeEncodeError, a ValueError
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_geometry(h5: h5py.File) -> Geometry | None:
    keys = [f"{DETECTOR}/{name}" for name in ("distance", "x_pixel_size", "y_pixel_size")] + [f"{SOURCE}/energy"]
    if not all(key in h5 for key in keys):
        return None
    values = []
    for key in keys:
        item = h5[key]
        value = np.asarray(item[()]) if isinstance(item, h5py.Dataset) else np.asarray(None)
        if value.size != 1 or not _is_real(value.dtype):
            raise HitbenchError(f"{h5.filename}:{key} is not a single number; fix or remove it")
        values.append(float(value.reshape(())))
    energy = h5[keys[-1]]
    ev = float(energy.attrs.get("photon_energy_eV", values[-1] / JOULE_PER_EV))
    return Geometry(*values[:3], ev)
