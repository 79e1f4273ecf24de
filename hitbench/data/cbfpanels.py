"""Multi-panel CBF files: one binary section per panel (as cctbx writes LCLS CSPAD frames), read as a raw frame.

fabio reads the first binary section of a CBF file only. A multi-panel CBF holds one byte-offset compressed
section per panel (ASIC or sensor), each with its own size in its MIME header; :func:`read_cbf_panels` reads them
all, in file order, and stacks them along the slow scan: panel k occupies ss ``k * rows .. (k + 1) * rows - 1``.
A CrystFEL geometry describing that layout (``--geometry``) then assembles the frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hitbench.data.formats import CBF_BINARY_START
from hitbench.errors import HitbenchError

#: Start of a CBF binary section's MIME header.
MIME_BOUNDARY = b"--CIF-BINARY-FORMAT-SECTION--"
_TYPES = {
    "signed 32-bit integer": np.int32,
    "unsigned 32-bit integer": np.uint32,
    "signed 16-bit integer": np.int16,
    "unsigned 16-bit integer": np.uint16,
    "signed 8-bit integer": np.int8,
    "unsigned 8-bit integer": np.uint8,
}


def _header(text: bytes, key: str) -> str | None:
    match = re.search(rb"^\s*" + re.escape(key.encode()) + rb"\s*[:=]\s*(.+?)\s*$", text, re.M | re.I)
    return match.group(1).decode("ascii", "replace").strip('"; ') if match else None


def _spans(content: bytes, where: str) -> list[tuple[bytes, int, int]]:
    """(MIME header, first data byte, size) of every binary section, in file order (nothing decoded)."""
    spans = []
    at = 0
    while True:
        boundary = content.find(MIME_BOUNDARY, at)
        start = content.find(CBF_BINARY_START, boundary) if boundary >= 0 else -1
        if start < 0:
            return spans
        header = content[boundary:start]
        try:
            size = int(_header(header, "X-Binary-Size") or "")
        except ValueError:
            raise HitbenchError(
                f"{where}: binary section {len(spans) + 1} has no X-Binary-Size; the file is corrupt or not a CBF image"
            ) from None
        spans.append((header, start + len(CBF_BINARY_START), size))
        at = start + len(CBF_BINARY_START) + size


def _decode(content: bytes, header: bytes, first: int, size: int, where: str) -> np.ndarray:
    """One byte-offset binary section as a (rows, columns) array."""
    from fabio.compression import decByteOffset

    try:
        fast = int(_header(header, "X-Binary-Size-Fastest-Dimension") or "")
        slow = int(_header(header, "X-Binary-Size-Second-Dimension") or "")
    except ValueError:
        raise HitbenchError(
            f"{where}: a binary section has no X-Binary-Size-Fastest-Dimension and "
            "-Second-Dimension; the file is corrupt or not a CBF image"
        ) from None
    conversion = _header(header, "conversions") or ""
    if "byte_offset" not in conversion.lower():
        raise HitbenchError(
            f"{where}: a binary section is compressed as '{conversion}'; hitbench reads byte-offset "
            "CBF sections (x-CBF_BYTE_OFFSET), convert the file"
        )
    element = _header(header, "X-Binary-Element-Type") or "signed 32-bit integer"
    kind = _TYPES.get(element.lower())
    if kind is None:
        raise HitbenchError(f"{where}: a binary section has element type '{element}'; give integer pixels")
    data = content[first : first + size]
    if len(data) < size:
        raise HitbenchError(
            f"{where}: a binary section is cut short ({len(data)} of {size} bytes); the file is truncated"
        )
    return np.asarray(decByteOffset(data, size=fast * slow), dtype=kind).reshape(slow, fast)


def read_cbf_panels(path: Path, content: bytes) -> tuple[np.ndarray, int] | None:
    """The raw frame of a multi-panel CBF file (its sections stacked along ss), or None for a one-section file.

    Parameters
    ----------
    path : Path
        The file, for messages.
    content : bytes
        Its bytes, decompressed.

    Returns
    -------
    (numpy.ndarray, int) or None
        The frame, (n_sections * rows, columns), and the number of sections.
    """
    spans = _spans(content, str(path))
    if len(spans) < 2:  # fabio reads it
        return None
    sections = [_decode(content, *span, str(path)) for span in spans]
    shapes = {s.shape for s in sections}
    if len(shapes) != 1:
        raise HitbenchError(
            f"{path}: its {len(sections)} panels have different shapes {sorted(shapes)}; hitbench "
            "stacks panels of one shape"
        )
    return np.concatenate(sections, axis=0), len(sections)
