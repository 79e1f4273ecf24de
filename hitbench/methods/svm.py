"""``svm``: max-pooled pixels, scaling, randomized PCA and an RBF support-vector machine."""

from __future__ import annotations

import numpy as np
from skimage.measure import block_reduce
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from hitbench.errors import HitbenchError
from hitbench.frames import FrameSource
from hitbench.methods.base import HitMethod


def max_pool(frames: np.ndarray, block_size: int) -> np.ndarray:
    """Reduce frames to the maximum of each ``block_size`` x ``block_size`` block, flattened.

    Unlike plain downsampling (taking every n-th pixel, or a block mean), the block maximum
    keeps a one-pixel Bragg peak at its full height: wherever the peak falls it is the
    maximum of its block. Edge blocks of frames whose size is not a multiple of
    ``block_size`` are the maximum of the pixels they hold.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, height, width)
        The frames.
    block_size : int
        Side of the square blocks, in pixels (1 = no reduction).

    Returns
    -------
    numpy.ndarray, shape (n_frames, ceil(height / block_size) * ceil(width / block_size))
        One row of block maxima per frame.
    """
    pooled = block_reduce(frames, (1, block_size, block_size), np.max, cval=-np.inf)
    return pooled.reshape(len(frames), -1)


class PCASVM(HitMethod):
    """Max-pooled pixels, standard scaling, randomized PCA and an SVM with balanced class weights.

    A scikit-learn :class:`~sklearn.pipeline.Pipeline` of four steps:

    1. ``pool``: :func:`max_pool` over ``block_size`` x ``block_size`` blocks, which shrinks
       the frame ``block_size**2`` times but keeps every one-pixel peak at full height
       (no plain downsampling);
    2. ``scale``: :class:`~sklearn.preprocessing.StandardScaler` per pooled pixel;
    3. ``pca``: :class:`~sklearn.decomposition.PCA` with ``svd_solver="randomized"`` and
       ``n_components`` components (fewer when there are fewer training frames or pooled pixels);
    4. ``svc``: :class:`~sklearn.svm.SVC` with ``class_weight="balanced"``.

    The score is the SVC decision function; a frame is a hit when it is above 0.

    Parameters
    ----------
    block_size : int
        Side of the max-pooling blocks, in pixels. The default 16 did better than 4 or 8 on
        simulated 96x96 and 350x350 frames: a coarse block maximum says "there is a bright
        pixel in this region" whatever the spot's exact position, which varies from
        crystal to crystal.
    n_components : int
        Number of principal components kept.
    C : float
        SVC regularisation.
    kernel : str
        SVC kernel ("rbf", "linear", "poly", "sigmoid").
    gamma : str or float
        SVC kernel coefficient.
    random_state : int or None
        Seed of the randomized PCA (and of the SVC); the same seed gives the same model.

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted pipeline.
    threshold_ : float
        0.0 (the SVC decision boundary).
    """

    name = "svm"
    saved_types = (Pipeline, FunctionTransformer, StandardScaler, PCA, SVC, max_pool)

    def __init__(
        self,
        block_size: int = 16,
        n_components: int = 50,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma: str | float = "scale",
        random_state: int | None = 0,
    ):
        self.block_size = block_size
        self.n_components = n_components
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.random_state = random_state

    def check_params(self, frame_shape: tuple[int, int]) -> None:
        """Refuse a pooling block larger than the frames or no component (see :meth:`HitMethod.check_params`).

        Parameters
        ----------
        frame_shape : tuple of int
            (height, width) of the frames.
        """
        side = max(frame_shape)
        if not 1 <= int(self.block_size) <= side or int(self.n_components) < 1:
            raise HitbenchError(
                f"svm: block_size={self.block_size}, n_components={self.n_components}; give a block of 1 to {side} "
                "pixels (the frame's side) and at least 1 component"
            )

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        block = int(self.block_size)
        n_pooled = -(-frames.frame_shape[0] // block) * -(-frames.frame_shape[1] // block)
        n_components = min(int(self.n_components), len(frames) - 1, n_pooled)
        self.pipeline_ = Pipeline(
            [
                ("pool", FunctionTransformer(max_pool, kw_args={"block_size": block})),
                ("scale", StandardScaler()),
                ("pca", PCA(n_components=n_components, svd_solver="randomized", random_state=self.random_state)),
                (
                    "svc",
                    SVC(
                        C=self.C,
                        kernel=self.kernel,
                        gamma=self.gamma,
                        class_weight="balanced",
                        random_state=self.random_state,
                    ),
                ),
            ]
        )
        # The pooling learns nothing: the frames are pooled chunk by chunk (never all in memory) and
        # the later steps (the same objects, a slice of the pipeline) are fitted on the pooled rows.
        pool = self.pipeline_[0]
        pooled = frames.map(pool.fit_transform)
        self.pipeline_[1:].fit(pooled, labels)
        self.threshold_ = 0.0

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return self.pipeline_.decision_function(frames)
