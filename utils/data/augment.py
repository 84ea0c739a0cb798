"""Training-time augmentations of one item, image and mask alike (labels stay exact)."""

from __future__ import annotations

import numpy as np


def time_flip(image: np.ndarray, mask: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``image`` and ``mask`` (``(..., W)``) reversed in time over their first
    ``width`` columns; the columns after them (a tile's padding) stay where they are."""
    image, mask = image.copy(), mask.copy()
    image[..., :width] = image[..., :width][..., ::-1]
    mask[..., :width] = mask[..., :width][..., ::-1]
    return image, mask


def spectral_gain(
    image: np.ndarray, rng: np.random.Generator, max_db: float, mirrored: bool
) -> np.ndarray:
    """``image`` (``(H, W)``, magnitudes in [0, 1]) times a random gain per row: a smooth
    curve through 2-6 knots drawn within +-``max_db`` dB, clipped to [0, 1]. The bird and
    the noise of a bin are scaled alike, so the mask stays exact. ``mirrored``: rows
    mirror about the middle (a full BSD image), and so does the curve."""
    rows = image.shape[0]
    knots = rng.uniform(-max_db, max_db, int(rng.integers(2, 7)))
    curve_db = np.interp(np.linspace(0, len(knots) - 1, rows), np.arange(len(knots)), knots)
    if mirrored:
        curve_db = (curve_db + curve_db[::-1]) / 2
    gain = (10 ** (curve_db / 20)).astype(image.dtype)
    return np.clip(image * gain[:, None], 0, 1)
