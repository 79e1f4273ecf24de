"""Detector image files other than CXI, read through fabio (CBF/miniCBF, SMV, EDF, TIFF; .gz/.bz2 too).

A file gives one frame, its mask (negative Pilatus pixels are module gaps or bad pixels)
and, where the header says so, the geometry and the beam centre. :func:`crop` takes the
central region (default 350x350, as in the reference study) or a region around a beam centre.
"""

from __future__ import annotations

import bz2
import gzip
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hitbench.constants import photon_energy_ev
from hitbench.errors import HitbenchError
from hitbench.geometry import CROP_SIZE, Geometry

#: File endings read through fabio (compressed variants are recognised by fabio too).
IMAGE_SUFFIXES = (".cbf", ".img", ".smv", ".edf", ".tif", ".tiff", ".mccd")


@dataclass
class DetectorImage:
    """One detector frame read from an image file.

    Parameters
    ----------
    frame : numpy.ndarray, shape (H, W)
        Pixel values (float32), bad pixels set to 0.
    mask : numpy.ndarray, shape (H, W)
        True = good pixel.
    geometry : Geometry or None
        From the header, where it gives distance, pixel size and wavelength.
    beam_center : tuple of float or None
        (x, y) in pixels, from the header.
    panels : int
        Binary sections of a multi-panel CBF file, stacked along ss in ``frame`` (1: one frame as stored).
    """

    frame: np.ndarray
    mask: np.ndarray
    geometry: Geometry | None
    beam_center: tuple[float, float] | None
    panels: int = 1


def _finite(key: str, text: str) -> float:
    """A header number; one too large for a float (``1e400``) or not a number is a ValueError naming ``key``."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"header {key} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"header {key} '{text}' is not a finite number")
    return value


def _pilatus_header(text: str) -> tuple[Geometry | None, tuple[float, float] | None]:
    def number(key: str) -> float | None:
        match = re.search(rf"#\s*{key}\s+([-+0-9.eE]+)", text)
        return _finite(key, match.group(1)) if match else None

    beam = re.search(r"#\s*Beam_xy\s*\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)", text)
    center = (_finite("Beam_xy", beam.group(1)), _finite("Beam_xy", beam.group(2))) if beam else None
    pixel, wavelength, distance = number("Pixel_size"), number("Wavelength"), number("Detector_distance")
    geometry = None
    if pixel and wavelength and distance:
        geometry = Geometry(distance, pixel, pixel, photon_energy_ev(wavelength))
    return geometry, center


def _smv_header(header: dict) -> tuple[Geometry | None, tuple[float, float] | None]:
    try:
        pixel_mm = float(header["PIXEL_SIZE"])
        center = (float(header["BEAM_CENTER_X"]) / pixel_mm, float(header["BEAM_CENTER_Y"]) / pixel_mm)
    except (KeyError, ValueError, ZeroDivisionError):
        return None, None
    if not all(math.isfinite(c) for c in center):
        raise ValueError(f"header BEAM_CENTER_X/Y and PIXEL_SIZE give the beam centre {center}, not a finite position")
    try:
        geometry = Geometry(
            float(header["DISTANCE"]) / 1e3,
            pixel_mm / 1e3,
            pixel_mm / 1e3,
            photon_energy_ev(float(header["WAVELENGTH"])),
        )
    except (KeyError, ValueError, ZeroDivisionError):
        geometry = None
    return geometry, center


#: Start of a CBF binary section; fabio's reader searches for it without end when it is missing.
CBF_BINARY_START = b"\x0c\x1a\x04\xd5"
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open}


def _check_cbf(path: Path) -> bytes | None:
    """Refuse a CBF file without a binary section before fabio reads it (fabio would loop for ever).

    Returns the file's bytes (decompressed) for a CBF file, else None.
    """
    names = path.name.lower().rsplit(".", 2)
    if "cbf" not in names[1:]:
        return None
    try:
        with _OPENERS.get(path.suffix.lower(), open)(path, "rb") as file:
            content = file.read()
    except (OSError, EOFError, ValueError) as exc:
        raise HitbenchError(f"{path}: not a readable detector image ({exc})") from None
    if CBF_BINARY_START not in content:
        raise HitbenchError(
            f"{path}: CBF file without a binary section (its start marker is missing or damaged); "
            "the file is truncated or corrupt"
        )
    return content


def read_image(path: str | Path) -> DetectorImage:
    """Read one frame and its mask from a detector image file.

    Parameters
    ----------
    path : str or Path
        A CBF/miniCBF, SMV, EDF or TIFF file (optionally .gz/.bz2 compressed).

    Returns
    -------
    DetectorImage
        Frame, mask, geometry and beam centre. A multi-panel CBF file (a binary section per panel) gives its
        sections stacked along ss (:mod:`hitbench.data.cbfpanels`), to be assembled with a geometry.
    """
    import fabio  # imported here: listing methods or reading CXI files must not pay for it

    from hitbench.data.cbfpanels import read_cbf_panels  # it takes CBF_BINARY_START from this module

    path = Path(path)
    if not path.is_file():
        raise HitbenchError(f"{path}: no such file; check the path")
    content = _check_cbf(path)
    panels = read_cbf_panels(path, content) if content is not None else None
    if panels is not None:
        frame = panels[0].astype(np.float32)
        mask = frame >= 0
        frame[~mask] = 0
        return DetectorImage(frame, mask, None, None, panels=panels[1])
    try:
        image = fabio.open(str(path))
        data = np.asarray(image.data)
    except Exception as exc:  # fabio raises many types for unreadable files
        raise HitbenchError(f"{path}: not a readable detector image ({type(exc).__name__}: {exc})") from None
    if getattr(image, "nframes", 1) > 1:  # fabio's data is the first frame only
        raise HitbenchError(
            f"{path}: holds {image.nframes} frames (pages); hitbench reads one frame per image file, "
            "save each frame to its own file and give each a row in labels.csv"
        )
    if data.ndim != 2 or data.size == 0:
        raise HitbenchError(f"{path}: image has shape {data.shape}; expected a single 2-D frame")
    if not np.issubdtype(data.dtype, np.number):  # booleans are not pixel values (np.bool_ is not a number)
        raise HitbenchError(f"{path}: image has dtype {data.dtype}; expected numeric pixels")
    frame = data.astype(np.float32)
    mask = np.isfinite(frame) & (frame >= 0)
    if not mask.any():
        raise HitbenchError(f"{path}: no good pixel (all are negative or not finite, i.e. masked); check the file")
    frame[~mask] = 0
    header = dict(image.header)
    try:
        if "_array_data.header_contents" in header:
            geometry, center = _pilatus_header(header["_array_data.header_contents"])
        else:
            geometry, center = _smv_header(header)
    except ValueError as exc:
        raise HitbenchError(f"{path}: {exc}; fix the header") from None
    return DetectorImage(frame, mask, geometry, center)


def crop(
    frame: np.ndarray,
    mask: np.ndarray,
    size: int | tuple[int, int] = CROP_SIZE,
    center: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a size x size region around ``center`` (default: the frame's centre).

    Parts of the region outside the detector are filled with 0 and masked.

    Parameters
    ----------
    frame : numpy.ndarray, shape (H, W)
        The frame.
    mask : numpy.ndarray, shape (H, W)
        True = good pixel.
    size : int or (int, int)
        Height and width of the crop (one number: square).
    center : (float, float), optional
        (x, y) pixel position to centre on, e.g. the beam centre.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The cropped frame and mask.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if center is None:
        center = ((frame.shape[1] - 1) / 2, (frame.shape[0] - 1) / 2)
    x0 = int(round(center[0] - (width - 1) / 2))
    y0 = int(round(center[1] - (height - 1) / 2))
    out = np.zeros((height, width), dtype=frame.dtype)
    out_mask = np.zeros((height, width), dtype=bool)
    ys, xs = slice(max(y0, 0), min(y0 + height, frame.shape[0])), slice(max(x0, 0), min(x0 + width, frame.shape[1]))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        raise HitbenchError(f"crop: centre {center} puts the {height}x{width} region outside the {frame.shape} frame")
    target = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    out[target] = frame[ys, xs]
    out_mask[target] = mask[ys, xs]
    return out * out_mask, out_mask
