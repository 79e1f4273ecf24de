"""Preprocessing of frame stacks as scikit-learn transformers: (n, H, W) in, (n, H, W) out.

Every step calibrates itself on the frames it transforms (each frame's own statistics, or
the statistics of the batch being transformed), so it needs no labels and nothing learnt
on another run or detector. That is what lets a method trained on one run survive a run
whose background, pulse energy, gain or hot pixels drifted, or another detector.

The steps, in the order :class:`RobustPreprocessing` chains them:

1. :class:`PhotonConversion` - divide by the detector's ADU per photon, estimated from the
   batch's own photon transfer curve (tile variance against tile mean: slope = ADU per
   photon), so that ADU, keV and counts all become photons.
2. :class:`BackgroundSubtraction` - subtract a smooth per-frame background (median of
   blocks, interpolated); one-pixel Bragg peaks do not move a block median, so they stay.
3. :class:`RobustScale` - divide each frame by its own local noise (trimmed standard
   deviation of tiles, photon noise included, never less than one photon), giving values in
   noise units whatever the detector's gain, units or background level.
4. :class:`HotPixelMask` - zero pixels that are bright in a large fraction of the frames
   of the batch (hot pixels stay put, Bragg peaks move from crystal to crystal).
5. :class:`Compress` - lower by a noise gate, clip at 0 and compress bright peaks (``log1p``, ``sqrt`` or Anscombe);
   or, for the map of spots, instead of steps 2-3 :class:`PoissonSignificance` - each pixel's
   excess over its local background as a significance under Poisson statistics - and after step 4
   :class:`SpotPixels` - the binary map of pixels above a threshold that have a neighbour above it
   too, or that are significant enough alone to be a one-pixel Bragg spot rather than the
   background's Poisson tail.

Bad pixels arrive as exactly 0 (the data layer's convention) and are kept at 0.
All steps are stateless (``fit`` learns nothing), so a fitted pipeline is valid on any run.
"""

from hitbench.preprocess.chain import RobustPreprocessing, augment, transform_in_batches
from hitbench.preprocess.steps import (
    MAD_TO_SIGMA,
    BackgroundSubtraction,
    Compress,
    HotPixelMask,
    PhotonConversion,
    PoissonSignificance,
    RobustScale,
    SpotPixels,
)

__all__ = [
    "MAD_TO_SIGMA",
    "BackgroundSubtraction",
    "Compress",
    "HotPixelMask",
    "PhotonConversion",
    "PoissonSignificance",
    "RobustPreprocessing",
    "RobustScale",
    "SpotPixels",
    "augment",
    "transform_in_batches",
]
