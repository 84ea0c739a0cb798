"""Box prompts on a recording: a user's time spans and bands (``--box``, or the selections
of Raven tables) as image boxes, and the pixels they let through."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.audio import bsd
from utils.audio.conventions import N_BINS, N_FFT
from utils.data.selection_table import Selection
from utils.data.tiling import tile_box


@dataclass(frozen=True)
class BoxPrompt:
    """A box on one channel (0-based): image pixels ``[x0, y0, x1, y1]`` as the model is
    prompted, and its :func:`utils.audio.bsd.band_extent` ``(x0, x1, k0, k1)``."""

    channel: int
    pixels: np.ndarray
    extent: tuple[int, int, int, int]


def box_prompts(
    path: Path,
    selections: list[Selection],
    sr: int,
    n_frames: int,
    channels: int,
    half_spectrum: bool,
) -> tuple[list[BoxPrompt], list[str]]:
    """The boxes of the selections that fit a recording of ``n_frames`` frames at ``sr``
    (a band above the Nyquist frequency is cut at it), and a warning for each that does
    not.

    Raises:
        ValueError: naming ``path``, when none fits.
    """
    boxes, unused = [], []
    for selection in selections:
        seconds = (selection.begin_s, selection.end_s)
        hertz = (selection.low_hz, min(selection.high_hz, sr / 2))
        try:
            if selection.channel > channels:
                raise ValueError(f"channel {selection.channel}, but the recording has {channels}")
            extent = bsd.band_extent(seconds, hertz, sr, n_frames)
        except ValueError as err:
            unused.append(
                f"box {seconds[0]:g}-{seconds[1]:g} s, {hertz[0]:g}-{hertz[1]:g} Hz: {err}"
            )
            continue
        pixels = bsd.band_box(seconds, hertz, sr, n_frames, half_spectrum)
        boxes.append(BoxPrompt(selection.channel - 1, pixels, extent))
    if not boxes:
        raise ValueError(f"{path}: no box prompt fits the recording ({unused[0]})")
    return boxes, [f"{path}: not used, {reason}" for reason in unused]


def box_gate(
    boxes: list[BoxPrompt],
    channel: int,
    first: int,
    stop: int,
    half_spectrum: bool,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """Bool: the pixels of frames ``first ... stop - 1`` (or of the frames ``columns``, in
    order) inside a box of ``channel``, as rows of bins 0 ... 512 (``half_spectrum``) or of
    the two-sided 1,024."""
    if columns is not None:  # the boxes over the columns' span only
        span = box_gate(boxes, channel, int(columns[0]), int(columns[-1]) + 1, half_spectrum)
        return span[:, columns - columns[0]]
    half = np.zeros((N_BINS, stop - first), dtype=bool)
    extents = np.array([box.extent for box in boxes]).reshape(-1, 4)
    channels = np.array([box.channel for box in boxes])
    here = (channels == channel) & (extents[:, 0] < stop) & (extents[:, 1] > first)
    for x0, x1, k0, k1 in extents[here]:  # only the boxes in these frames: thousands are fine
        half[k0 : k1 + 1, max(x0, first) - first : min(x1, stop) - first] = True
    return half if half_spectrum else bsd.two_sided(half)


def prompt_region(prompt: np.ndarray, size: int, tile_width: int, width: int) -> np.ndarray:
    """Bool ``(S, width)``: where a box prompt (model input pixels) lies in a tile's map
    resized to ``tile_width`` columns."""
    x0, y0, x1, y1 = (float(v) for v in prompt)
    region = np.zeros((size, width), dtype=bool)
    scale = tile_width / size
    columns = slice(int(np.floor(x0 * scale)), int(np.ceil(x1 * scale)))
    region[int(np.floor(y0)) : int(np.ceil(y1)), columns] = True
    return region


def tiles_under_boxes(
    boxes: list[BoxPrompt], starts: list[int], tile_width: int, half_spectrum: bool, size: int
) -> list[tuple[int, int, int]]:
    """``(tile start, channel, box index)`` of every tile (of those starting at ``starts``)
    that a box reaches, ordered by start, then box."""
    shape = (N_BINS if half_spectrum else N_FFT, tile_width)
    jobs = []
    for b, box in enumerate(boxes):  # the tiles that overlap the box in time
        first = bisect.bisect_right(starts, box.pixels[0] - tile_width)
        for start in starts[first : bisect.bisect_left(starts, box.pixels[2])]:
            if tile_box(box.pixels, start, shape, half_spectrum, size) is not None:
                jobs.append((start, box.channel, b))
    return sorted(jobs, key=lambda job: (job[0], job[2]))


def tile_jobs(
    grids: list[tuple[list[int], bool]],
    channels: int,
    boxes: list[BoxPrompt] | None,
    tile_width: int,
    half_spectrum: bool,
    size: int,
) -> list[tuple[int, int, int, bool]]:
    """``(tile start, channel, box index or -1, reversed)`` of the tiles of each grid
    (``(starts, whether they run time-reversed)``): on every channel without boxes, else
    those a box reaches (:func:`tiles_under_boxes`); ordered by start."""
    jobs = []
    for starts, reverse in grids:
        if boxes is None:
            tiles = [(s, c, -1) for s in starts for c in range(channels)]
        else:
            tiles = tiles_under_boxes(boxes, starts, tile_width, half_spectrum, size)
        jobs += [(*tile, reverse) for tile in tiles]
    return sorted(jobs, key=lambda job: (job[0], job[3], job[2], job[1]))
