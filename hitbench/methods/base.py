"""The interface every hit-finding method follows.

A method is a scikit-learn classifier on frame stacks: ``X`` is an array of shape
(n_frames, height, width) in detector units (float32; bad pixels already set to 0 by
the data layer), ``y`` holds 1 = hit and 0 = miss (ambiguous frames, -1, are dropped
before a method sees them). Parameters live in ``__init__`` only; ``fit`` returns
``self``; ``predict`` gives 0/1; ``decision_function`` gives a hit score where higher
means "more hit-like".

``fit`` also takes a :class:`hitbench.frames.FrameSource`, frames read chunk by chunk from
the run files, so a training set of any size trains without being held in memory.

Subclasses set ``name`` (the registry name) and implement ``_fit(frames, labels)``, where
``frames`` is always a :class:`~hitbench.frames.FrameSource` (reduce it chunk by chunk with
``frames.map``, or read shuffled batches with ``frames.take``), and ``_score(X)`` on an
array; they may override ``decide(scores)`` when their decision is not
``score > threshold_``. Validation, the one-class check and the fitted check live here,
in one place, so every method gives the same clear errors.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from hitbench.errors import HitbenchError
from hitbench.frames import FrameSource, check_finite, check_frames, frame_source, frame_stack, frame_sums

__all__ = ["HitMethod", "MethodNotFittedError", "check_frames", "check_labels", "leaf_params"]


class MethodNotFittedError(HitbenchError, NotFittedError):
    """predict/decision_function called before fit."""


def check_labels(y: object, n_frames: int, *, where: str = "y") -> np.ndarray:
    """Validate training labels (0 = miss, 1 = hit; both classes present).

    Parameters
    ----------
    y : array-like
        Labels, one per frame.
    n_frames : int
        Number of frames they must match.
    where : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        The labels as int64.
    """
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != n_frames:
        raise HitbenchError(f"{where}: {labels.shape} labels for {n_frames} frames; give one label per frame")
    if not np.isin(labels, (0, 1)).all():
        raise HitbenchError(f"{where}: labels must be 0 (miss) or 1 (hit); drop ambiguous frames (-1) before training")
    labels = labels.astype(np.int64)
    if np.unique(labels).size < 2:
        only = "hits" if labels[0] == 1 else "misses"
        raise HitbenchError(
            f"{where}: training labels are all {only}; a classifier needs both hits and misses to train on"
        )
    return labels


def leaf_params(estimator: BaseEstimator) -> dict[str, Any]:
    """An estimator's parameter values, those of the estimators inside it by their full names.

    Parameters
    ----------
    estimator : BaseEstimator
        A method, or a composition (``method__epochs``, ``preprocess__gate``).

    Returns
    -------
    dict
        ``get_params()`` without its estimators (a composition's ``method`` and ``preprocess``),
        whose own parameters it lists: two compositions built alike compare equal.
    """
    return {key: value for key, value in estimator.get_params().items() if not hasattr(value, "get_params")}


class HitMethod(ClassifierMixin, BaseEstimator):
    """Base class of hitbench methods (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    #: Classes (and functions) other than numbers, strings and arrays that the fitted state holds: the only
    #: ones a model file of this method may name (:mod:`hitbench.modelfile`).
    saved_types: ClassVar[tuple] = ()
    #: Whether :meth:`decision_function` gives P(hit), a probability (the harness then reports its calibration).
    score_is_probability: ClassVar[bool] = False

    def fit(self, X: object, y: object) -> HitMethod:
        """Fit the method on frames and their hit/miss labels.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width), or FrameSource
            Training frames, in memory or read chunk by chunk from files
            (:class:`hitbench.data.dataset.RunFrames`); methods never hold a frame source whole.
        y : array-like, shape (n_frames,)
            1 = hit, 0 = miss.

        Returns
        -------
        HitMethod
            self, fitted.
        """
        frames = frame_source(X)
        self.check_params(frames.frame_shape)
        labels = check_labels(y, len(frames))
        self.classes_ = np.array([0, 1])
        self.frame_shape_ = frames.frame_shape
        self._fit(frames, labels)
        return self

    def check_params(self, frame_shape: tuple[int, int]) -> None:
        """Raise a HitbenchError (one line naming the parameter) for a setting that cannot work on such frames.

        :meth:`fit` and :meth:`decision_function` call it first, and the harness calls it on every method
        before any training, so a bad ``--param`` is refused at once. The base class checks nothing; a
        method with parameters to check overrides it.

        Parameters
        ----------
        frame_shape : tuple of int
            (height, width) of the frames the method is to see.
        """

    def _check_predict_input(self, X: object, *, finite: bool = True) -> np.ndarray:
        """Frames to score: the model fitted, its parameters and the frames checked (NaN and Inf unless ``finite``)."""
        try:
            check_is_fitted(self, "frame_shape_")
        except NotFittedError:
            raise MethodNotFittedError(
                f"{self.name or type(self).__name__}: the method is not fitted; call fit(frames, labels) "
                "or load a saved model before predicting"
            ) from None
        self.check_params(tuple(self.frame_shape_))
        frames = check_frames(X) if finite else frame_stack(X)
        if frames.shape[1:] != tuple(self.frame_shape_):
            raise HitbenchError(
                f"X: frames are {frames.shape[1]}x{frames.shape[2]} but the {self.name or type(self).__name__} "
                f"model was trained on {self.frame_shape_[0]}x{self.frame_shape_[1]}; crop them the same way"
            )
        return frames

    def decision_function(self, X: object) -> np.ndarray:
        """Hit score per frame: higher means more hit-like.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames to score.

        Returns
        -------
        numpy.ndarray, shape (n_frames,)
            The scores (float64).
        """
        return np.asarray(self._score_finite(self._check_predict_input(X, finite=False)), dtype=np.float64)

    def predict(self, X: object) -> np.ndarray:
        """Hit (1) or miss (0) per frame: :meth:`decide` applied to :meth:`decision_function`.

        Parameters
        ----------
        X : array-like, shape (n_frames, height, width)
            Frames to classify.

        Returns
        -------
        numpy.ndarray, shape (n_frames,)
            0/1 labels (int64).
        """
        return self.decide(self.decision_function(X))

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Hit (1) or miss (0) from hit scores already computed (``score > threshold_`` by default).

        The harness scores a run once and derives the calls from the scores with this, so a
        method whose rule is not a single threshold overrides it (and only it).

        Parameters
        ----------
        scores : numpy.ndarray
            Output of :meth:`decision_function`.

        Returns
        -------
        numpy.ndarray
            0/1 labels (int64).
        """
        check_is_fitted(self, "threshold_")
        return (np.asarray(scores) > self.threshold_).astype(np.int64)

    # -- persistence (hitbench.modelfile) -------------------------------------------------
    def _saved_state(self) -> dict[str, Any]:
        """The fitted state a model file keeps: the public attributes ending in ``_``."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def _restore_state(self, state: dict[str, Any]) -> None:
        """Set back the fitted state of :meth:`_saved_state` on a method built with the saved parameters."""
        vars(self).update(state)

    # -- to implement -------------------------------------------------------------------
    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, frames: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_finite(self, frames: np.ndarray) -> np.ndarray:
        """:meth:`_score` of frames not yet checked for NaN and Inf, after that check.

        A method whose scoring pass also sums each frame's pixels overrides this to make the check
        from its own sums (:func:`hitbench.frames.check_finite`) instead of a pass of its own.
        """
        check_finite(frames, frame_sums(frames))
        return self._score(frames)
