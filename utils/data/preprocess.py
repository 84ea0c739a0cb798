"""Image and mask preprocessing to the model's input size, and box prompts."""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_SIZE = 256  # the reference code first resizes everything to 256 x 256
BOX_SHIFT_AT_1024 = 20  # the paper's -bbox_shift, in pixels of a 1024 input
MASK_RESIZES = ("nearest", "area")


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W)`` -> uint8 ``(size, size)`` by OpenCV's area interpolation (each output
    pixel the mean of the input area it covers, rounded; anti-aliased).

    When ``H`` is a multiple of ``size`` and ``W`` is at least ``size`` (a 1,024-row BSD
    image to 256), rows are first summed in groups, exactly, and only the columns are
    resampled: 3x faster, and the same but for rare ties in rounding (summation order).
    """
    height, width = image.shape
    factor = height // size
    if factor < 2 or height != factor * size or width < size:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    sums = np.add.reduce(image.reshape(size, factor, width), axis=1, dtype=np.uint32)
    means = cv2.resize(sums.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    means *= np.float32(1 / factor)
    return np.rint(means, out=means).astype(np.uint8)


def reference_nearest(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` -> ``(256, 256)`` as the reference loads it: ``PIL.Image.resize``
    with nearest resampling."""
    from PIL import Image  # imported here: only the reference path needs it

    return np.asarray(
        Image.fromarray(image).resize((REFERENCE_SIZE, REFERENCE_SIZE), Image.NEAREST)
    )


def reference_resize(image: np.ndarray, size: int, order: int) -> np.ndarray:
    """``(256, 256)`` -> float64 ``(size, size)`` by ``skimage.transform.resize`` called as
    the reference calls it: spline ``order`` 3 (images, anti-aliased) or 0 (masks)."""
    from skimage.transform import resize  # imported here: a second of start-up otherwise

    return resize(
        image, (size, size), order=order, preserve_range=True, mode="constant",
        anti_aliasing=order > 0,
    )  # fmt: skip


def preprocess_image(image: np.ndarray, size: int, reference: bool = False) -> np.ndarray:
    """Spectrogram ``(H, W)`` uint8 -> model input ``(3, size, size)`` float32 in [0, 1].

    Default: an area resize (anti-aliased, :func:`area_resize`) and division by 255.
    ``reference``: the reference code's path, with its libraries: PIL's nearest resize
    to 256 x 256, scikit-image's cubic spline to ``size``, min-max scaling.
    """
    if reference:
        large = reference_resize(reference_nearest(image), size, order=3)
        low, high = float(large.min()), float(large.max())
        scaled = (large - low) / max(high - low, 1e-8)
    else:
        scaled = area_resize(image, size) / np.float32(255)
    return np.repeat(scaled.astype(np.float32)[None], 3, axis=0)


def preprocess_mask(
    mask: np.ndarray, size: int, reference: bool = False, resize: str = "nearest"
) -> np.ndarray:
    """Mask ``(H, W)`` -> ``(size, size)``.

    ``resize="nearest"`` (the default, as the reference): bool, by nearest resizing.
    With ``reference``, the reference's calls (PIL to 256, scikit-image to ``size``, then
    min-max scaling and ``> 0``): a mask that is foreground everywhere comes out empty, as
    there. ``resize="area"``: float32 in [0, 1], each pixel the
    foreground fraction of the input area it covers (a soft target that keeps thin
    structures nearest resizing drops or fattens; ``reference`` is ignored).
    """
    if resize not in MASK_RESIZES:
        raise ValueError(f"unknown mask resize {resize!r}; expected one of {MASK_RESIZES}")
    if reference and resize == "nearest":  # foreground: above the resized mask's minimum
        resized = reference_resize(reference_nearest(mask.astype(np.uint8)), size, order=0)
        return resized > resized.min()
    binary = (mask > 0).astype(np.uint8)
    if resize == "area":
        return cv2.resize(binary.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return cv2.resize(binary, (size, size), interpolation=cv2.INTER_NEAREST) > 0


def box_prompt(mask: np.ndarray, rng: np.random.Generator | None, max_shift: int) -> np.ndarray:
    """``[x0, y0, x1, y1]`` float32 around the mask, each side pushed out by 0..max_shift px.

    An empty mask gets the whole image; ``rng=None`` means no jitter.
    """
    size_y, size_x = mask.shape
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return full_box(size_y, size_x)
    shift = rng.integers(0, max_shift + 1, 4) if rng is not None and max_shift > 0 else np.zeros(4)
    return np.array(
        [
            max(0, cols.min() - shift[0]),
            max(0, rows.min() - shift[1]),
            min(size_x, cols.max() + shift[2]),
            min(size_y, rows.max() + shift[3]),
        ],
        dtype=np.float32,
    )


def full_box(size_y: int, size_x: int) -> np.ndarray:
    """The whole-image box ``[0, 0, W, H]``: a prompt that needs no ground truth."""
    return np.array([0, 0, size_x, size_y], dtype=np.float32)


def scaled_box_shift(bbox_shift: int, size: int) -> int:
    """``-bbox_shift`` is given at a 1024 input; scale it to ``size``."""
    return int(round(bbox_shift * size / 1024))
