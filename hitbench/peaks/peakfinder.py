"""A peakfinder8-style Bragg-peak finder, compiled with numba.

The algorithm is the one Cheetah, OM and CrystFEL call peakfinder8:

1. Pixels are binned by their distance from the beam centre (1-pixel-wide radius bins, the
   radius rounded to the nearest integer). For every bin the mean and standard deviation of
   the good pixels below the bin's threshold are computed and the threshold is updated to
   ``max(adc_threshold, mean + min_snr * sigma)``, ``n_iterations`` times. peakfinder8's first
   pass takes every pixel; here it takes the pixels below ``adc_threshold``, because on a small
   crop a radius bin has few pixels, and once spot pixels are more than ~1/min_snr**2 of a bin
   the all-pixel sigma lifts the threshold above them for good. A bin whose pixels are all at
   or above its threshold gets no threshold (1e9) and takes every pixel in the next pass.
2. Pixels strictly above their bin's threshold are grouped into 8-connected peaks; a group
   is kept when it has between ``min_pixel_count`` and ``max_pixel_count`` pixels.
3. Around each group's rounded centroid the local background and sigma come from the
   annulus ``local_bg_radius <= distance <= 2 * local_bg_radius`` (good pixels below their
   threshold only); CrystFEL uses the full disc of radius ``2 * local_bg_radius``.
4. The intensity is the sum of the group's pixels less the local background, the centroid is
   weighted by those background-subtracted values, and the signal-to-noise ratio is
   ``intensity / local_sigma`` (as in CrystFEL); groups below ``min_snr`` are dropped.
5. Pixels outside ``min_res <= radius <= max_res`` are treated like masked pixels (as the
   peakfinder8 mask does), so peaks outside the resolution range are never found.
6. On a multi-panel raw frame (``panel_map``, e.g. from a CrystFEL geometry) the radial statistics
   take every panel's pixels at their true radius (``radius_map``), while a peak's pixels and its
   local background come from one panel only: peakfinder8 searches each ASIC on its own in OM and
   Cheetah, so a peak never spans two panels.

Speed: each frame goes through one compiled kernel (numba, :mod:`hitbench.peaks._kernels`). One pass over
the frame adds up every radius bin's pixels and collects the good pixels at or above ``adc_threshold``; every
threshold is at least ``adc_threshold``, so the pixels a rejection pass removes are always among those (few)
pixels, and the iterations only revisit them. The 8-connected grouping (union-find) likewise only involves
them, as do the centroids and the local-background annuli. The radius bins, the mask and the annulus offsets
depend only on the geometry and are computed once per frame shape and mask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import numpy as np

from hitbench.errors import HitbenchError
from hitbench.frames import check_frames
from hitbench.peaktable import MAX_PEAKS, PeakTable


@dataclass
class Peaks:
    """The peaks found on one frame.

    Parameters
    ----------
    x, y : numpy.ndarray, shape (n_peaks,)
        Centroids in pixel coordinates, 0-based (x = column, y = row).
    intensity : numpy.ndarray, shape (n_peaks,)
        Integrated intensity less the local background (detector units).
    snr : numpy.ndarray, shape (n_peaks,)
        Signal-to-noise ratio, ``intensity / local_sigma``.
    npix : numpy.ndarray, shape (n_peaks,)
        Number of pixels above threshold in the peak.
    """

    x: np.ndarray
    y: np.ndarray
    intensity: np.ndarray
    snr: np.ndarray
    npix: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class _Geometry:
    """Per-geometry precomputation: radius bins, good pixels, annulus offsets."""

    shape: tuple[int, int]
    mask: np.ndarray | None  # the caller's mask, kept to recognise the same geometry again
    bins: np.ndarray  # (H*W,) int16 or int32 radius bin per pixel; bad pixels go to the extra bin n_bins
    n_bins: int
    good_count: np.ndarray  # (n_bins + 1,) pixels per bin
    ring_dy: np.ndarray
    ring_dx: np.ndarray
    panels: np.ndarray  # (H*W,) int32 panel of every pixel (multi-panel raw frames), else empty
    use_panels: bool


@dataclass(eq=False)
class PeakFinder8:
    """peakfinder8-style Bragg-peak finder (see the module docstring for the algorithm).

    Parameters
    ----------
    adc_threshold : float
        Lowest pixel threshold (detector units): a pixel is only ever a peak pixel above it.
        Put it above one photon on integrating detectors; the default, 50 ADU, is ~1.8 photons
        of the simulated CSPAD-like detector (28 ADU per photon, 4 ADU readout noise).
    min_snr : float
        Signal-to-noise ratio for both the radial pixel threshold (``mean + min_snr * sigma``)
        and the accepted peaks (``intensity / local_sigma``). The default 7 (with the default
        ``adc_threshold``) keeps pairs of two-photon background pixels out (see docs/peaks.md).
    min_pixel_count, max_pixel_count : int
        Allowed number of above-threshold pixels in one peak.
    local_bg_radius : int
        Inner radius (pixels) of the local background annulus; its outer radius is twice this.
    min_res, max_res : float
        Allowed distance of a pixel from the beam centre, in pixels.
    max_num_peaks : int
        At most this many peaks are reported per frame (the first ones in row-major order of
        their first pixel, as peakfinder8 scans).
    n_iterations : int
        Passes of the radial statistics with outlier rejection.
    center : tuple of float, optional
        Beam centre (x, y) in pixels; default the frame centre ``((W - 1) / 2, (H - 1) / 2)``.
        Ignored when ``radius_map`` is given.
    radius_map : numpy.ndarray, optional
        Distance of every pixel from the beam centre (H, W), in pixels.
    panel_map : numpy.ndarray, optional
        Panel (ASIC) of every pixel (H, W), integers; a peak's pixels and local background stay on one panel.
    """

    adc_threshold: float = 50.0
    min_snr: float = 7.0
    min_pixel_count: int = 2
    max_pixel_count: int = 200
    local_bg_radius: int = 3
    min_res: float = 0.0
    max_res: float = np.inf
    max_num_peaks: int = MAX_PEAKS
    n_iterations: int = 5
    center: tuple[float, float] | None = None
    radius_map: np.ndarray | None = field(default=None, repr=False)
    panel_map: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The parameters that :meth:`get_params` records: all but ``radius_map`` and ``panel_map`` (arrays).

        Returns
        -------
        tuple of str
            Parameter names, in signature order.
        """
        return tuple(f.name for f in fields(cls) if f.name not in ("radius_map", "panel_map"))

    def get_params(self) -> dict[str, object]:
        """Return the parameters (without ``radius_map`` and ``panel_map``), e.g. to record them with results.

        Returns
        -------
        dict
            Parameter name -> value.
        """
        return {name: getattr(self, name) for name in self.param_names()}

    def record(self) -> dict[str, object]:
        """The parameters as ``hitbench label`` records them in a run: JSON values, an infinite one as null.

        Returns
        -------
        dict
            Parameter name -> value as JSON reads it back (a tuple as a list).
        """
        params = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in self.get_params().items()}
        return json.loads(json.dumps(params))

    # ------------------------------------------------------------------ public API
    def find(self, frame: np.ndarray, mask: np.ndarray | None = None) -> Peaks:
        """Find the peaks of one frame.

        Parameters
        ----------
        frame : numpy.ndarray, shape (H, W)
            The frame, detector units.
        mask : numpy.ndarray, shape (H, W), optional
            True = good pixel.

        Returns
        -------
        Peaks
            Centroids, intensities, SNR and pixel counts.
        """
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise HitbenchError(f"frame has shape {frame.shape}, expected (height, width); use find_stack for stacks")
        frames = check_frames(frame[None], where="frame")
        geom = self._geometry(frames.shape[1:], mask)
        return self._find_frame(frames[0].ravel(), geom)

    def find_stack(self, frames: np.ndarray, mask: np.ndarray | None = None) -> PeakTable:
        """Find the peaks of every frame of a stack.

        Parameters
        ----------
        frames : numpy.ndarray, shape (n, H, W)
            The frames, detector units.
        mask : numpy.ndarray, shape (H, W), optional
            True = good pixel.

        Returns
        -------
        PeakTable
            Peak counts and centroids/intensities padded with zeros to the largest count.
        """
        frames = check_frames(frames, where="frames")
        geom = self._geometry(frames.shape[1:], mask)
        found = [self._find_frame(frame.ravel(), geom) for frame in frames]
        n_peaks = np.array([len(p) for p in found], dtype=np.int64)
        width = max(1, int(n_peaks.max()))
        table = {name: np.zeros((len(found), width), dtype=np.float32) for name in ("x", "y", "intensity")}
        with np.errstate(over="ignore"):  # an intensity beyond float32 (frames near its limit) is stored as inf
            for i, peaks in enumerate(found):
                for name, values in table.items():
                    values[i, : len(peaks)] = getattr(peaks, name)
        return PeakTable(n_peaks=n_peaks, **table)

    def count(self, frames: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Count the peaks of every frame of a stack (no centroids are computed).

        Parameters
        ----------
        frames : numpy.ndarray, shape (n, H, W)
            The frames, detector units.
        mask : numpy.ndarray, shape (H, W), optional
            True = good pixel.

        Returns
        -------
        numpy.ndarray, shape (n,)
            Number of peaks per frame (int64), the same as ``len(find(frame))``.
        """
        frames = check_frames(frames, where="frames")
        geom = self._geometry(frames.shape[1:], mask)
        return np.array([self._find_frame(frame.ravel(), geom, centroids=False) for frame in frames], dtype=np.int64)

    # ------------------------------------------------------------------ geometry
    def _check_params(self) -> None:
        if not self.min_pixel_count >= 1:
            raise HitbenchError(f"min_pixel_count={self.min_pixel_count}: give 1 or more")
        if self.max_pixel_count < self.min_pixel_count:
            raise HitbenchError(
                f"max_pixel_count={self.max_pixel_count} is below min_pixel_count={self.min_pixel_count}; raise it"
            )
        if not self.local_bg_radius >= 1:
            raise HitbenchError(f"local_bg_radius={self.local_bg_radius}: give 1 pixel or more")
        if not self.max_num_peaks >= 1:
            raise HitbenchError(f"max_num_peaks={self.max_num_peaks}: give 1 or more")
        if not self.n_iterations >= 1:
            raise HitbenchError(f"n_iterations={self.n_iterations}: give 1 or more")
        if not self.min_snr > 0:
            raise HitbenchError(f"min_snr={self.min_snr}: give a positive signal-to-noise ratio")

    def _geometry(self, shape: tuple[int, int], mask: np.ndarray | None) -> _Geometry:
        """Radius bins, good pixels and annulus offsets for this shape and mask (cached)."""
        self._check_params()
        shape = tuple(int(s) for s in shape)
        key = (
            shape,
            self.center,
            id(self.radius_map),
            id(self.panel_map),
            self.min_res,
            self.max_res,
            self.local_bg_radius,
        )
        cached = getattr(self, "_geometry_cache", None)
        if cached is not None and cached[0] == key:
            geom = cached[1]
            if (geom.mask is None and mask is None) or (
                geom.mask is not None and mask is not None and np.array_equal(geom.mask, mask)
            ):
                return geom
        geom = self._build_geometry(shape, mask)
        self._geometry_cache = (key, geom)
        return geom

    def _build_geometry(self, shape: tuple[int, int], mask: np.ndarray | None) -> _Geometry:
        height, width = shape
        if self.radius_map is not None:
            radius = np.asarray(self.radius_map, dtype=np.float64)
            if radius.shape != shape:
                raise HitbenchError(
                    f"radius_map has shape {radius.shape} but the frames are {shape}; give a matching map"
                )
        else:
            cx, cy = self.center if self.center is not None else ((width - 1) / 2, (height - 1) / 2)
            rows, cols = np.indices(shape)
            radius = np.hypot(cols - cx, rows - cy)
        good = (radius >= self.min_res) & (radius <= self.max_res)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != shape:
                raise HitbenchError(f"mask has shape {mask.shape} but the frames are {shape}; give a matching mask")
            good &= mask
            mask = mask.copy()
        panels = np.zeros(0, dtype=np.int32)
        if self.panel_map is not None:
            panels = np.asarray(self.panel_map)
            if panels.shape != shape:
                raise HitbenchError(
                    f"panel_map has shape {panels.shape} but the frames are {shape}; give a matching map"
                )
            panels = panels.astype(np.int32).ravel()
        bins = np.rint(radius).astype(np.int32).ravel()
        n_bins = int(bins.max()) + 1
        good = good.ravel()
        bins[~good] = n_bins
        if n_bins <= np.iinfo(np.int16).max:  # less to read per pixel
            bins = bins.astype(np.int16)
        good_count = np.bincount(bins, minlength=n_bins + 1).astype(np.float64)
        outer = 2 * int(self.local_bg_radius)
        dy, dx = np.mgrid[-outer : outer + 1, -outer : outer + 1]
        dist = np.hypot(dy, dx)
        ring = (dist >= self.local_bg_radius) & (dist <= outer)
        return _Geometry(
            shape, mask, bins, n_bins, good_count, dy[ring], dx[ring], panels, use_panels=self.panel_map is not None
        )

    # ------------------------------------------------------------------ one frame
    def _find_frame(self, data: np.ndarray, geom: _Geometry, centroids: bool = True) -> Peaks | int:
        """Peaks of one flattened float32 frame; with ``centroids=False`` only their number."""
        from hitbench.peaks._kernels import find_peaks

        x, y, intensity, snr, npix = find_peaks(
            data,
            geom.bins,
            geom.n_bins,
            geom.good_count,
            geom.panels,
            geom.use_panels,
            geom.shape[1],
            geom.ring_dy,
            geom.ring_dx,
            float(self.adc_threshold),
            float(self.min_snr),
            int(self.n_iterations),
            int(self.min_pixel_count),
            int(self.max_pixel_count),
            int(self.max_num_peaks),
        )
        if not centroids:
            return int(npix.shape[0])
        return Peaks(x=x, y=y, intensity=intensity, snr=snr, npix=npix)
