"""What the robust methods (``cnn-robust``, ``svm-robust``, ``litpix-robust``) share.

A robust method is an existing method that sees preprocessed frames instead of raw ADU:
:func:`hitbench.preprocess.robust_pipeline` (photons, background subtraction, each frame in
units of its own noise, hot pixels found in the batch zeroed, noise gate, compression or the
binary map of spot pixels),
applied batch by batch at training and at prediction alike; optionally its training set is
enlarged with drifted copies (:func:`hitbench.preprocess.augment`). Preprocessing learns nothing and needs no
labels, so a model trained on one run calibrates itself on every other run or detector.

A subclass lists ``background_block``, ``hot_fraction``, ``n_augment`` (and the parent's
parameters) in its ``__init__``, and calls :meth:`RobustInput._robust_training` in ``_fit``
and :meth:`RobustInput._robust_input` in ``_score``.
"""

from __future__ import annotations

import numpy as np

from hitbench.errors import HitbenchError
from hitbench.frames import ArrayFrames, FrameSource
from hitbench.preprocess import augment, robust_pipeline, transform_in_batches


class RobustInput:
    """Mixin: the preprocessing and augmentation of the robust methods."""

    #: Compression applied by the preprocessing ("none" when the method compresses itself).
    compress: str = "log1p"
    #: Noise gate of the compression, in noise units (a subclass may make it a parameter).
    noise_gate: float = 0.0
    #: End with the binary spot-pixel map (threshold ``noise_gate``) instead of the compression.
    spot_pixels: bool = False

    def _robust_input(self, frames: np.ndarray) -> np.ndarray:
        """Preprocessed frames (noise units, background and hot pixels removed, compressed)."""
        if int(self.background_block) < 3 or not 0 < self.hot_fraction <= 1:
            raise HitbenchError(
                f"{self.name}: background_block={self.background_block}, hot_fraction={self.hot_fraction}; "
                "give a block of at least 3 pixels and a fraction in (0, 1]"
            )
        pipeline = robust_pipeline(
            block=int(self.background_block),
            hot_fraction=self.hot_fraction,
            compress=self.compress,
            gate=float(self.noise_gate),
            spots=bool(self.spot_pixels),
        )
        return transform_in_batches(pipeline, frames)

    def _robust_training(self, frames: FrameSource, labels: np.ndarray) -> tuple[ArrayFrames, np.ndarray]:
        """Training frames with ``n_augment`` drifted copies each, preprocessed, and their labels.

        The preprocessing's statistics are the whole training batch's, so these methods hold their
        training set in memory (unlike the methods they build on).
        """
        if int(self.n_augment) < 0:
            raise HitbenchError(f"{self.name}: n_augment={self.n_augment}; give 0 or more copies per frame")
        seed = self.random_state if self.random_state is not None else 0
        frames, labels = augment(frames.to_array(), labels, n_copies=int(self.n_augment), seed=int(seed))
        return ArrayFrames(self._robust_input(frames)), labels
