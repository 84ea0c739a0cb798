"""Morphological clean-up of binary time-frequency masks."""

from __future__ import annotations

import cv2
import numpy as np


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
