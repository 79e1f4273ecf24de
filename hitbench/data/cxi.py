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
or LZ4 (Eiger data) open too. Frames are read lazily in slices; a run of any size is never loaded whole.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from hitbench.atomic import atomic_path, check_free_space, temp_sibling, write_error
from hitbench.constants import JOULE_PER_EV
from hitbench.data.compression import DEFAULT_COMPRESSION, dataset_filters, encode_chunk
from hitbench.errors import HitbenchError
from hitbench.geometry import Geometry
from hitbench.peaktable import MAX_PEAKS, PeakTable

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


class _StagedFile(io.FileIO):
    """A file written by h5py (driver "fileobj") that keeps its first write error instead of raising it.

    HDF5 writes cached data and metadata whenever an object or the file is closed, also while an error
    unwinds; a write failing there (a full disk) left the library in a state that crashed the process.
    So a failed write, or a Ctrl-C arriving during one, is recorded in ``error`` and every later write is
    dropped: HDF5 never sees a failure and closes cleanly, and the writer, which calls :meth:`check`
    after each step, raises the error and discards the file.
    """

    error: BaseException | None = None

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        try:
            while self.error is None and view.nbytes:
                view = view[super().write(view) :]
        except BaseException as exc:  # raised into HDF5's C code it would corrupt the library's state
            self.error = exc
        return size

    def truncate(self, size: int | None = None) -> int:
        try:
            if self.error is None:
                return super().truncate(size)
        except BaseException as exc:  # as in write
            self.error = exc
        return self.tell() if size is None else size

    def check(self) -> None:
        """Raise the first error of a write, if any."""
        if self.error is not None:
            raise self.error


def _staged_h5(path: Path, mode: str) -> tuple[_StagedFile, h5py.File]:
    """An HDF5 file written through a :class:`_StagedFile` (``mode`` "w" creates, "r+" updates)."""
    raw = _StagedFile(path, "r+")
    try:
        return raw, h5py.File(raw, mode)
    except BaseException:
        raw.close()
        raise


def _discard_h5(raw: _StagedFile, h5: h5py.File | None) -> None:
    """Close an HDF5 file being discarded, whatever state a failed write left it in."""
    raw.error = raw.error or OSError("discarded")  # drop the writes of the close
    try:
        if h5 is not None:
            with contextlib.suppress(OSError, RuntimeError):
                h5.close()
    finally:
        raw.close()


class CXIWriter:
    """Write a run to a CXI file chunk by chunk; the file appears only when complete.

    Parameters
    ----------
    path : str or Path
        Output file. An existing file is refused (nothing a user has is overwritten).
    frame_shape : tuple of int
        (H, W) of every frame.
    mask : numpy.ndarray, optional
        (H, W) bool, True = good pixel.
    geometry : Geometry, optional
        Detector geometry.
    attrs : mapping, optional
        Run attributes (scalars or strings), stored on /entry_1/hitbench.
    max_peaks : int
        Width of the peak arrays when peaks are appended.
    dtype : numpy dtype
        On-disk dtype of the frames (integer frames stay integer).
    compression : str
        Filters of every dataset, one of :data:`hitbench.data.compression.COMPRESSIONS`.
    """

    def __init__(
        self,
        path: str | Path,
        frame_shape: tuple[int, int],
        *,
        mask: np.ndarray | None = None,
        geometry: Geometry | None = None,
        attrs: Mapping[str, object] | None = None,
        max_peaks: int = MAX_PEAKS,
        dtype: np.dtype | type = np.float32,
        compression: str = DEFAULT_COMPRESSION,
    ) -> None:
        self.path = Path(path)
        self._filters = dataset_filters(compression)
        self._compression = compression
        if self.path.exists():
            raise HitbenchError(f"{self.path}: file exists; choose another output path or remove it first")
        if not self.path.parent.is_dir():
            raise HitbenchError(f"{self.path.parent}: output folder does not exist; create it first")
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.max_peaks = int(max_peaks)
        try:
            self._tmp = temp_sibling(self.path)
        except OSError as exc:
            raise HitbenchError(
                f"{self.path.parent}: cannot write there ({exc.strerror}); pick a writable --out"
            ) from None
        self._n = 0
        self._raw, self._h5 = None, None
        try:
            self._raw, self._h5 = _staged_h5(self._tmp, "w")
            self._start(mask, geometry, attrs, dtype)
        except BaseException:  # a bad mask, a full disk or Ctrl-C while starting: leave no temporary file
            self.abort()
            raise

    def _start(
        self, mask: np.ndarray | None, geometry: Geometry | None, attrs: Mapping[str, object] | None, dtype: object
    ) -> None:
        h5 = self._h5
        h5.create_dataset(
            DATA,
            shape=(0, *self.frame_shape),
            maxshape=(None, *self.frame_shape),
            dtype=dtype,
            chunks=(1, *self.frame_shape),
            **self._filters,
        )
        det = h5.require_group(DETECTOR)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != self.frame_shape:
                raise HitbenchError(f"mask: shape {mask.shape} differs from the frames' {self.frame_shape}")
            det.create_dataset("mask", data=(~mask).astype(np.uint16), **self._filters)
        if geometry is not None:
            det["distance"] = geometry.distance
            det["x_pixel_size"] = geometry.x_pixel_size
            det["y_pixel_size"] = geometry.y_pixel_size
            src = h5.require_group(SOURCE)
            src["energy"] = geometry.photon_energy * JOULE_PER_EV
            src["energy"].attrs["photon_energy_eV"] = geometry.photon_energy
        grp = h5.require_group(HITBENCH)
        for key, value in (attrs or {}).items():
            grp.attrs[key] = value

    def _grow(self, name: str, values: np.ndarray, group: str) -> None:
        values = np.asarray(values)
        full = f"{group}/{name}"
        if full not in self._h5:
            if self._n:
                raise HitbenchError(
                    f"{self.path}: field '{name}' first given after {self._n} frames; give it with every chunk"
                )
            self._h5.create_dataset(
                full,
                shape=(0, *values.shape[1:]),
                maxshape=(None, *values.shape[1:]),
                dtype=values.dtype,
                chunks=True,
                **self._filters,
            )
        dset = self._h5[full]
        dset.resize(self._n + values.shape[0], axis=0)
        dset[self._n :] = values

    def append(
        self,
        frames: np.ndarray,
        fields: Mapping[str, np.ndarray] | None = None,
        peaks: PeakTable | None = None,
        encoded: list[bytes] | None = None,
    ) -> None:
        """Append frames with their per-frame fields and peaks.

        Parameters
        ----------
        frames : numpy.ndarray, shape (n, H, W)
            The frames.
        fields : mapping of str to numpy.ndarray, optional
            Per-frame hitbench fields (first dimension n), stored under /entry_1/hitbench.
        peaks : PeakTable, optional
            Peaks of these frames, stored under /entry_1/result_1.
        encoded : list of bytes, optional
            The frames already compressed, one chunk each
            (:func:`hitbench.data.compression.encode_chunk` with this writer's compression, from frames of
            the writer's dtype): written as they are, so the compression can run in parallel elsewhere.
            Without them, frames of the writer's dtype are encoded here the same way.
        """
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != self.frame_shape:
            raise HitbenchError(f"{self.path}: frames of shape {frames.shape} do not match {self.frame_shape}")
        n = frames.shape[0]
        for name, values in (fields or {}).items():
            if len(values) != n:
                raise HitbenchError(f"{self.path}: field '{name}' has {len(values)} values for {n} frames")
        try:
            data = self._h5[DATA]
            data.resize(self._n + n, axis=0)
            if encoded is None and frames.dtype == data.dtype:
                encoded = [encode_chunk(frame[np.newaxis], self._compression) for frame in frames]
            if not encoded or encoded[0] is None:  # a filter libhdf5 applies itself, another dtype, no frames
                data[self._n :] = frames
            else:
                if len(encoded) != n or frames.dtype != data.dtype:
                    raise ValueError(f"{len(encoded)} {frames.dtype} chunks given for {n} {data.dtype} frames")
                for i, chunk in enumerate(encoded):
                    data.id.write_direct_chunk((self._n + i, 0, 0), chunk)
            for name, values in (fields or {}).items():
                self._grow(name, values, HITBENCH)
            if peaks is not None:
                for name, values in _peak_arrays(peaks, self.max_peaks).items():
                    self._grow(name, values, RESULT)
            self._raw.check()
        except OSError as exc:  # a full disk (HDF5 reports it as an OSError); the caller aborts
            raise write_error(self.path, exc, frames.nbytes) from None
        self._n += n

    def close(self) -> Path:
        """Finish the file and move it into place.

        Returns
        -------
        Path
            The written file.
        """
        try:
            self._h5.close()  # flushes: a full disk shows here
            self._raw.check()
            self._raw.close()
            self._raw, self._h5 = None, None
            if self.path.exists():
                raise HitbenchError(f"{self.path}: file appeared while writing; kept the existing one")
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise write_error(self.path, exc) from None
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard the partial file (also after a write failed, e.g. on a full disk)."""
        raw, h5, self._raw, self._h5 = self._raw, self._h5, None, None
        try:
            if raw is not None:
                _discard_h5(raw, h5)
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> CXIWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _peak_arrays(peaks: PeakTable, max_peaks: int) -> dict[str, np.ndarray]:
    def pad(a: np.ndarray, dtype: type) -> np.ndarray:
        a = np.asarray(a, dtype=dtype)
        out = np.zeros((a.shape[0], max_peaks), dtype=dtype)
        width = min(max_peaks, a.shape[1])
        out[:, :width] = a[:, :width]
        return out

    return {
        "nPeaks": np.minimum(np.asarray(peaks.n_peaks, dtype=np.int32), max_peaks),
        "peakXPosRaw": pad(peaks.x, np.float32),
        "peakYPosRaw": pad(peaks.y, np.float32),
        "peakTotalIntensity": pad(peaks.intensity, np.float32),
    }


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


def write_cxi(
    path: str | Path,
    frames: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    geometry: Geometry | None = None,
    attrs: Mapping[str, object] | None = None,
    fields: Mapping[str, np.ndarray] | None = None,
    peaks: PeakTable | None = None,
    max_peaks: int = MAX_PEAKS,
    compression: str = DEFAULT_COMPRESSION,
) -> Path:
    """Write a whole frame stack to a new CXI file (see :class:`CXIWriter`).

    Parameters
    ----------
    path : str or Path
        Output file (must not exist).
    frames : numpy.ndarray, shape (n, H, W)
        The frames.
    mask, geometry, attrs, fields, peaks, max_peaks, compression
        As for :class:`CXIWriter` and :meth:`CXIWriter.append`.

    Returns
    -------
    Path
        The written file.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise HitbenchError(f"{path}: frames have shape {frames.shape}, expected (n, H, W)")
    with CXIWriter(
        path,
        frames.shape[1:],
        mask=mask,
        geometry=geometry,
        attrs=attrs,
        max_peaks=max_peaks,
        dtype=frames.dtype,
        compression=compression,
    ) as writer:
        writer.append(frames, fields=fields, peaks=peaks)
    return Path(path)


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

    def read(self, start: int = 0, stop: int | None = None, *, apply_mask: bool = True) -> np.ndarray:
        """Frames ``start:stop`` as float32, bad pixels set to 0 unless ``apply_mask`` is False.

        Parameters
        ----------
        start, stop : int
            Frame range.
        apply_mask : bool
            Zero the pixels the mask marks bad.

        Returns
        -------
        numpy.ndarray, shape (stop - start, H, W)
            The frames.
        """
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        return self._read([slice(start, max(start, stop))], f"frames {start}-{stop}", apply_mask)

    def read_at(self, indices: np.ndarray) -> np.ndarray:
        """The frames at ``indices`` (increasing, distinct) as float32, bad pixels set to 0.

        Runs of consecutive indices are read as one slice each: an HDF5 point selection over many
        frames is several times slower. hitbench stores each frame as its own chunk, so only those asked
        for are decompressed (other files are read a block of whole chunks at a time, see :meth:`_read`).

        Parameters
        ----------
        indices : numpy.ndarray
            Frame indices, strictly increasing.

        Returns
        -------
        numpy.ndarray, shape (len(indices), H, W)
            The frames.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.zeros((0, *self.frame_shape), dtype=np.float32)
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        starts, stops = indices[np.r_[0, breaks]], indices[np.r_[breaks - 1, indices.size - 1]] + 1
        spans = [slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
        return self._read(spans, f"frames {indices[0]}-{indices[-1]}", True)

    def __getstate__(self) -> dict:
        """Pickled (to a worker) without the block of frames kept from the last read."""
        return {**self.__dict__, "_block": None}

    def _read(self, spans: list[slice], what: str, apply_mask: bool) -> np.ndarray:
        """The frames of ``spans`` one after another, converted to float32 as they are read.

        A file storing many frames per HDF5 chunk is read a block of whole chunks at a time, and the
        last block is kept: read frame by frame, each chunk is decompressed once, not once per frame.
        """
        _plugin_filters()  # also in a worker process that received this reader pickled
        frames = np.empty((sum(s.stop - s.start for s in spans), *self.frame_shape), dtype=np.float32)
        try:
            with contextlib.ExitStack() as stack:
                h5: list[h5py.Dataset] = []  # the dataset, opened at the first read from the file

                def dataset() -> h5py.Dataset:
                    if not h5:
                        h5.append(stack.enter_context(h5py.File(self.path, "r"))[self.data_path])
                    return h5[0]

                at = 0
                for span in spans:
                    n = span.stop - span.start
                    if n > 0 and self._block_frames > 1:
                        self._read_blocks(dataset, span, frames[at : at + n])
                    elif n > 0:
                        dataset().read_direct(
                            frames.reshape(len(frames), *self._stored_shape),
                            source_sel=np.s_[span],
                            dest_sel=np.s_[at : at + n],
                        )
                    at += n
        except OSError as exc:
            raise _access_error(self.path, exc) or HitbenchError(
                f"{self.path}: {what} unreadable ({exc}); the file may be corrupt"
            ) from None
        except (KeyError, TypeError) as exc:  # TypeError: frames past the end of a truncated stack
            raise HitbenchError(f"{self.path}: {what} unreadable ({exc}); the file may be corrupt") from None
        if apply_mask:
            frames *= self.mask
        return frames

    def _read_blocks(self, dataset: Callable[[], h5py.Dataset], span: slice, out: np.ndarray) -> None:
        """Frames ``span`` into ``out`` from blocks of ``_block_frames`` frames (whole chunks), the last one kept."""
        pos = span.start
        while pos < span.stop:
            first = pos - pos % self._block_frames
            if self._block is None or self._block[0] != first:
                stop = min(first + self._block_frames, self.n_frames)
                self._block = (first, dataset()[first:stop].reshape(-1, *self.frame_shape))
            block = self._block[1]
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


def update_cxi(
    path: str | Path,
    *,
    peaks: PeakTable | None = None,
    fields: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, object] | None = None,
    max_peaks: int = MAX_PEAKS,
    compression: str = DEFAULT_COMPRESSION,
) -> None:
    """Add or replace peaks and per-frame fields of an existing CXI file, frames untouched.

    The update is staged: the file is copied beside itself, the copy updated and renamed over
    the file, so an interruption, a full disk or any error leaves the file exactly as it was
    (the disk must hold a second copy for a moment; a file short of that is refused first,
    with one line naming the space needed). The file keeps its permissions; other hard links
    to it keep the old content.

    Parameters
    ----------
    path : str or Path
        The CXI file.
    peaks : PeakTable, optional
        One entry per frame, written to /entry_1/result_1.
    fields : mapping, optional
        Per-frame hitbench fields, written to /entry_1/hitbench.
    attrs : mapping, optional
        Attributes added to /entry_1/hitbench.
    max_peaks : int
        Width of the peak arrays.
    compression : str
        Filters of the new datasets, one of :data:`hitbench.data.compression.COMPRESSIONS`.
    """
    path = Path(path)
    filters = dataset_filters(compression)
    staged: dict[str, np.ndarray] = {}
    if peaks is not None:
        staged.update({f"{RESULT}/{k}": v for k, v in _peak_arrays(peaks, max_peaks).items()})
    staged.update({f"{HITBENCH}/{k}": np.asarray(v) for k, v in (fields or {}).items()})
    with _open(path) as h5:
        n = h5[DATA].shape[0] if DATA in h5 else None
    for key, values in staged.items():
        if n is not None and values.shape[0] != n:
            raise HitbenchError(f"{path}: {key} has {values.shape[0]} entries for {n} frames")
    real = path.resolve()  # a symbolic link stays one: its target is replaced
    if not os.access(real, os.W_OK):
        raise HitbenchError(f"{path}: the file is not writable; labels are written into the run, make it writable")
    needed = real.stat().st_size + sum(values.nbytes for values in staged.values())
    check_free_space(real, needed)
    try:
        with atomic_path(real) as tmp:
            shutil.copyfile(real, tmp)
            shutil.copymode(real, tmp)
            raw, h5 = _staged_h5(tmp, "r+")
            try:
                for key, values in staged.items():
                    if key in h5:
                        del h5[key]
                    h5.create_dataset(key, data=values, **filters)
                grp = h5.require_group(HITBENCH)
                for key, value in (attrs or {}).items():
                    grp.attrs[key] = value
                h5.close()
                raw.check()
                raw.close()
            except BaseException:
                _discard_h5(raw, h5)
                raise
    except OSError as exc:
        raise write_error(path, exc, needed) from None
