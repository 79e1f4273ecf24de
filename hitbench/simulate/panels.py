"""Raw multi-panel frames: the simulator's detector as a grid of panels, stored panel by panel with its ``.geom``.

With ``[detector] panels = "RxC"`` the detector is R rows by C columns of whole panels of ``panel_shape``
(ss, fs) pixels, ``panel_gap_px`` (rows, columns) apart, each turned by its ``panel_rotations`` entry (0, 90,
180 or 270 degrees: the lab direction of its fast scan is +x, +y, -x or -y). The simulator draws the assembled
image (the panels' bounding box, beam at its centre plus ``beam_centre_offset_px``) and stores each frame raw:
the panels stacked along the slow scan in row-major order, panel k at ss ``k * rows .. (k + 1) * rows - 1``, as
Jungfrau, ePix or AGIPD files hold them. The CrystFEL geometry written beside the runs places every panel so
that a raw pixel's lab position is exactly its pixel in the assembled image, relative to the nominal beam
centre (a run's beam-centre jitter moves the beam off it, as a drifting beam does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hitbench.data.detector import DetectorGeometry, Panel
from hitbench.data.geom import geom_text
from hitbench.errors import HitbenchError

#: Lab direction (x, y) of the fast and slow scan of a panel turned by each rotation.
_DIRECTIONS = {0: ((1, 0), (0, 1)), 90: ((0, 1), (-1, 0)), 180: ((-1, 0), (0, -1)), 270: ((0, -1), (1, 0))}


def grid_shape(text: str, where: str) -> tuple[int, int]:
    """``"RxC"`` as (rows, columns) of panels.

    Parameters
    ----------
    text : str
        The ``panels`` field.
    where : str
        The field, for the message.

    Returns
    -------
    tuple of int
    """
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise HitbenchError(f'{where} = {text!r}: give rows x columns of panels, e.g. "2x2" (or "" for a crop)')
    return int(match[1]), int(match[2])


@dataclass
class RawLayout:
    """A grid of panels: where each raw pixel lies in the assembled image, and the panels as a geometry.

    Attributes
    ----------
    shape : tuple of int
        (H, W) of the assembled image.
    raw_shape : tuple of int
        (ss, fs) of the raw frame.
    footprints : list of (slice, slice)
        Each panel's rows and columns in the assembled image.
    gaps : numpy.ndarray of bool, shape
        Assembled pixels on no panel.
    raw_index : numpy.ndarray, raw_shape
        Flat assembled-image index of every raw pixel.
    panels : list of Panel
        The panels placed relative to the nominal beam centre (CrystFEL's conventions).
    centre : tuple of float
        The nominal beam centre (x, y) in the assembled image.
    """

    shape: tuple[int, int]
    raw_shape: tuple[int, int]
    footprints: list[tuple[slice, slice]]
    gaps: np.ndarray
    raw_index: np.ndarray
    panels: list[Panel]
    centre: tuple[float, float]

    def geometry(self, path: str = "simulated.geom") -> DetectorGeometry:
        """The layout as a :class:`hitbench.data.detector.DetectorGeometry` (``path`` names it in messages)."""
        from pathlib import Path

        return DetectorGeometry(Path(path), list(self.panels))

    def to_raw(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (fs, ss) of assembled positions (x, y) (NaN where no panel holds them)."""
        height, width = self.shape
        col, row = np.rint(x), np.rint(y)
        inside = np.isfinite(col) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        which = np.full(np.shape(x), -1)
        for k, (rs, cs) in enumerate(self.footprints):
            which[inside & (row >= rs.start) & (row < rs.stop) & (col >= cs.start) & (col < cs.stop)] = k
        fs, ss = np.full(np.shape(x), np.nan), np.full(np.shape(x), np.nan)
        for k in np.unique(which[which >= 0]):
            on = which == k
            fs[on], ss[on] = self.panels[k].raw(x[on] - self.centre[0], y[on] - self.centre[1])
        return fs, ss

    def geom_text(self, photon_energy: float, adu_per_photon: float, data: str) -> str:
        """The CrystFEL geometry file of the layout."""
        return geom_text(
            self.panels,
            photon_energy=photon_energy,
            adu_per_photon=adu_per_photon,
            data=data,
            header="Written by hitbench simulate: raw multi-panel frames, panels stacked along ss.\n"
            "corner_x/corner_y place each panel relative to the nominal beam centre.",
        )


def raw_layout(
    grid: tuple[int, int],
    panel_shape: tuple[int, int],
    gap: tuple[int, int],
    rotations: tuple[int, ...],
    offset: tuple[float, float],
    pixel_size: float,
    distance: float,
    where: str,
) -> RawLayout:
    """Place a grid of panels and derive its raw frame.

    Parameters
    ----------
    grid : tuple of int
        (rows, columns) of panels.
    panel_shape : tuple of int
        (ss, fs) pixels of one panel.
    gap : tuple of int
        Gap between panels (rows, columns), pixels.
    rotations : tuple of int
        Degrees per panel in row-major order (empty: all 0).
    offset : tuple of float
        Nominal beam centre relative to the assembled image's centre (x, y), pixels.
    pixel_size, distance : float
        Metres (for ``res`` and ``clen``).
    where : str
        The preset's detector table, for messages.

    Returns
    -------
    RawLayout
    """
    n_panels = grid[0] * grid[1]
    rotations = tuple(rotations) or (0,) * n_panels
    if len(rotations) != n_panels or any(r not in _DIRECTIONS for r in rotations):
        raise HitbenchError(
            f"{where}.panel_rotations = {list(rotations)}: give {n_panels} angles (one per panel of "
            f"the {grid[0]}x{grid[1]} grid, row by row), each 0, 90, 180 or 270"
        )
    n_ss, n_fs = panel_shape
    sizes = [(n_ss, n_fs) if r in (0, 180) else (n_fs, n_ss) for r in rotations]  # (height, width) when placed
    heights = [max(sizes[i * grid[1] + j][0] for j in range(grid[1])) for i in range(grid[0])]
    widths = [max(sizes[i * grid[1] + j][1] for i in range(grid[0])) for j in range(grid[1])]
    tops = np.concatenate([[0], np.cumsum(np.add(heights, gap[0]))])[:-1]
    lefts = np.concatenate([[0], np.cumsum(np.add(widths, gap[1]))])[:-1]
    shape = (int(sum(heights) + gap[0] * (grid[0] - 1)), int(sum(widths) + gap[1] * (grid[1] - 1)))
    centre = ((shape[1] - 1) / 2 + offset[0], (shape[0] - 1) / 2 + offset[1])
    footprints, panels = [], []
    raw_index = np.empty((n_panels * n_ss, n_fs), dtype=np.int64)
    gaps = np.ones(shape, dtype=bool)
    for k, rotation in enumerate(rotations):
        top, left = int(tops[k // grid[1]]), int(lefts[k % grid[1]])
        rows, cols = slice(top, top + sizes[k][0]), slice(left, left + sizes[k][1])
        footprints.append((rows, cols))
        gaps[rows, cols] = False
        fs_dir, ss_dir = _DIRECTIONS[rotation]
        # the corner of the footprint that the first raw pixel sits in
        first_x = left if fs_dir[0] >= 0 and ss_dir[0] >= 0 else left + sizes[k][1] - 1
        first_y = top if fs_dir[1] >= 0 and ss_dir[1] >= 0 else top + sizes[k][0] - 1
        lab = (first_x - centre[0], first_y - centre[1])
        corner = (lab[0] - 0.5 * (fs_dir[0] + ss_dir[0]), lab[1] - 0.5 * (fs_dir[1] + ss_dir[1]))
        panel = Panel(
            f"p{k}",
            0,
            n_fs - 1,
            k * n_ss,
            (k + 1) * n_ss - 1,
            corner[0],
            corner[1],
            (float(fs_dir[0]), float(fs_dir[1])),
            (float(ss_dir[0]), float(ss_dir[1])),
            1.0 / pixel_size,
            float(distance),
            line=0,
        )
        panels.append(panel)
        ss, fs = np.mgrid[panel.min_ss : panel.max_ss + 1, 0:n_fs]
        x, y = panel.lab(fs, ss)
        col, row = np.rint(x + centre[0]).astype(np.int64), np.rint(y + centre[1]).astype(np.int64)
        raw_index[panel.min_ss : panel.max_ss + 1] = row * shape[1] + col
    return RawLayout(shape, (n_panels * n_ss, n_fs), footprints, gaps, raw_index, panels, centre)
