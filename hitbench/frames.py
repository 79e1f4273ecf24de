"""Frame stacks as every method sees them: checked, and not necessarily in memory.

A method trains on a :class:`FrameSource`: frames (n, H, W) it reads chunk by chunk
(:meth:`FrameSource.chunks`, :meth:`FrameSource.map`) or by position (:meth:`FrameSource.take`,
for shuffled training batches), so a training set of any size is never held whole. An array is
wrapped in :class:`ArrayFrames`; the runs of an experiment are read lazily by
:class:`hitbench.data.dataset.RunFrames`. Both give the same chunks for the same frames, so a
method trained from files equals the one trained from the same frames in memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import numpy as np

from hitbench.errors import HitbenchError

#: Frames per chunk when a frame source or a run is read in order.
CHUNK_FRAMES = 128
#: Frames per task of the commands that process whole runs (``hitbench label``, ``hitbench predict``): a worker
#: reads this many frames, searches or scores them and hands back their results.
TASK_FRAMES = 256


def check_frames(X: object, *, where: str = "X") -> np.ndarray:
    """Validate a frame stack and return it as a float32 array (n, H, W).

    Parameters
    ----------
    X : array-like
        Frames, shape (n_frames, height, width).
    where : str
        Name used in error messages (a file or field).

    Returns
    -------
    numpy.ndarray
        The frames as float32, shape (n, H, W).
    """
    frames = frame_stack(X, where=where)
    check_finite(frames, frame_sums(frames), where=where)
    return frames


def frame_sums(frames: np.ndarray) -> np.ndarray:
    """Each frame's sum of pixels (float32), NaN or Inf where a pixel is, without numpy's warnings of it.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n, H, W)
        The frames.

    Returns
    -------
    numpy.ndarray, shape (n,)
        The sums, for :func:`check_finite`.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a bad pixel is refused in one line, not warned of too
        return frames.sum(axis=(1, 2))


def frame_stack(X: object, *, where: str = "X") -> np.ndarray:
    """:func:`check_frames` without its NaN and Inf check, for a method whose scoring pass makes that check.

    Parameters
    ----------
    X : array-like
        Frames, shape (n_frames, height, width).
    where : str
        Name used in error messages (a file or field).

    Returns
    -------
    numpy.ndarray
        The frames as float32, shape (n, H, W) (``X`` itself when it is one).
    """
    if getattr(X, "dtype", None) == np.bool_:  # a mask, not pixel values
        raise HitbenchError(f"{where}: frames are booleans (a mask?); pass pixel values, an (n, H, W) array of numbers")
    try:
        frames = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise HitbenchError(f"{where}: frames are not numeric ({exc}); pass an (n, H, W) array") from None
    if frames.ndim != 3:
        raise HitbenchError(
            f"{where}: frames have shape {frames.shape}, expected 3 dimensions (n_frames, height, width)"
        )
    if frames.shape[0] == 0:
        raise HitbenchError(f"{where}: no frames (the stack is empty); give at least one frame")
    return frames


def check_finite(frames: np.ndarray, totals: np.ndarray, *, where: str = "X") -> None:
    """Refuse frames holding NaN or Inf, given per-frame totals that a non-finite pixel makes non-finite.

    NaN and Inf reach any sum of a frame's pixels (``frames.sum(axis=(1, 2))``, or a method's own pass
    over them), so finite totals clear the common case without another pass; only a non-finite total (a
    bad pixel, or finite values overflowing float32) needs the pixel check.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n, H, W)
        The frames.
    totals : numpy.ndarray
        Per-frame sums (or any values that are NaN or Inf whenever a pixel of their frame is).
    where : str
        Name used in error messages (a file or field).
    """
    if np.isfinite(totals).all() or np.isfinite(frames).all():
        return
    bad = int(np.count_nonzero(~np.isfinite(frames).all(axis=(1, 2))))
    raise HitbenchError(
        f"{where}: {bad} frame(s) contain NaN or Inf values; mask those pixels (set them to 0) or drop the frames"
    )


class FrameSource(ABC):
    """Checked float32 frames (n, H, W), read in chunks or by position.

    Subclasses set ``frame_shape`` and implement ``__len__``, :meth:`chunks` and :meth:`take`.
    """

    frame_shape: tuple[int, int]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def chunks(self) -> Iterator[np.ndarray]:
        """All frames in order, :data:`CHUNK_FRAMES` at a time (float32, checked)."""

    @abstractmethod
    def take(self, positions: np.ndarray) -> np.ndarray:
        """The frames at ``positions`` (0 to ``len - 1``, distinct), in that order (float32, checked)."""

    def map(self, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``function`` applied chunk by chunk, results concatenated along the first axis.

        Parameters
        ----------
        function : callable
            Takes frames (n, H, W) and returns one row per frame (n, ...).

        Returns
        -------
        numpy.ndarray
            One row per frame, in order.
        """
        return np.concatenate([np.asarray(function(chunk)) for chunk in self.chunks()])

    def to_array(self) -> np.ndarray:
        """Every frame in memory (n, H, W): only for what cannot work chunk by chunk."""
        return self.take(np.arange(len(self)))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """At most ``n`` frames drawn without replacement (seeded), in position order.

        Parameters
        ----------
        n : int
            How many frames (all of them when there are fewer).
        seed : int
            Seed of the draw.

        Returns
        -------
        numpy.ndarray
            The frames (m, H, W), m = min(n, len).
        """
        if n >= len(self):
            return self.to_array()
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False)))


class ArrayFrames(FrameSource):
    """Frames held in memory as a frame source.

    Parameters
    ----------
    frames : array-like, shape (n, H, W)
        The frames (checked and converted to float32 once).
    """

    def __init__(self, frames: object) -> None:
        self.frames = check_frames(frames)
        self.frame_shape = (int(self.frames.shape[1]), int(self.frames.shape[2]))

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), CHUNK_FRAMES):
            yield self.frames[start : start + CHUNK_FRAMES]

    def take(self, positions: np.ndarray) -> np.ndarray:
        return self.frames[np.asarray(positions, dtype=np.int64)]


def frame_source(X: object) -> FrameSource:
    """``X`` as a frame source: a :class:`FrameSource` as it is, anything else checked into :class:`ArrayFrames`.

    Parameters
    ----------
    X : FrameSource or array-like, shape (n, H, W)
        Frames.

    Returns
    -------
    FrameSource
    """
    return X if isinstance(X, FrameSource) else ArrayFrames(X)
