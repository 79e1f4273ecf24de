"""``svm-robust``: the ``svm`` pipeline on self-calibrated frames, trained with drifted copies."""

from __future__ import annotations

import numpy as np

from hitbench.frames import FrameSource
from hitbench.methods.robust import RobustInput
from hitbench.methods.svm import PCASVM


class RobustSVM(RobustInput, PCASVM):
    """The svm pipeline on self-calibrated frames (photons, background removed, noise units), drift-augmented.

    Frames go through :func:`hitbench.preprocess.robust_pipeline` (in photons, background
    subtracted, in noise units, batch hot pixels zeroed, ``log1p``) before max pooling,
    scaling, PCA and the SVM; the training set holds ``n_augment`` copies of each frame with
    drifted signal and added Poisson background.

    Parameters
    ----------
    block_size, n_components, C, kernel, gamma, random_state
        As :class:`~hitbench.methods.svm.PCASVM`.
    background_block : int
        Tile side of the background estimate, pixels.
    hot_fraction : float
        Fraction of a batch's frames in which a hot pixel is bright.
    n_augment : int
        Drifted copies of each training frame (:func:`hitbench.preprocess.augment`).
    """

    name = "svm-robust"

    def __init__(
        self,
        block_size: int = 16,
        n_components: int = 50,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma: str | float = "scale",
        random_state: int | None = 0,
        background_block: int = 10,
        hot_fraction: float = 0.5,
        n_augment: int = 1,
    ):
        super().__init__(
            block_size=block_size, n_components=n_components, C=C, kernel=kernel, gamma=gamma, random_state=random_state
        )
        self.background_block = background_block
        self.hot_fraction = hot_fraction
        self.n_augment = n_augment

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        super()._fit(*self._robust_training(frames, labels))

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return super()._score(self._robust_input(frames))
