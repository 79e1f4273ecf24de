"""Tiles of frame stacks: the block statistics the preprocessing steps share, and their interpolation."""

from __future__ import annotations

import numpy as np
from scipy import stats

from hitbench.errors import HitbenchError


def sorted_tiles(frames: np.ndarray, block: int) -> np.ndarray:
    """Sorted values of each ``block`` x ``block`` tile, shape (n, ny, nx, block**2); bad pixels (0) -> frame median."""
    n, height, width = frames.shape
    fill = np.median(frames, axis=(1, 2), keepdims=True)
    filled = np.where(frames == 0, fill, frames)
    pad_h, pad_w = -height % block, -width % block
    if pad_h or pad_w:
        filled = np.pad(filled, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
    return np.sort(blocks(filled, block), axis=-1)


def blocks(frames: np.ndarray, block: int) -> np.ndarray:
    """The ``block`` x ``block`` tiles of frames whose sides are multiples of ``block``: (n, ny, nx, block**2)."""
    n, height, width = frames.shape
    ny, nx = height // block, width // block
    return frames.reshape(n, ny, block, nx, block).transpose(0, 1, 3, 2, 4).reshape(n, ny, nx, block * block)


def check_block(where: str, block: object, alternative: str = "") -> None:
    """Refuse a tile side under 3 pixels (a median or spread of fewer pixels means nothing)."""
    if int(block) < 3:
        raise HitbenchError(f"{where}: block={block}; give a tile side of at least 3 pixels{alternative}")


def interpolate(tile_values: np.ndarray, shape: tuple[int, int], block: int) -> np.ndarray:
    """Bilinear interpolation of per-tile values (n, ny, nx) back to full frames (n, H, W).

    Tile centres sit at ``block/2 + k*block``; beyond the outer centres values are held
    (as ``scipy.ndimage.map_coordinates(order=1, mode="nearest")``). Bilinear interpolation
    on a grid is separable: ``rows @ values @ cols.T`` with two sparse weight matrices.
    """
    height, width = shape
    rows = _linear_weights(height, tile_values.shape[1], block)
    cols = _linear_weights(width, tile_values.shape[2], block)
    return np.matmul(np.matmul(rows, tile_values.astype(np.float32)), cols.T)


def _linear_weights(size: int, n_tiles: int, block: int) -> np.ndarray:
    """(size, n_tiles) weights of linear interpolation from tile centres to pixels, ends held."""
    position = np.clip((np.arange(size) + 0.5) / block - 0.5, 0, n_tiles - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, n_tiles - 1)
    fraction = (position - low).astype(np.float32)
    weights = np.zeros((size, n_tiles), dtype=np.float32)
    np.add.at(weights, (np.arange(size), low), 1 - fraction)
    np.add.at(weights, (np.arange(size), high), fraction)
    return weights


def tile_trim(block: int) -> tuple[int, float]:
    """Values dropped at each end of a ``block`` x ``block`` tile for its trimmed spread (2 %, at least one), and
    the trimmed standard deviation of normal noise in sigmas (:func:`trimmed_std_fraction`)."""
    trim = max(1, block * block // 50)
    return trim, trimmed_std_fraction(trim / (block * block))


def trimmed_std_fraction(fraction: float) -> float:
    """Standard deviation of a normal distribution cut at its ``fraction`` and ``1 - fraction`` quantiles, in sigmas."""
    z = stats.norm.ppf(1.0 - fraction)
    return float(np.sqrt(1.0 - 2.0 * z * stats.norm.pdf(z) / (1.0 - 2.0 * fraction)))
