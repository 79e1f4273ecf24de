"""``litpix-robust``: lit pixels counted in noise units on background-subtracted frames."""

from __future__ import annotations

import numpy as np

from hitbench.frames import ArrayFrames, FrameSource
from hitbench.methods.litpix import LitPixels
from hitbench.methods.robust import RobustInput
from hitbench.methods.thresholds import DEFAULT_ADC_QUANTILES


class RobustLitPixels(RobustInput, LitPixels):
    """Lit pixels counted in noise units above each frame's local background, hot pixels masked per batch.

    A pixel is lit when it stands ``adc_threshold`` (compressed noise units, fitted among
    quantiles when None) above its frame's local background; background level, gain and
    detector units then no longer move the count. No randomness and no augmentation.

    Parameters
    ----------
    adc_threshold, adc_quantiles
        As :class:`~hitbench.methods.litpix.LitPixels`, in ``log1p`` of noise units.
    background_block : int
        Tile side of the background estimate, pixels.
    hot_fraction : float
        Fraction of a batch's frames in which a hot pixel is bright.
    """

    name = "litpix-robust"

    def __init__(
        self,
        adc_threshold: float | None = None,
        adc_quantiles: tuple[float, ...] = DEFAULT_ADC_QUANTILES,
        background_block: int = 10,
        hot_fraction: float = 0.5,
    ):
        super().__init__(adc_threshold=adc_threshold, adc_quantiles=adc_quantiles)
        self.background_block = background_block
        self.hot_fraction = hot_fraction

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        super()._fit(ArrayFrames(self._robust_input(frames.to_array())), labels)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return super()._score(self._robust_input(frames))
