"""The model of a multi-panel detector: its panels, per raw pixel their lab position, radius and panel, bad
regions, masks and the crop of the assembled image around the beam.

Read from a CrystFEL geometry file by :func:`hitbench.data.geom.read_geom` (the conventions are described
there). Positions count pixels from their centre, as hitbench (like Cheetah's ``peakXPosRaw``) does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hitbench.errors import HitbenchError
from hitbench.geometry import CROP_SIZE


@dataclass(frozen=True)
class Panel:
    """One panel (ASIC or module) of a detector.

    Parameters
    ----------
    name : str
        Its name in the geometry file.
    min_fs, max_fs, min_ss, max_ss : int
        Its rectangle in the raw frame (inclusive).
    corner_x, corner_y : float
        Lab position of the corner of pixel (min_fs, min_ss), pixels from the beam.
    fs, ss : tuple of float
        Lab (x, y) of one step along the fast and slow scan, pixels.
    res : float
        Pixels per metre.
    clen : float or str
        Camera length, metres, or the HDF5 path of it in each run file.
    coffset : float
        Added to the camera length, metres.
    no_index : bool
        Left out of peak finding and hit finding.
    line : int
        The line of the file where the panel first appears.
    """

    name: str
    min_fs: int
    max_fs: int
    min_ss: int
    max_ss: int
    corner_x: float
    corner_y: float
    fs: tuple[float, float]
    ss: tuple[float, float]
    res: float
    clen: float | str
    coffset: float = 0.0
    no_index: bool = False
    line: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """(ss, fs) size of the panel in the raw frame."""
        return self.max_ss - self.min_ss + 1, self.max_fs - self.min_fs + 1

    @property
    def first_centre(self) -> tuple[float, float]:
        """Lab (x, y) of the centre of pixel (min_fs, min_ss), pixels from the beam."""
        return (self.corner_x + 0.5 * (self.fs[0] + self.ss[0]), self.corner_y + 0.5 * (self.fs[1] + self.ss[1]))

    def lab(self, fs: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lab (x, y), pixels from the beam, of raw positions (fs, ss) on this panel (pixel-centre origin)."""
        x0, y0 = self.first_centre
        df, ds = np.asarray(fs, dtype=np.float64) - self.min_fs, np.asarray(ss, dtype=np.float64) - self.min_ss
        return x0 + df * self.fs[0] + ds * self.ss[0], y0 + df * self.fs[1] + ds * self.ss[1]

    def raw(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (fs, ss), continuous, of lab positions (x, y): the inverse of :meth:`lab`."""
        x0, y0 = self.first_centre
        det = self.fs[0] * self.ss[1] - self.ss[0] * self.fs[1]
        dx, dy = np.asarray(x, dtype=np.float64) - x0, np.asarray(y, dtype=np.float64) - y0
        df = (dx * self.ss[1] - dy * self.ss[0]) / det
        ds = (dy * self.fs[0] - dx * self.fs[1]) / det
        return df + self.min_fs, ds + self.min_ss

    def outline(self) -> np.ndarray:
        """Lab (x, y) of the panel's four corners, pixels (4, 2)."""
        n_ss, n_fs = self.shape
        f = np.array([0.0, n_fs, n_fs, 0.0])
        s = np.array([0.0, 0.0, n_ss, n_ss])
        return np.stack(
            [self.corner_x + f * self.fs[0] + s * self.ss[0], self.corner_y + f * self.fs[1] + s * self.ss[1]], axis=1
        )


@dataclass(frozen=True)
class BadRegion:
    """Pixels left out: a lab rectangle (``min_x``..``max_y``) or a raw one on a panel (``min_fs``..``max_ss``)."""

    name: str
    bounds: tuple[float, float, float, float]  # (min_x, max_x, min_y, max_y) or (min_fs, max_fs, min_ss, max_ss)
    raw: bool
    panel: str | None
    line: int


@dataclass(frozen=True)
class MaskSpec:
    """A pixel mask in an HDF5 file (``file`` None: in each run file) and the bits of a good pixel."""

    data: str
    file: str | None
    goodbits: int
    badbits: int


@dataclass
class DetectorGeometry:
    """A parsed CrystFEL geometry: the panels, and per raw pixel its lab position, radius and panel.

    Built by :func:`hitbench.data.geom.read_geom`. Arrays are (ss, fs) shaped like the raw frames (:attr:`raw_shape`).

    Attributes
    ----------
    path : Path
        The geometry file.
    panels : list of Panel
        In file order.
    bad_regions : list of BadRegion
        Regions left out.
    masks : list of MaskSpec
        HDF5 pixel masks.
    data : str or None
        HDF5 path of the frame stack (``data``), if given.
    photon_energy : float or None
        eV, if given as a number.
    adu_per_photon : float or None
        If given.
    global_keys : frozenset of str
        The keys the file sets for the whole detector (without a panel name).
    """

    path: Path
    panels: list[Panel]
    bad_regions: list[BadRegion] = field(default_factory=list)
    masks: list[MaskSpec] = field(default_factory=list)
    data: str | None = None
    photon_energy: float | None = None
    adu_per_photon: float | None = None
    global_keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.raw_shape = (max(p.max_ss for p in self.panels) + 1, max(p.max_fs for p in self.panels) + 1)
        self.panel_index = np.full(self.raw_shape, -1, dtype=np.int32)
        #: Lab x and y of every raw pixel's centre, pixels from the beam (float32: 4-megapixel maps stay small;
        #: :meth:`to_lab` maps positions in float64), NaN off the panels.
        self.x = np.full(self.raw_shape, np.nan, dtype=np.float32)
        self.y = np.full(self.raw_shape, np.nan, dtype=np.float32)
        #: Distance of every pixel from the beam, pixels (0 off the panels; they are masked).
        self.radius = np.zeros(self.raw_shape)
        for k, panel in enumerate(self.panels):
            ss, fs = np.mgrid[panel.min_ss : panel.max_ss + 1, panel.min_fs : panel.max_fs + 1]
            region = (slice(panel.min_ss, panel.max_ss + 1), slice(panel.min_fs, panel.max_fs + 1))
            self.panel_index[region] = k
            x, y = panel.lab(fs, ss)
            self.x[region], self.y[region], self.radius[region] = x, y, np.hypot(x, y)
        on_panel = self.panel_index >= 0
        self.mask = on_panel.copy()
        for k, panel in enumerate(self.panels):
            if panel.no_index:
                self.mask[self.panel_index == k] = False
        for region in self.bad_regions:
            self.mask &= ~self._region_pixels(region)
        self._crops: dict[int, _Crop] = {}

    # ------------------------------------------------------------------ per pixel
    @property
    def x_m(self) -> np.ndarray:
        """Lab x of every raw pixel, metres (NaN off the panels)."""
        return self.x / self._res()

    @property
    def y_m(self) -> np.ndarray:
        """Lab y of every raw pixel, metres (NaN off the panels)."""
        return self.y / self._res()

    def _res(self) -> np.ndarray:
        """Pixels per metre of every raw pixel's panel (NaN off the panels)."""
        res = np.array([p.res for p in self.panels] + [np.nan])
        return res[self.panel_index]

    @property
    def clen(self) -> float | None:
        """The camera length plus the first panel's coffset, metres; None when read from each run file."""
        panel = self.panels[0]
        return panel.clen + panel.coffset if isinstance(panel.clen, float) else None

    def _region_pixels(self, region: BadRegion) -> np.ndarray:
        low0, high0, low1, high1 = region.bounds
        if region.raw:
            ss, fs = np.indices(self.raw_shape)
            inside = (fs >= low0) & (fs <= high0) & (ss >= low1) & (ss <= high1)
        else:
            with np.errstate(invalid="ignore"):
                inside = (self.x >= low0) & (self.x <= high0) & (self.y >= low1) & (self.y <= high1)
        if region.panel is not None:
            inside &= self.panel_index == [p.name for p in self.panels].index(region.panel)
        return inside

    def check_shape(self, shape: tuple[int, ...], where: str) -> None:
        """Refuse frames the panels do not fit, in one line naming the frames and the panel.

        Parameters
        ----------
        shape : tuple of int
            (ss, fs) of the raw frames.
        where : str
            The run or file, for the message.
        """
        shape = tuple(int(s) for s in shape)
        for panel in self.panels:
            if panel.max_ss >= shape[0] or panel.max_fs >= shape[1]:
                raise HitbenchError(
                    f"{self.path}:{panel.line}: panel {panel.name} (fs {panel.min_fs}-{panel.max_fs}, ss "
                    f"{panel.min_ss}-{panel.max_ss}) does not fit the {shape[0]} x {shape[1]} (ss x fs) frames of "
                    f"{where}; give the geometry of this detector"
                )
        if shape != self.raw_shape:
            last = max(self.panels, key=lambda p: (p.max_ss, p.max_fs))
            raise HitbenchError(
                f"{self.path}:{last.line}: the panels cover {self.raw_shape[0]} x {self.raw_shape[1]} (ss x fs) "
                f"pixels (panel {last.name} ends at ss {last.max_ss}, fs {last.max_fs}) but the frames of {where} are "
                f"{shape[0]} x {shape[1]}; give the geometry of this detector"
            )

    def panel_of(self, fs: np.ndarray, ss: np.ndarray) -> np.ndarray:
        """The panel index of raw positions (pixel-centre coordinates, rounded), -1 off the panels."""
        col, row = np.rint(np.asarray(fs)).astype(np.intp), np.rint(np.asarray(ss)).astype(np.intp)
        inside = (row >= 0) & (row < self.raw_shape[0]) & (col >= 0) & (col < self.raw_shape[1])
        out = np.full(col.shape, -1, dtype=np.int32)
        out[inside] = self.panel_index[row[inside], col[inside]]
        return out

    def to_lab(self, fs: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lab (x, y), pixels from the beam, of raw positions such as peakXPosRaw/peakYPosRaw (NaN off the panels).

        Parameters
        ----------
        fs, ss : numpy.ndarray
            Raw positions, pixel-centre origin (the pixel holding the position gives the panel).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            x and y.
        """
        fs, ss = np.asarray(fs, dtype=np.float64), np.asarray(ss, dtype=np.float64)
        which = self.panel_of(fs, ss)
        x, y = np.full(fs.shape, np.nan), np.full(fs.shape, np.nan)
        for k in np.unique(which[which >= 0]):
            on = which == k
            x[on], y[on] = self.panels[k].lab(fs[on], ss[on])
        return x, y

    # ------------------------------------------------------------------ the assembled crop
    def crop_origin(self, side: int = CROP_SIZE) -> tuple[float, float]:
        """Lab (x, y) of the centre of the crop's pixel (0, 0): the beam near the crop's centre, pixel centres aligned.

        The crop's grid is shifted by less than a pixel so that its pixel centres fall on those of the first
        panel (an image from panels on one grid is then a copy of their pixels, no pixel read twice).

        Parameters
        ----------
        side : int
            Crop side, pixels.

        Returns
        -------
        (float, float)
        """
        origin = []
        for first in self.panels[0].first_centre:
            shift = first - math.floor(first)
            origin.append(round(-(side - 1) / 2 - shift) + shift)
        return origin[0], origin[1]

    def crop_map(self, side: int = CROP_SIZE) -> _Crop:
        """The raw pixel that each pixel of a side x side crop around the beam shows (built once per side)."""
        if side not in self._crops:
            self._crops[side] = self._build_crop(side)
        return self._crops[side]

    def _build_crop(self, side: int) -> _Crop:
        x0, y0 = self.crop_origin(side)
        rows, cols = np.indices((side, side))
        x, y = (cols + x0).ravel(), (rows + y0).ravel()
        source = np.full(side * side, -1, dtype=np.int64)
        width = self.raw_shape[1]
        for panel in self.panels:
            fs, ss = panel.raw(x, y)
            col, row = np.floor(fs + 0.5), np.floor(ss + 0.5)  # the pixel whose area holds the point
            on = (col >= panel.min_fs) & (col <= panel.max_fs) & (row >= panel.min_ss) & (row <= panel.max_ss)
            on &= source < 0  # the first panel listed wins where two touch
            source[on] = row[on].astype(np.int64) * width + col[on].astype(np.int64)
        good = source >= 0
        good[good] = self.mask.ravel()[source[good]]
        return _Crop(side, (x0, y0), np.where(good, source, 0).reshape(side, side), good.reshape(side, side))

    def crop(self, frames: np.ndarray, side: int = CROP_SIZE) -> np.ndarray:
        """The assembled side x side crop around the beam of raw frames (float32, pixels off the panels 0).

        Parameters
        ----------
        frames : numpy.ndarray, shape (n, ss, fs) or (ss, fs)
            Raw frames.
        side : int
            Crop side.

        Returns
        -------
        numpy.ndarray, shape (n, side, side) or (side, side)
        """
        frames = np.asarray(frames)
        self.check_shape(frames.shape[-2:], "the frames")
        crop = self.crop_map(side)
        flat = frames.reshape(*frames.shape[:-2], -1)
        out = np.take(flat, crop.source, axis=-1).astype(np.float32)
        out *= crop.good
        return out

    def to_crop(self, fs: np.ndarray, ss: np.ndarray, side: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """Crop (x, y) of raw positions (e.g. peaks found on raw frames), pixel-centre origin.

        Parameters
        ----------
        fs, ss : numpy.ndarray
            Raw positions.
        side : int
            Crop side.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            Positions in the crop of :meth:`crop` (NaN off the panels).
        """
        x, y = self.to_lab(fs, ss)
        x0, y0 = self.crop_origin(side)
        return x - x0, y - y0

    def good_pixels(self, run_file: str | Path | None = None) -> np.ndarray:
        """The geometry's good raw pixels: on a panel, not in a bad region or ``no_index`` panel, not masked.

        Parameters
        ----------
        run_file : str or Path, optional
            The run file that holds the masks given without ``mask_file`` (they are skipped without one).

        Returns
        -------
        numpy.ndarray of bool, raw_shape
        """
        good = self.mask.copy()
        for spec in self.masks:
            where = self.path.parent / spec.file if spec.file is not None else run_file
            if where is not None:
                good &= _read_mask(Path(where), spec, self)
        return good


@dataclass(frozen=True)
class _Crop:
    """A crop's source raw pixel (flat index) per crop pixel, whether it is a good pixel, and its lab origin."""

    side: int
    origin: tuple[float, float]
    source: np.ndarray
    good: np.ndarray


def _read_mask(path: Path, spec: MaskSpec, geom: DetectorGeometry) -> np.ndarray:
    """Good pixels of an HDF5 mask (``goodbits`` all set, ``badbits`` none)."""
    import h5py

    from hitbench.data.cxi import _open

    with _open(path) as h5:
        if spec.data not in h5:
            raise HitbenchError(f"{geom.path}: mask {spec.data} is not in {path}; fix the mask lines or the file")
        values = np.asarray(h5[spec.data][()])
        if not isinstance(h5[spec.data], h5py.Dataset) or values.shape[-2:] != geom.raw_shape:
            raise HitbenchError(
                f"{geom.path}: mask {path}:{spec.data} has shape {values.shape}, the panels cover "
                f"{geom.raw_shape}; give the mask of this detector"
            )
    values = values.reshape(geom.raw_shape).astype(np.int64)
    return ((values & spec.goodbits) == spec.goodbits) & ((values & spec.badbits) == 0)
