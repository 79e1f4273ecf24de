"""Writing CXI files in the Cheetah / CXIDB layout that CrystFEL reads (the layout: :mod:`hitbench.data.cxi`).

:class:`CXIWriter` writes a run chunk by chunk (the file appears only when complete), :func:`write_cxi` a whole
frame stack, and :func:`update_cxi` adds peaks, fields and attributes to a run through a staged copy. Every
dataset is written with one compression (:mod:`hitbench.data.compression`; by default deflate + shuffle).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from hitbench.atomic import atomic_path, check_free_space, temp_sibling, write_error
from hitbench.constants import JOULE_PER_EV
from hitbench.data.compression import DEFAULT_COMPRESSION, dataset_filters, encode_chunk
from hitbench.data.cxi import DATA, DETECTOR, HITBENCH, RESULT, SOURCE, _open
from hitbench.errors import HitbenchError
from hitbench.geometry import Geometry
from hitbench.peaktable import MAX_PEAKS, PeakTable

#: Frames whose per-frame fields and peaks :class:`CXIWriter` gathers before writing them.
FIELD_BATCH = 1024


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
        self._pending: dict[str, list[np.ndarray]] = {}  # fields and peaks not yet written, by dataset
        self._n_pending = 0
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

    def _write_fields(self) -> None:
        """Write the gathered per-frame fields and peaks (HDF5 costs per write far more than per frame)."""
        for full, parts in self._pending.items():
            if not parts:
                continue
            values = np.concatenate(parts)
            if full not in self._h5:
                self._h5.create_dataset(
                    full,
                    shape=(0, *values.shape[1:]),
                    maxshape=(None, *values.shape[1:]),
                    dtype=values.dtype,
                    chunks=True,
                    **self._filters,
                )
            dset = self._h5[full]
            start = dset.shape[0]
            dset.resize(start + values.shape[0], axis=0)
            dset[start:] = values
            parts.clear()
        self._n_pending = 0

    def _gather(self, arrays: dict[str, np.ndarray]) -> None:
        """Keep a chunk's per-frame fields and peaks (full dataset names) for :meth:`_write_fields`."""
        if not self._n and not self._pending:
            self._pending = {full: [] for full in arrays}
        for full in arrays.keys() ^ self._pending.keys():
            name, when = full.rsplit("/", 1)[1], "first given" if full in arrays else "missing"
            raise HitbenchError(f"{self.path}: field '{name}' {when} after {self._n} frames; give it with every chunk")
        for full, values in arrays.items():
            self._pending[full].append(np.asarray(values))

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
            Per-frame hitbench fields (first dimension n), stored under /entry_1/hitbench. Every append gives
            the same fields; they are written with the first append, then every :data:`FIELD_BATCH` frames
            and when the file closes.
        peaks : PeakTable, optional
            Peaks of these frames, stored under /entry_1/result_1 (as fields: with every append or never).
        encoded : list of bytes, optional
            The frames already compressed, one chunk each
            (:func:`hitbench.data.compression.encode_chunk` with this writer's compression, from frames of
            the writer's dtype): written as they are, so the compression can run in parallel elsewhere.
            Without them, frames of the writer's dtype are encoded here the same way.
        """
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != self.frame_shape:
            raise HitbenchError(f"{self.path}: frames of shape {frames.shape} do not match {self.frame_shape}")
        dtype = self._h5[DATA].dtype
        if encoded is None and frames.dtype == dtype:
            encoded = [encode_chunk(frame[np.newaxis], self._compression) for frame in frames]
        if not encoded or encoded[0] is None:  # a filter libhdf5 applies itself, another dtype, no frames
            self._append(len(frames), frames, None, fields, peaks)
            return
        if len(encoded) != len(frames) or frames.dtype != dtype:
            raise ValueError(f"{len(encoded)} {frames.dtype} chunks given for {len(frames)} {dtype} frames")
        self._append(len(frames), None, encoded, fields, peaks)

    def append_encoded(self, encoded: list[bytes], fields: Mapping[str, np.ndarray] | None = None) -> None:
        """Append frames given only compressed, with their per-frame fields (see :meth:`append`).

        Parameters
        ----------
        encoded : list of bytes
            One chunk per frame: :func:`hitbench.data.compression.encode_chunk` of a frame of the writer's
            dtype and frame shape, with the writer's compression (other bytes make an unreadable file).
        fields : mapping of str to numpy.ndarray, optional
            As for :meth:`append`.
        """
        self._append(len(encoded), None, encoded, fields, None)

    def _append(
        self,
        n: int,
        frames: np.ndarray | None,
        encoded: list[bytes] | None,
        fields: Mapping[str, np.ndarray] | None,
        peaks: PeakTable | None,
    ) -> None:
        """Write ``n`` frames (as they are, or ``encoded``, one chunk each) and gather their fields and peaks."""
        arrays = {f"{HITBENCH}/{name}": values for name, values in (fields or {}).items()}
        if peaks is not None:
            arrays.update({f"{RESULT}/{name}": v for name, v in _peak_arrays(peaks, self.max_peaks).items()})
        for full, values in arrays.items():
            if len(values) != n:
                name = full.rsplit("/", 1)[1]
                raise HitbenchError(f"{self.path}: field '{name}' has {len(values)} values for {n} frames")
        self._gather(arrays)
        try:
            data = self._h5[DATA]
            data.resize(self._n + n, axis=0)
            if encoded is None:
                data[self._n :] = frames
            else:
                for i, chunk in enumerate(encoded):
                    data.id.write_direct_chunk((self._n + i, 0, 0), chunk)
            self._n_pending += n
            if self._n_pending >= FIELD_BATCH or not self._n:  # the first creates the datasets: errors show early
                self._write_fields()
            self._raw.check()
        except OSError as exc:  # a full disk (HDF5 reports it as an OSError); the caller aborts
            nbytes = frames.nbytes if encoded is None else sum(len(chunk) for chunk in encoded)
            raise write_error(self.path, exc, nbytes) from None
        self._n += n

    def close(self) -> Path:
        """Finish the file and move it into place.

        Returns
        -------
        Path
            The written file.
        """
        try:
            self._write_fields()
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
