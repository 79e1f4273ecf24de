"""The preprocessing steps: stateless scikit-learn transformers on frame stacks (n, H, W) -> (n, H, W).

Each learns nothing in ``fit`` and calibrates itself on the frames it transforms (see
:mod:`hitbench.preprocess` for the chain they make). Bad pixels arrive as exactly 0 and stay 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special
from sklearn.base import BaseEstimator, TransformerMixin

from hitbench.errors import HitbenchError
from hitbench.frames import check_frames
from hitbench.preprocess.tiles import check_block, interpolate, sorted_tiles, tile_trim

#: Consistency constant: 1.4826 x MAD estimates the standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826

_COMPRESS = ("log1p", "sqrt", "anscombe", "none")


class StatelessTransformer(TransformerMixin, BaseEstimator):
    """A transformer that learns nothing in ``fit`` (works on every frame stack as it comes)."""

    def fit(self, X: object, y: object = None) -> StatelessTransformer:
        """Check the parameters; nothing is learnt.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames (only their shape is checked).
        y : ignored
            Present for scikit-learn's Pipeline.

        Returns
        -------
        self
        """
        check_frames(X, where=type(self).__name__)
        self._check_params()
        self.n_features_in_ = 1
        return self

    def _check_params(self) -> None:
        """Raise a HitbenchError for a bad parameter (subclasses override)."""

    def _checked(self, X: object) -> np.ndarray:
        """The parameters checked, then ``X`` as checked frames (float32, (n, H, W)), errors naming the step."""
        self._check_params()
        return check_frames(X, where=type(self).__name__)

    def __sklearn_is_fitted__(self) -> bool:
        return True


class TileStep(StatelessTransformer):
    """A step whose one parameter is the side of the tiles it takes its statistics on (``block``, pixels)."""

    def __init__(self, block: int = 10):
        self.block = block

    def _check_params(self) -> None:
        check_block(type(self).__name__, self.block)


class PhotonConversion(StatelessTransformer):
    """Convert frames to photons: divide by the ADU per photon, given or estimated from the frames.

    Photons are the one unit in which a Bragg spot and the background of any detector
    compare: an integrating detector reports ADU (tens per photon) or keV (the photon
    energy per photon), a photon-counting one reports counts (one per photon). The
    estimate uses the photon transfer curve of the batch: for each ``block`` x ``block``
    tile position the mean of the tile over the batch's frames and the median of its
    variance (a Bragg spot moves from frame to frame, so the median ignores it); across
    tile positions (background falling off with angle, the water ring) the variance grows
    as ``adu_per_photon x mean + readout noise**2`` (Poisson statistics of the photons),
    and the Theil-Sen slope (median of pairwise slopes, :func:`scipy.stats.theilslopes`)
    is the ADU per photon. Frames must be dark-subtracted, as Cheetah, psana and
    photon-counting detectors give them. A pixel that reads 0 in every frame of the batch is
    bad and left out; a good pixel may read 0 in some frames (integer ADU, readout noise around
    a photon-sparse background: about one pixel in ten on a CSPAD-like detector) and counts.
    When no slope can be fitted (too few good tiles, flat frames) the frames are returned
    unchanged.

    Parameters
    ----------
    adu_per_photon : float or None
        The detector's ADU (or keV, or counts) per photon, as CrystFEL's ``adu_per_photon``;
        None estimates it from each batch.
    block : int
        Tile side for the estimate, pixels.
    """

    def __init__(self, adu_per_photon: float | None = None, block: int = 10):
        self.adu_per_photon = adu_per_photon
        self.block = block

    def _check_params(self) -> None:
        check_block("PhotonConversion", self.block)
        if self.adu_per_photon is not None and not float(self.adu_per_photon) > 0:
            raise HitbenchError(
                f"PhotonConversion: adu_per_photon={self.adu_per_photon}; give a positive number or None (estimate)"
            )

    def estimate(self, X: object) -> float:
        """The ADU per photon of a batch of frames (1.0 when it cannot be fitted).

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Dark-subtracted frames of one detector, bad pixels 0.

        Returns
        -------
        float
            Slope of tile variance against tile mean, or ``adu_per_photon`` when given.
        """
        return self._estimate(self._checked(X))

    def _estimate(self, frames: np.ndarray) -> float:
        """:meth:`estimate` of checked frames (float32, (n, H, W))."""
        if self.adu_per_photon is not None:
            return float(self.adu_per_photon)
        from hitbench.preprocess import _kernels

        block = int(self.block)
        if frames.shape[1] < block or frames.shape[2] < block:
            return 1.0
        # bad pixels are 0 in every frame; a good pixel of integer ADU reads 0 now and then (readout noise
        # around a photon-sparse background), so it counts. Zeros add nothing to the sums.
        total, squares, count = _kernels.tile_moments(frames, block)
        mean = total / np.maximum(count, 1)
        variance = np.maximum(squares - total * mean, 0.0) / np.maximum(count - 1, 1)
        usable = count >= 0.9 * block * block
        if usable.sum() < 10:
            return 1.0
        x, y = mean.mean(axis=0)[usable], np.median(variance, axis=0)[usable]
        if np.ptp(x) <= 0:
            return 1.0
        slope = float(_kernels.theil_sen_slope(x, y))  # scipy.stats.theilslopes' slope
        return slope if np.isfinite(slope) and slope > 0 else 1.0

    def transform(self, X: object) -> np.ndarray:
        """Frames in photons; bad pixels (0) stay 0.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            Frames divided by the ADU per photon (float32).
        """
        frames = self._checked(X)
        return frames / np.float32(self._estimate(frames))


class BackgroundSubtraction(TileStep):
    """Subtract a smooth per-frame background: the median of ``block`` x ``block`` tiles, interpolated.

    Each frame is cut into square tiles; the median of each tile is the local background
    (a Bragg peak covers a few pixels of a tile of ``block**2`` and does not move its
    median, so one-pixel peaks keep their full height); the tile medians are interpolated
    bilinearly back to full size and subtracted. Bad pixels (exactly 0) are replaced by the
    frame's median before the tile medians are taken, so module gaps and the beam stop do
    not drag the background down at their edges, and are 0 again in the output.

    Parameters
    ----------
    block : int
        Side of the tiles in pixels (edge tiles are padded by reflection). Smaller follows
        the water ring and the low-angle fall-off more closely; larger is less disturbed by
        crowded spots.
    """

    def background(self, X: object) -> np.ndarray:
        """The smooth background of each frame.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            Interpolated tile medians (float32).
        """
        frames = self._checked(X)
        block = int(self.block)
        tiles = sorted_tiles(frames, block)
        return interpolate(tiles[..., tiles.shape[-1] // 2], frames.shape[1:], block)

    def transform(self, X: object) -> np.ndarray:
        """Frames minus their background; bad pixels (0) stay 0.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            Background-subtracted frames (float32).
        """
        frames = check_frames(X, where="BackgroundSubtraction")
        return np.where(frames == 0, np.float32(0), frames - self.background(frames))


class RobustScale(StatelessTransformer):
    """Express each frame in units of its own noise, globally (median/MAD) or tile by tile.

    ``block=None``: ``(x - median) / (1.4826 * MAD)`` over the frame's good (non-zero) pixels.
    On an integrating detector whose background is photon-sparse (most pixels hold no
    photon) the MAD measures the readout noise only, so a frame with three times the
    background shows three times as many "bright" single-photon pixels.

    ``block=B`` (the default): ``x / sigma`` where ``sigma`` is the standard deviation of
    each B x B tile after dropping its 2% brightest and 2% faintest pixels (Bragg peaks do
    not count), times 1.12 (so that Gaussian noise gets its sigma despite the trimming),
    interpolated bilinearly. It includes the photon noise of the local background, so
    single photons on a thick-jet frame and on a clean frame are worth about as much, in
    any detector units. Use after :class:`BackgroundSubtraction`.
    Tiles with no spread (an empty photon-counting region) get the median tile sigma;
    a frame with no spread at all is divided by 1. Bad pixels (0) stay 0.

    ``floor`` adds a noise floor in quadrature, ``sqrt(sigma**2 + floor**2)``: on photons
    (after :class:`PhotonConversion`) ``floor=1`` keeps a lone background photon at about
    one noise unit where the photon-sparse background's spread is only the readout noise,
    which would otherwise make it look as significant as a Bragg peak.

    Parameters
    ----------
    block : int or None
        Tile side in pixels, or None for one global median/MAD per frame.
    floor : float
        Smallest noise, in the frames' units (0: none).
    """

    def __init__(self, block: int | None = 10, floor: float = 0.0):
        self.block = block
        self.floor = floor

    def _check_params(self) -> None:
        if self.block is not None:
            check_block("RobustScale", self.block, alternative=", or None")
        if not float(self.floor) >= 0:
            raise HitbenchError(f"RobustScale: floor={self.floor}; give a noise floor of 0 or more")

    def noise(self, X: object) -> np.ndarray:
        """The noise (robust standard deviation) of each frame, or of each pixel's tile.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray
            Shape (n_frames,) for ``block=None`` (1.4826 x MAD of the good pixels), else
            (n_frames, height, width) (interpolated trimmed tile standard deviations).
        """
        frames = self._checked(X)
        if self.block is None:
            out = np.ones(len(frames))
            for i, frame in enumerate(frames):
                good = frame[frame != 0]
                mad = MAD_TO_SIGMA * np.median(np.abs(good - np.median(good))) if good.size else 0.0
                out[i] = mad if mad > 0 else 1.0
            return np.hypot(out, float(self.floor)) if self.floor else out
        block = int(self.block)
        tiles = sorted_tiles(frames, block)
        trim, fraction = tile_trim(block)
        sigma = tiles[..., trim:-trim].std(axis=-1) / fraction
        for s in sigma:
            typical = np.median(s[s > 0]) if (s > 0).any() else 1.0
            s[s <= 0] = typical
        noise = interpolate(sigma, frames.shape[1:], block)
        return np.hypot(noise, np.float32(self.floor)) if self.floor else noise

    def transform(self, X: object) -> np.ndarray:
        """Frames in noise units; bad pixels (0) stay 0.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            Scaled frames (float32).
        """
        frames = check_frames(X, where="RobustScale")
        noise = self.noise(frames)
        if noise.ndim == 1:
            good = frames != 0
            centre = np.array([np.median(f[g]) if g.any() else 0.0 for f, g in zip(frames, good, strict=True)])
            return np.where(good, (frames - centre[:, None, None]) / noise[:, None, None], 0).astype(np.float32)
        return np.where(frames == 0, np.float32(0), frames / noise)


class PoissonSignificance(TileStep):
    """Express each pixel as the significance of its excess over the local background, under Poisson statistics.

    On frames in photons (:class:`PhotonConversion`): the background ``b`` is that of
    :class:`BackgroundSubtraction` and the local variance ``v`` (photon noise plus readout
    noise, photons squared) the square of :class:`RobustScale`'s trimmed tile noise of the
    background-subtracted frame, but never less than the tile's photon rate: the mean photons
    per pixel of the tile over the batch's frames (Poisson variance equals the mean). The
    trimmed noise alone misses photons rarer than its trim (2 % of a tile's pixels): on a
    photon-sparse detector (0.002 photon per pixel) it measures the readout noise only, and a
    lone background photon would look like a 3-sigma event. Bragg spots and hot pixels can
    only raise a tile's rate, making the tile more conservative. A pixel ``x`` photons above the background is given the
    probability that a background pixel reaches it, with the background counted as a
    Poisson variable of the local variance (shifted to the background level, so that a
    readout-noise-only region of a photon-sparse detector, where ``v`` is small, gets the
    steep tail of a Poisson variable of small mean): ``p = P(Poisson(v) >= v + x)``, the
    regularised incomplete gamma function ``gammainc(v + x, v)``; the output is the normal
    deviate of the same upper-tail probability, ``z = -ndtri(p)``. The Gaussian ratio
    ``x / sqrt(v)`` is kept where it is 2 or less (the Poisson tail is heavier, so no such
    pixel is significant) and where ``p`` underflows (a bright peak). So ``z`` is in the same
    units on every detector and background: over a Poisson background of 5 photons a pixel
    needs 15 photons above it to reach ``z = 5`` (where ``x / sqrt(v)`` would be 6.7); on the
    photon-sparse CSPAD-like frames of the default preset a lone photon is about 1.5 and 5
    photons about 4.3 (measured). Bad pixels (0) stay 0.

    Parameters
    ----------
    block : int
        Tile side of the background and of the variance, pixels.
    """

    def transform(self, X: object) -> np.ndarray:
        """Significance of each pixel's excess over its local background (normal deviates).

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames in photons, bad pixels 0.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            float32 significances.
        """
        frames = self._checked(X)
        block = int(self.block)
        excess = BackgroundSubtraction(block=block).transform(frames)
        rate = interpolate(sorted_tiles(frames, block).mean(axis=(0, 3))[np.newaxis], frames.shape[1:], block)
        variance = np.maximum(np.square(RobustScale(block=block).noise(excess)), rate)
        z = excess / np.sqrt(variance)
        tail = z > 2
        v, x = variance[tail].astype(np.float64), excess[tail].astype(np.float64)
        z[tail] = np.fmin(-special.ndtri(special.gammainc(v + x, v)), z[tail])
        return np.where(frames == 0, np.float32(0), z).astype(np.float32)


class HotPixelMask(StatelessTransformer):
    """Zero the pixels that are bright in a large fraction of the frames being transformed.

    A hot pixel sits at the same place in every frame of a run; a Bragg peak moves with
    the crystal's orientation, so even in a run of hits one pixel holds a peak in few
    frames. A pixel is hot when it exceeds ``threshold`` (in the frames' units; use after
    :class:`RobustScale` for noise units) in at least ``min_fraction`` of the frames of
    the batch. Nothing is learnt from other runs: new hot pixels of a drifted run are found
    in that run's own frames. Batches of fewer than ``min_frames`` frames are returned
    unchanged (too few to tell a hot pixel from a peak).

    Parameters
    ----------
    threshold : float
        Value above which a pixel counts as bright in a frame.
    min_fraction : float
        Fraction of the batch's frames (0-1) in which a hot pixel is bright.
    min_frames : int
        Smallest batch in which hot pixels are looked for.
    """

    def __init__(self, threshold: float = 5.0, min_fraction: float = 0.5, min_frames: int = 8):
        self.threshold = threshold
        self.min_fraction = min_fraction
        self.min_frames = min_frames

    def _check_params(self) -> None:
        if not 0 < self.min_fraction <= 1:
            raise HitbenchError(f"HotPixelMask: min_fraction={self.min_fraction}; give a fraction in (0, 1]")

    def hot_pixels(self, X: object) -> np.ndarray:
        """The hot pixels of a batch.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (height, width)
            True where a pixel is hot (all False for batches smaller than ``min_frames``).
        """
        frames = self._checked(X)
        if len(frames) < int(self.min_frames):
            return np.zeros(frames.shape[1:], dtype=bool)
        bright = np.count_nonzero(frames > self.threshold, axis=0)
        return bright >= self.min_fraction * len(frames)

    def transform(self, X: object) -> np.ndarray:
        """Frames with the batch's hot pixels set to 0 (the bad-pixel value).

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            A float32 copy with hot pixels zeroed.
        """
        frames = check_frames(X, where="HotPixelMask")
        return np.where(self.hot_pixels(frames), np.float32(0), frames)


class Compress(StatelessTransformer):
    """Lower by a noise gate, clip negative values to 0 and compress bright values.

    ``gate`` is subtracted first (soft thresholding): on frames in noise units
    (:class:`RobustScale`) ``gate=3`` leaves the background of every detector at 0 and
    keeps what stands more than three noise units above it, Bragg peaks, so that a
    photon-sparse and a photon-dense background look alike. Then ``log1p``: ``log(1 + x)``;
    ``sqrt``: ``sqrt(x)``; ``anscombe``: ``2 sqrt(x + 3/8)``, which makes Poisson noise of
    unit variance when ``x`` counts photons; ``none``: clip only. Bragg peaks span orders of
    magnitude; compressed, a few very bright spots no longer outweigh many faint ones.

    Parameters
    ----------
    function : {"log1p", "sqrt", "anscombe", "none"}
        The compression.
    clip : float or None
        Upper limit applied before compressing (None: no limit).
    gate : float
        Subtracted before clipping at 0 (0: none).
    """

    def __init__(self, function: str = "log1p", clip: float | None = None, gate: float = 0.0):
        self.function = function
        self.clip = clip
        self.gate = gate

    def _check_params(self) -> None:
        if self.function not in _COMPRESS:
            raise HitbenchError(f"Compress: function={self.function!r}; use one of {', '.join(_COMPRESS)}")
        if not float(self.gate) >= 0:
            raise HitbenchError(f"Compress: gate={self.gate}; give a noise gate of 0 or more")

    def transform(self, X: object) -> np.ndarray:
        """Gated, clipped and compressed frames.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            float32.
        """
        frames = self._checked(X)
        x = np.clip(frames - np.float32(self.gate) if self.gate else frames, 0, self.clip)
        if self.function == "log1p":
            return np.log1p(x)
        if self.function == "sqrt":
            return np.sqrt(x)
        if self.function == "anscombe":
            return 2.0 * np.sqrt(x + np.float32(3 / 8))
        return x


class SpotPixels(StatelessTransformer):
    """Binary map of the pixels of spots: above a threshold with a neighbour above it too, or significant alone.

    On frames in noise units (:class:`RobustScale`) or significances (:class:`PoissonSignificance`)
    a pixel is lit when it stands more than ``threshold`` units above the background, and it is
    kept when at least ``min_neighbours`` of its eight neighbours are lit as well: a spot of two
    pixels or more, as peakfinder8's ``min_pixel_count=2`` counts them. The Poisson tail of a
    photon-counting detector's background lights single pixels, so the rule drops it; but so
    does a Bragg spot narrower than a pixel, which lights one pixel only. With
    ``lone_false_alarms`` a lit pixel without lit neighbours is kept too when it reaches the
    significance at which the whole frame expects only ``lone_false_alarms`` background pixels
    above it: ``-ndtri(lone_false_alarms / n)`` for ``n`` good pixels (4.8 for 0.1 per 350 x 350
    frame). Under :class:`PoissonSignificance` that level accounts for the Poisson tail of the
    local background, so a one-pixel spot many sigma above it counts and the tail does not.
    Hot pixels, also single and bright, are told apart by their persistence
    (:class:`HotPixelMask`, before this step), and a hit has many spots where a cosmic ray adds
    one track. Kept pixels are 1 and all others 0, so that a faint peak weighs as much as a
    bright one and a network trained on the map counts spots rather than weighing their brightness.

    Parameters
    ----------
    threshold : float
        Units a pixel must stand above the background to be lit.
    min_neighbours : int
        Lit neighbours (of 8) a lit pixel needs to be kept (0 keeps every lit pixel).
    lone_false_alarms : float or None
        Background pixels per frame expected above the level at which a pixel is kept alone
        (None: a pixel needs its neighbours).
    """

    def __init__(self, threshold: float = 5.0, min_neighbours: int = 1, lone_false_alarms: float | None = None):
        self.threshold = threshold
        self.min_neighbours = min_neighbours
        self.lone_false_alarms = lone_false_alarms

    def _check_params(self) -> None:
        if not float(self.threshold) >= 0 or int(self.min_neighbours) not in range(9):
            raise HitbenchError(
                f"SpotPixels: threshold={self.threshold}, min_neighbours={self.min_neighbours}; "
                "give a threshold of 0 or more and 0-8 neighbours"
            )
        if self.lone_false_alarms is not None and not float(self.lone_false_alarms) > 0:
            raise HitbenchError(
                f"SpotPixels: lone_false_alarms={self.lone_false_alarms}; give a positive number of pixels or None"
            )

    def lone_threshold(self, n_pixels: int) -> float:
        """The level at which a lit pixel is kept without neighbours (inf without ``lone_false_alarms``).

        Parameters
        ----------
        n_pixels : int
            Good pixels of a frame.

        Returns
        -------
        float
            ``-ndtri(lone_false_alarms / n_pixels)``, never below ``threshold``.
        """
        self._check_params()
        if self.lone_false_alarms is None or n_pixels < 1:
            return float("inf")
        level = -special.ndtri(min(float(self.lone_false_alarms) / n_pixels, 0.5))
        return max(float(level), float(self.threshold))

    def transform(self, X: object) -> np.ndarray:
        """The spot-pixel map.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames in noise units or significances.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            float32, 1 on kept pixels, 0 elsewhere.
        """
        frames = self._checked(X)
        lit = (frames > np.float32(self.threshold)).astype(np.float32)
        if not int(self.min_neighbours):
            return lit
        neighbours = ndimage.uniform_filter(lit, size=(1, 3, 3), mode="constant") * np.float32(9) - lit
        kept = lit * (neighbours > np.float32(int(self.min_neighbours) - 0.5))
        if self.lone_false_alarms is None:
            return kept
        good = np.count_nonzero(frames, axis=(1, 2))
        levels = np.array([self.lone_threshold(int(n)) for n in good], dtype=np.float32)
        return np.maximum(kept, (frames > levels[:, None, None]).astype(np.float32))
