"""The robust chain of the steps, applied batch by batch, and the drifted training copies."""

from __future__ import annotations

import numpy as np
from scipy import special
from sklearn.base import TransformerMixin
from sklearn.pipeline import Pipeline

from hitbench.errors import HitbenchError
from hitbench.frames import check_frames
from hitbench.parallel import on_frame_slices
from hitbench.preprocess.steps import (
    BackgroundSubtraction,
    Compress,
    HotPixelMask,
    PhotonConversion,
    PoissonSignificance,
    RobustScale,
    SpotPixels,
    StatelessTransformer,
)
from hitbench.preprocess.tiles import check_block, tile_trim


class RobustPreprocessing(StatelessTransformer):
    """The self-calibrating chain: photons, background, noise units, hot pixels, compression; or spot pixels.

    ``spots=False``: :class:`PhotonConversion`, :class:`BackgroundSubtraction`, :class:`RobustScale`
    (noise floor one photon), :class:`HotPixelMask`, :class:`Compress`. ``spots=True``:
    :class:`PhotonConversion`, :class:`PoissonSignificance` (the significance of each pixel over its
    local background under Poisson statistics), :class:`HotPixelMask`, :class:`SpotPixels`.

    A transformer whose parameters are those of the chain (so that a composition sets them as
    ``preprocess__gate``); :meth:`pipeline` gives its steps as a scikit-learn Pipeline. Each call of
    :meth:`transform` works on the frames it is given, whose batch statistics (:class:`PhotonConversion`,
    :class:`HotPixelMask`) are theirs: apply it batch by batch with :func:`transform_in_batches`.
    With ``spots`` and ``gate`` and ``hot_threshold`` of 2 or more (``cnn-robust``'s), :meth:`transform` runs
    the steps fused in compiled kernels (:mod:`hitbench.preprocess._kernels`): a few passes over each frame
    without the steps' temporaries, the Poisson tail computed only where it can decide. The spot map is the
    pipeline's: the significances it thresholds agree with :class:`PoissonSignificance`'s to a few float32
    units in the last place (sums rounded once instead of step by step), which moves no pixel across a level
    of 2 or more. Otherwise (a level near 0, where such units decide the sign of a pixel's excess over the
    background) it runs :meth:`pipeline`.

    Parameters
    ----------
    block : int
        :class:`PhotonConversion`, :class:`BackgroundSubtraction` and :class:`RobustScale` tile side.
    hot_threshold : float
        :class:`HotPixelMask` threshold in noise units.
    hot_fraction : float
        :class:`HotPixelMask` fraction of frames.
    compress : {"log1p", "sqrt", "anscombe", "none"}
        :class:`Compress` function.
    adu_per_photon : float or None
        :class:`PhotonConversion` gain (None: estimated from each batch).
    gate : float
        :class:`Compress` noise gate, in noise units (with ``spots``: the :class:`SpotPixels`
        threshold, in significance units).
    spots : bool
        Significances and the binary map of spot pixels (:class:`SpotPixels`) instead of noise
        units and :class:`Compress`.
    lone_false_alarms : float or None
        With ``spots``: :class:`SpotPixels`' ``lone_false_alarms`` (one-pixel spots kept when that
        significant; None: a spot pixel needs a lit neighbour).
    """

    def __init__(
        self,
        block: int = 10,
        hot_threshold: float = 5.0,
        hot_fraction: float = 0.5,
        compress: str = "log1p",
        adu_per_photon: float | None = None,
        gate: float = 0.0,
        spots: bool = False,
        lone_false_alarms: float | None = None,
    ):
        self.block = block
        self.hot_threshold = hot_threshold
        self.hot_fraction = hot_fraction
        self.compress = compress
        self.adu_per_photon = adu_per_photon
        self.gate = gate
        self.spots = spots
        self.lone_false_alarms = lone_false_alarms

    def _check_params(self) -> None:
        check_block("RobustPreprocessing", self.block)
        if not 0 < self.hot_fraction <= 1:
            raise HitbenchError(f"RobustPreprocessing: hot_fraction={self.hot_fraction}; give a fraction in (0, 1]")

    def pipeline(self) -> Pipeline:
        """The chain's steps.

        Returns
        -------
        sklearn.pipeline.Pipeline
            Steps ``photons``, ``background``, ``scale`` (noise floor one photon), ``hot``,
            ``compress``; with ``spots``: ``photons``, ``significance``, ``hot``, ``spots`` (all stateless).
        """
        self._check_params()
        block, gate = int(self.block), float(self.gate)
        photons = ("photons", PhotonConversion(adu_per_photon=self.adu_per_photon, block=block))
        hot = ("hot", HotPixelMask(threshold=self.hot_threshold, min_fraction=self.hot_fraction))
        if self.spots:
            spots = SpotPixels(threshold=gate, lone_false_alarms=self.lone_false_alarms)
            return Pipeline([photons, ("significance", PoissonSignificance(block=block)), hot, ("spots", spots)])
        return Pipeline(
            [
                photons,
                ("background", BackgroundSubtraction(block=block)),
                ("scale", RobustScale(block=block, floor=1.0)),
                hot,
                ("compress", Compress(self.compress, gate=gate)),
            ]
        )

    def transform(self, X: object) -> np.ndarray:
        """The frames through the chain, with the statistics of this batch.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            Preprocessed frames (float32).
        """
        frames = check_frames(X, where="RobustPreprocessing")
        # the spot map decided where a significance of 2 or more lights a pixel or makes it hot: there float32
        # units in the last place of the background, of the noise or of the rate change no pixel's fate
        tail_above = min(float(self.gate), float(self.hot_threshold))
        if not self.spots or tail_above < 2:
            return self.pipeline().fit_transform(frames)
        from hitbench.preprocess import _kernels

        steps = self.pipeline().named_steps
        block = int(self.block)
        trim, fraction = tile_trim(block)
        gain = np.float32(steps["photons"]._estimate(frames))
        out = np.empty(frames.shape, np.float32)  # C order: its flat view is written below
        # the per-frame kernels run on slices of the batch, one per core (they release the GIL)
        parts = on_frame_slices(
            lambda a, b: _kernels.excess_and_noise(frames[a:b], gain, block, trim, np.float32(fraction), out[a:b]),
            len(frames),
        )
        noise = np.concatenate([part[0] for part in parts])
        sums = sum(part[1] for part in parts)
        hot, spots = steps["hot"], steps["spots"]
        rate = (sums / (len(frames) * block * block)).astype(np.float32)
        # the Poisson tail only where it can decide (the significance is at most the Gaussian ratio), and not
        # where a lower bound of its probability is 1 % above that of the level that decides
        log_tail_cut = float(np.log(special.ndtr(-tail_above)) + np.log(1.01))
        pixels = frames.shape[1] * frames.shape[2]
        parts = on_frame_slices(
            lambda a, b: (
                a * pixels,
                *_kernels.gaussian_significance(out[a:b], noise[a:b], rate, block, tail_above, log_tail_cut),
            ),
            len(frames),
        )
        where = np.concatenate([offset + positions for offset, positions, *_ in parts])
        variance, excess, good = (np.concatenate([part[k] for part in parts]) for k in (2, 3, 4))
        flat = out.reshape(-1)
        flat[where] = np.fmin(-special.ndtri(special.gammainc(variance + excess, variance)), flat[where])
        # numpy compares float32 frames with a Python float in float32
        hot_level = np.float32(hot.threshold)
        hot_pixels = _kernels.hot_pixels(out, hot_level, float(hot.min_fraction), int(hot.min_frames))
        good -= np.count_nonzero(out[:, hot_pixels], axis=1)
        lone = np.array([spots.lone_threshold(int(n)) for n in good], dtype=np.float32)
        _kernels.spot_pixels(out, hot_pixels, np.float32(spots.threshold), int(spots.min_neighbours), lone)
        return out


def transform_in_batches(transformer: TransformerMixin, frames: np.ndarray, batch_frames: int = 128) -> np.ndarray:
    """Apply a (stateless) preprocessing transformer batch by batch, as a run is read chunk by chunk.

    Batch statistics (:class:`HotPixelMask`) are then those of up to ``batch_frames``
    consecutive frames, the same at training and at prediction, and memory stays bounded.

    Parameters
    ----------
    transformer : transformer
        (n, H, W) to (n, H, W), fitted anew on each batch, e.g. :class:`RobustPreprocessing`.
    frames : numpy.ndarray, shape (n_frames, height, width)
        Frames.
    batch_frames : int
        Frames per batch.

    Returns
    -------
    numpy.ndarray, shape (n_frames, height, width)
        The transformed frames (float32).
    """
    frames = check_frames(frames, where="preprocess")
    out = np.empty_like(frames)
    for start in range(0, len(frames), batch_frames):
        out[start : start + batch_frames] = transformer.fit_transform(frames[start : start + batch_frames])
    return out


def augment(
    frames: np.ndarray,
    labels: np.ndarray,
    *,
    n_copies: int,
    seed: int,
    scale: tuple[float, float] = (0.5, 1.2),
    extra_photons: tuple[float, float] = (0.0, 10.0),
    adu_per_photon: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training frames plus copies with drifted signal and a denser photon background (labels kept).

    Each copy of a frame is ``s * frame + adu_per_photon * Poisson(lam)``: ``s`` (pulse
    energy times detector gain) is drawn from ``scale`` and ``lam`` (extra background
    photons per pixel, one value per copy) from ``extra_photons``. Added photons are
    Poisson, as a thicker jet, a solvent ring or another detector's denser background
    makes them, so a method trained on a photon-sparse detector also sees frames whose
    background is several photons per pixel. The ADU per photon is estimated from the
    training frames (:class:`PhotonConversion`) unless given. Bad pixels (0) stay 0; hot
    pixels are not added (:class:`HotPixelMask` finds them in each batch).

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, height, width)
        Training frames.
    labels : numpy.ndarray, shape (n_frames,)
        1 hit, 0 miss.
    n_copies : int
        Drifted copies per frame (0 returns the input).
    seed : int
        Seed of the draws.
    scale : (float, float)
        Range of the multiplicative factor.
    extra_photons : (float, float)
        Range of the added background, photons per pixel.
    adu_per_photon : float or None
        The detector's ADU per photon (None: estimated from the first 128 frames).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The frames followed by their copies, and the labels repeated.
    """
    if n_copies <= 0:
        return frames, labels
    rng = np.random.default_rng(seed)
    gain = np.float32(PhotonConversion(adu_per_photon=adu_per_photon).estimate(frames[:128]))
    bad = frames == 0
    out = [frames]
    for _ in range(int(n_copies)):
        s = rng.uniform(*scale, size=(len(frames), 1, 1)).astype(np.float32)
        lam = rng.uniform(*extra_photons, size=(len(frames), 1, 1))
        photons = rng.poisson(np.broadcast_to(lam, frames.shape)).astype(np.float32)
        out.append(np.where(bad, np.float32(0), s * frames + gain * photons))
    return np.concatenate(out), np.tile(labels, int(n_copies) + 1)
