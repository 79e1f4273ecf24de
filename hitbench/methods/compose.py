"""Composition: a method that sees preprocessed frames instead of raw ones.

Methods vary by composition, never by subclassing: :class:`Preprocessed` wraps a preprocessing
transformer (frames in, frames out, e.g. :class:`hitbench.preprocess.RobustPreprocessing`) and a
method. Both are its parameters, so scikit-learn's ``get_params``/``set_params`` reach theirs as
``preprocess__gate`` or ``method__epochs``, and ``clone`` copies the whole.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from hitbench.errors import HitbenchError
from hitbench.frames import ArrayFrames, FrameSource
from hitbench.methods.base import HitMethod
from hitbench.preprocess import augment, transform_in_batches


class MethodWrapper(HitMethod):
    """Base of the methods whose fitted part is another method: its calls, state and properties are that method's.

    A subclass names the attribute of the fitted inner method (:attr:`fitted_attribute`) and gives the
    unfitted method it wraps (:meth:`_wrapped`); :meth:`decide`, the model file's state and
    :attr:`saved_types` and :attr:`score_is_probability` then come from it, in one place.
    """

    #: Attribute holding the fitted inner method.
    fitted_attribute: ClassVar[str] = "method_"

    def _wrapped(self) -> HitMethod:  # pragma: no cover - abstract
        """The unfitted method this one wraps (a parameter)."""
        raise NotImplementedError

    def _unfitted(self, state: dict[str, Any]) -> HitMethod:
        """The inner method, unfitted, as this one's fitted ``state`` says it was built (by default the wrapped one)."""
        return clone(self._wrapped())

    @property
    def saved_types(self) -> tuple:
        """The classes the fitted inner method's state holds (:attr:`HitMethod.saved_types` of the wrapped one)."""
        return self._wrapped().saved_types

    @property
    def score_is_probability(self) -> bool:
        """Whether the scores are P(hit): the wrapped method's :attr:`HitMethod.score_is_probability`."""
        return self._wrapped().score_is_probability

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Hit (1) or miss (0) from scores: the inner method's own decision.

        Parameters
        ----------
        scores : numpy.ndarray
            Output of :meth:`decision_function`.

        Returns
        -------
        numpy.ndarray
            0/1 labels (int64).
        """
        check_is_fitted(self, self.fitted_attribute)
        return getattr(self, self.fitted_attribute).decide(scores)

    def _saved_state(self) -> dict[str, Any]:
        inner = getattr(self, self.fitted_attribute)
        return {**super()._saved_state(), self.fitted_attribute: inner._saved_state()}

    def _restore_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        inner = self._unfitted(state)
        inner._restore_state(state.pop(self.fitted_attribute))
        super()._restore_state(state)
        setattr(self, self.fitted_attribute, inner)


class Preprocessed(MethodWrapper):
    """A method applied to frames that a preprocessing transformer prepares, batch by batch.

    The transformer is fitted anew on each batch of ``batch_frames`` consecutive frames (at
    training, of the training frames; at prediction, of the frames being scored), so batch
    statistics such as :class:`~hitbench.preprocess.HotPixelMask`'s are those of the batch,
    and nothing learnt on one run is applied to another. At training only, each frame may be
    joined by ``n_augment`` drifted copies (:func:`hitbench.preprocess.augment`, seeded with the
    method's ``random_state``, 0 when it has none) before preprocessing. Preprocessing needs
    the training frames in memory (unlike the methods it wraps). The scores are the method's
    on the preprocessed frames, and so are the calls (:meth:`decide`).

    Parameters
    ----------
    preprocess : transformer
        Frames (n, H, W) to frames (n, H, W), stateless (``fit_transform`` on each batch); a
        scikit-learn Pipeline of such steps works too.
    method : HitMethod
        The method trained and run on the preprocessed frames.
    n_augment : int
        Drifted copies of each training frame (0: none).
    batch_frames : int
        Frames per preprocessing batch.

    Attributes
    ----------
    method_ : HitMethod
        The fitted method (a clone of ``method``).
    """

    def __init__(self, preprocess: Any, method: HitMethod, n_augment: int = 0, batch_frames: int = 128) -> None:
        self.preprocess = preprocess
        self.method = method
        self.n_augment = n_augment
        self.batch_frames = batch_frames

    def _wrapped(self) -> HitMethod:
        return self.method

    def preprocessed(self, frames: np.ndarray) -> np.ndarray:
        """The frames as the method sees them: preprocessed batch by batch.

        Parameters
        ----------
        frames : numpy.ndarray, shape (n_frames, height, width)
            Frames.

        Returns
        -------
        numpy.ndarray, shape (n_frames, height, width)
            Preprocessed frames (float32).
        """
        self.check_params(frames.shape[1:])
        return transform_in_batches(clone(self.preprocess), frames, int(self.batch_frames))

    def check_params(self, frame_shape: tuple[int, int]) -> None:
        """Refuse a batch of no frame or a negative number of copies, then ask the method (:meth:`check_params`).

        Parameters
        ----------
        frame_shape : tuple of int
            (height, width) of the frames.
        """
        if int(self.batch_frames) < 1:
            raise HitbenchError(f"batch_frames={self.batch_frames}; give at least 1 frame per preprocessing batch")
        if int(self.n_augment) < 0:
            raise HitbenchError(f"n_augment={self.n_augment}; give 0 or more drifted copies per training frame")
        self.method.check_params(frame_shape)

    def _fit(self, frames: FrameSource, labels: np.ndarray) -> None:
        seed = self.method.get_params().get("random_state")
        array, labels = augment(frames.to_array(), labels, n_copies=int(self.n_augment), seed=int(seed or 0))
        self.method_ = clone(self.method).fit(ArrayFrames(self.preprocessed(array)), labels)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        return self.method_.decision_function(self.preprocessed(frames))
