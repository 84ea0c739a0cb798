"""Box prompts on a recording: a user's time spans and bands (``--box``, or the selections
of Raven tables) as image boxes, and the pixels they let through."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.audio import bsd
from utils.audio.conventions import N_BINS
from utils.data.selection_table import Selection


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
    boxes: list[BoxPrompt], channel: int, first: int, stop: int, half_spectrum: bool
) -> np.ndarray:
    """Bool: the pixels of frames ``first ... stop - 1`` inside a box of ``channel``, as
    rows of bins 0 ... 512 (``half_spectrum``) or of the two-sided 1,024."""
    half = np.zeros((N_BINS, stop - first), dtype=bool)
    extents = np.array([box.extent for box in boxes]).reshape(-1, 4)
    channels = np.array([box.channel for box in boxes])
    here = (channels == channel) & (extents[:, 0] < stop) & (extents[:, 1] > first)
    for x0, x1, k0, k1 in extents[here]:  # only the boxes in these frames: thousands are fine
        half[k0 : k1 + 1, max(x0, first) - first : min(x1, stop) - first] = True
    return half if half_spectrum else bsd.two_sided(half)
