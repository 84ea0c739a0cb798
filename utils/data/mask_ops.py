"""Morphological clean-up of binary time-frequency masks."""

from __future__ import annotations

import cv2
import numpy as np

MIN_BLOB_PIXELS = 20  # the smallest labelled blob, in the one-sided half of the mask
VISIBLE_FLOOR = 2.0 / 255.0  # the faintest magnitude a labeller sees in a BSD image


def _ellipse(width: int, height: int) -> np.ndarray:
    """An elliptic structuring element ``width`` frames wide and ``height`` bins tall."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(width), int(height)))


def clean_mask_half(
    keep: np.ndarray,
    open_size: tuple[int, int] = (9, 5),
    close_size: tuple[int, int] = (15, 7),
    min_area: int = 150,
    dilate_size: tuple[int, int] = (5, 5),
) -> np.ndarray:
    """Turn a speckled bool mask into blobs: open, close, drop small blobs, dilate.

    Args:
        keep: bool ``(F, T)`` mask (rows = frequency bins, columns = frames).
        open_size, close_size, dilate_size: ``(frames, bins)`` of the elliptic
            structuring elements; a size of ``(0, 0)`` or ``(1, 1)`` skips the step.
        min_area: blobs (8-connected) of fewer pixels are removed; 0 keeps all.

    Returns:
        bool ``(F, T)`` mask.
    """
    blobs = np.ascontiguousarray(keep, dtype=np.uint8)
    if max(open_size) > 1:
        blobs = cv2.morphologyEx(blobs, cv2.MORPH_OPEN, _ellipse(*open_size))
    if max(close_size) > 1:
        blobs = cv2.morphologyEx(blobs, cv2.MORPH_CLOSE, _ellipse(*close_size))
    if min_area > 1 and blobs.any():
        _, labels, stats, _ = cv2.connectedComponentsWithStats(blobs, connectivity=8)
        large = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
        blobs = np.isin(labels, large[large > 0]).astype(np.uint8)
    if max(dilate_size) > 1:
        blobs = cv2.dilate(blobs, _ellipse(*dilate_size))
    return blobs > 0


def label_mask_half(
    clean_half: np.ndarray, noise_half: np.ndarray, visible_floor: float = VISIBLE_FLOOR
) -> np.ndarray:
    """The clean-sound mask a careful labeller would draw, for bins 0 ... 512.

    Takes the ``(513, T)`` half spectra of the clean and the noise signal (see
    :func:`utils.audio.stft_half`) and returns a bool ``(513, T)`` array; BSD masks
    are mirror-symmetric, so :func:`utils.audio.two_sided` gives the full mask.
    Bins where the bird is louder than the noise (and visible in the image: above
    ``visible_floor`` and within 35 dB of its peak) are cleaned of speckle and closed
    into smooth blobs, like hand-drawn outlines.
    """
    clean_mag = np.abs(clean_half)
    if clean_mag.max() == 0:
        return np.zeros(clean_half.shape, dtype=bool)
    visible = clean_mag > max(visible_floor, clean_mag.max() * 10 ** (-35 / 20))
    dominant = (visible & (clean_mag > np.abs(noise_half))).astype(np.uint8)
    return clean_mask_half(
        dominant, open_size=(3, 3), close_size=(15, 7), min_area=MIN_BLOB_PIXELS, dilate_size=(5, 5)
    )
