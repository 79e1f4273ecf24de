"""Spot-map settings chosen by cross-validation on the training frames: the search and its meta-estimator.

:func:`spot_settings_search` scores each spot-map setting of :data:`SPOT_GRID` by how well the number of
spot pixels per frame separates the training hits from the training misses (stratified cross-validation,
:class:`~sklearn.model_selection.GridSearchCV`). :class:`SpotSettingsCV` runs it inside ``fit`` and fits
a composition on the spot map it chose, as :class:`~sklearn.model_selection.GridSearchCV` refits its best
estimator: the settings then follow the training detector without a test run ever being seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from hitbench.errors import HitbenchError
from hitbench.frames import ArrayFrames, FrameSource
from hitbench.methods.base import HitMethod
from hitbench.methods.compose import MethodWrapper, Preprocessed
from hitbench.preprocess import RobustPreprocessing, SpotPixels, transform_in_batches

#: The spot-map settings :func:`spot_settings_search` scores: the significance a spot pixel must reach
#: (with a lit neighbour) and the background pixels per frame expected above the level at which a pixel
#: counts alone (None: never alone). Listed one-pixel rule first, low thresholds first: ties go to them.
SPOT_GRID = {"spots__lone_false_alarms": [0.1, None], "spots__threshold": [3.0, 4.0, 5.0, 6.0]}


def _log_spot_count(spot_maps: np.ndarray) -> np.ndarray:
    """``log1p`` of the spot pixels of each frame, one column."""
    return np.log1p(spot_maps.sum(axis=(1, 2), dtype=np.float64))[:, np.newaxis]


def spot_settings_search(
    frames: np.ndarray,
    labels: np.ndarray,
    *,
    preprocess: RobustPreprocessing | None = None,
    n_splits: int = 5,
    batch_frames: int = 128,
    random_state: int = 0,
) -> GridSearchCV:
    """Choose the spot map's threshold and one-pixel rule by cross-validation on training frames.

    The frames go through the preprocessing up to the spot map (photons, Poisson significance, hot
    pixels; batch by batch as :class:`~hitbench.methods.compose.Preprocessed` does, learning
    nothing); then each setting of :data:`SPOT_GRID` is scored by stratified ``n_splits``-fold
    cross-validation (:class:`~sklearn.model_selection.GridSearchCV`, balanced accuracy) of the
    simplest classifier that counts spots: :class:`~sklearn.linear_model.LogisticRegression`
    (balanced class weights) on the log of the number of spot pixels per frame. The setting whose
    map best separates the training hits from the training misses by their spot count wins; exact
    ties go to the first in :data:`SPOT_GRID`'s order. No test run, other experiment or real frame
    is seen.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, height, width)
        Training frames (raw detector units).
    labels : numpy.ndarray, shape (n_frames,)
        1 hit, 0 miss.
    preprocess : RobustPreprocessing or None
        The chain whose photon, significance and hot-pixel steps make the maps (its ``spots`` is
        taken as True and its spot settings are the searched ones); None: the default chain.
    n_splits : int
        Cross-validation folds.
    batch_frames : int
        Preprocessing batch (as :class:`~hitbench.methods.compose.Preprocessed`'s).
    random_state : int
        Seed of the folds' shuffle.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Fitted; ``best_params_`` (``spots__threshold``, ``spots__lone_false_alarms``) and ``cv_results_``.
    """
    chain = clone(preprocess) if preprocess is not None else RobustPreprocessing()
    significance = chain.set_params(spots=True).pipeline()[:-1]
    prepared = transform_in_batches(significance, frames, batch_frames)
    counter = Pipeline(
        [
            ("spots", SpotPixels()),
            ("count", FunctionTransformer(_log_spot_count)),
            ("cut", LogisticRegression(class_weight="balanced")),
        ]
    )
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return GridSearchCV(counter, SPOT_GRID, scoring="balanced_accuracy", cv=folds).fit(prepared, labels)


class SpotSettingsCV(MethodWrapper):
    """A spot-map composition whose spot settings are chosen by cross-validation on its training frames.

    ``fit`` runs :func:`spot_settings_search` on the training frames with ``estimator``'s
    preprocessing, then fits a clone of ``estimator`` with the chosen threshold and one-pixel rule
    (``preprocess__gate``, ``preprocess__lone_false_alarms``) on the same frames, as
    :class:`~sklearn.model_selection.GridSearchCV` refits its best estimator. Those two settings of
    ``estimator`` are therefore replaced, and only the training frames choose them. Scores and calls
    are the refitted composition's. The search sees the training frames without drifted copies.

    Parameters
    ----------
    estimator : Preprocessed
        A composition whose ``preprocess`` is :class:`~hitbench.preprocess.RobustPreprocessing` with
        ``spots=True``.
    n_splits : int
        Cross-validation folds of the search (fewer when a class has fewer training frames; at least 2).
    random_state : int
        Seed of the folds' shuffle.

    Attributes
    ----------
    best_params_ : dict
        The chosen ``preprocess__gate`` and ``preprocess__lone_false_alarms``.
    best_score_ : float
        Their mean cross-validated balanced accuracy (of the spot count, not of ``estimator``).
    estimator_ : Preprocessed
        ``estimator`` with the chosen settings, fitted on all the training frames.
    """

    fitted_attribute = "estimator_"

    def __init__(self, estimator: Preprocessed, n_splits: int = 5, random_state: int = 0) -> None:
        self.estimator = estimator
        self.n_splits = n_splits
        self.random_state = random_state

    def _wrapped(self) -> HitMethod:
        return self.estimator

    def _unfitted(self, state: dict[str, Any]) -> HitMethod:
        return self._refit_with(state["best_params_"])

    def check_params(self, frame_shape: tuple[int, int]) -> None:
        """Refuse a composition without a spot map or fewer than 2 folds, then ask the composition.

        Parameters
        ----------
        frame_shape : tuple of int
            (height, width) of the frames.
        """
        preprocess = getattr(self.estimator, "preprocess", None)
        if not (isinstance(preprocess, RobustPreprocessing) and preprocess.spots):
            raise HitbenchError(
                f"SpotSettingsCV: estimator={type(self.estimator).__name__}; give a Preprocessed composition "
                "whose preprocess is RobustPreprocessing(spots=True)"
            )
        if int(self.n_splits) < 2:
            raise HitbenchError(f"SpotSettingsCV: n_splits={self.n_splits}; give at least 2 cross-validation folds")
        self.estimator.check_params(frame_shape)

    def _refit_with(self, params: dict[str, Any]) -> Preprocessed:
        return clone(self.estimator).set_params(**params)

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        fewest = int(np.bincount(labels).min())
        if fewest < 2:
            raise HitbenchError(
                f"SpotSettingsCV: {fewest} training {'hit' if labels.sum() == fewest else 'miss'}; cross-validating "
                "the spot settings needs at least 2 hits and 2 misses among the training frames"
            )
        array = frames.to_array()
        search = spot_settings_search(
            array,
            labels,
            preprocess=self.estimator.preprocess,
            n_splits=min(int(self.n_splits), fewest),
            batch_frames=int(self.estimator.batch_frames),
            random_state=int(self.random_state),
        )
        best = search.best_params_
        self.best_params_ = {
            "preprocess__gate": float(best["spots__threshold"]),
            "preprocess__lone_false_alarms": best["spots__lone_false_alarms"],
        }
        self.best_score_ = float(search.best_score_)
        self.estimator_ = self._refit_with(self.best_params_).fit(ArrayFrames(array), labels)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return self.estimator_._score(frames)
