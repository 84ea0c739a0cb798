"""Time tiles: cutting a spectrogram along time, and blending tiles back."""

from __future__ import annotations

import numpy as np

from utils.audio.conventions import CENTER_ROW


def tile_starts(width: int, tile_width: int | None) -> list[int]:
    """First columns of the time tiles covering ``width`` frames.

    Tiles of ``tile_width`` frames side by side; the last one ends at the image's
    end (overlapping its neighbour). One tile, the whole image, when ``tile_width``
    is None or the image is not wider.
    """
    if tile_width is None or width <= tile_width:
        return [0]
    starts = list(range(0, width - tile_width, tile_width))
    return starts + [width - tile_width]


def crop_input(
    array: np.ndarray, start: int, tile_width: int | None, half_spectrum: bool = False
) -> np.ndarray:
    """The part of a ``(1024, W)`` image or mask the model sees: one time tile, and with
    ``half_spectrum`` only the rows of bins 0 ... 512 (the other half mirrors them).

    An image narrower than ``tile_width`` is padded with zeros (silence, no clean
    sound) on the right to the tile's width, so that it is not stretched along time
    when resized to the model's input: its columns keep the scale of a whole tile's.
    """
    rows = slice(CENTER_ROW, None) if half_spectrum else slice(None)
    if tile_width is None:
        return array[rows]
    tile = array[rows, start : start + tile_width]
    if tile.shape[1] < tile_width:
        tile = np.pad(tile, ((0, 0), (0, tile_width - tile.shape[1])))
    return tile


def overlapping_tile_starts(width: int, tile_width: int | None, overlap: float = 0.0) -> list[int]:
    """First columns of time tiles of ``tile_width`` frames that overlap by ``overlap``.

    ``overlap`` is the fraction of a tile shared with the next one (0 <= overlap < 1);
    0 gives :func:`tile_starts` (side by side, the last tile ending at
    the image's end). One tile when ``tile_width`` is None or not below ``width``.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    if overlap == 0.0 or tile_width is None or width <= tile_width:
        return tile_starts(width, tile_width)
    step = max(1, int(round(tile_width * (1.0 - overlap))))
    starts = list(range(0, width - tile_width, step))
    return starts + [width - tile_width]


def mirrored_tile_starts(starts: list[int], width: int, tile_width: int | None) -> list[int]:
    """The first columns, in order, of ``starts``' tiles mirrored in an image ``width``
    wide: where the tiles of the time-reversed image lie (``[0]`` for one tile)."""
    if tile_width is None or width <= tile_width:
        return [0]
    return sorted(width - tile_width - start for start in starts)


def tile_grids(
    width: int, tile_width: int | None, overlap: float, time_flip: bool
) -> list[tuple[list[int], bool]]:
    """``(starts, reversed)`` of the tiles a map is blended from: the
    :func:`overlapping_tile_starts` run as they are and, with ``time_flip``, their
    :func:`mirrored_tile_starts` run time-reversed."""
    starts = overlapping_tile_starts(width, tile_width, overlap)
    if not time_flip:
        return [(starts, False)]
    return [(starts, False), (mirrored_tile_starts(starts, width, tile_width), True)]


def tile_weights(width: int) -> np.ndarray:
    """Blending weights ``(width,)`` of a tile's columns: a triangle peaking mid-tile, so
    where tiles overlap the one whose centre is nearer counts more. All positive."""
    ramp = np.arange(1, width + 1, dtype=np.float32)
    return np.minimum(ramp, ramp[::-1])


def tile_box(
    image_box: np.ndarray, start: int, crop_shape: tuple[int, int], half_spectrum: bool, size: int
) -> np.ndarray | None:
    """A box ``[x0, y0, x1, y1]`` in full-image pixels as a prompt for one tile.

    Clipped to the tile (columns ``start ...``, and rows from the centre row down
    with ``half_spectrum``) and scaled to the model's ``size`` x ``size`` input;
    None when the box misses the tile.
    """
    height, width = crop_shape
    row_offset = CENTER_ROW if half_spectrum else 0
    x0, y0, x1, y1 = (float(v) for v in image_box)
    x0, x1 = max(x0 - start, 0.0), min(x1 - start, float(width))
    y0, y1 = max(y0 - row_offset, 0.0), min(y1 - row_offset, float(height))
    if x1 <= x0 or y1 <= y0:
        return None
    scale_x, scale_y = size / width, size / height
    return np.array([x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y], dtype=np.float32)


def box_region(shape: tuple[int, int], image_box: np.ndarray) -> np.ndarray:
    """Bool ``shape`` array, True inside the box ``[x0, y0, x1, y1]`` (ends exclusive)."""
    inside = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = (int(round(float(v))) for v in image_box)
    inside[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return inside
