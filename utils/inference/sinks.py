"""Where a streamed recording's outputs go (:func:`utils.inference.streaming.denoise_recording`):
the command line's files (:class:`FileSink`) or arrays in memory (:class:`MemorySink`, for
the Python API, :mod:`utils.api`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np

from utils.audio.io import audio_writer
from utils.data.image_io import overlay, write_png

# A recording's mask PNG is held whole, with its image for an overlay: at most 2^17 frames
# (2.9 min at 48 kHz; 128 MiB each, and 384 MiB for the overlay).
PNG_MAX_FRAMES = 1 << 17
OVERLAY_BLOCK_FRAMES = 1 << 13  # overlays are drawn this many frames at a time
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")

Write = Callable[[np.ndarray], None]


class RecordingSink:
    """What takes a recording's outputs: its denoised audio, block by block, and each
    channel's mask when :meth:`wants_masks` (with the channel's image, if
    ``keeps_images``)."""

    keeps_images = False

    def subtype(self, recorded: str) -> str:
        """The format the audio is kept in, for a recording of soundfile subtype
        ``recorded``: ``"PCM_16"`` (full-scale samples are counted as clipped) or
        ``"FLOAT"``."""
        raise NotImplementedError

    def wants_masks(self, path: object, seconds: float, n_frames: int) -> tuple[bool, list[str]]:
        """Whether to keep the masks of a recording this long, and warnings."""
        raise NotImplementedError

    def writer(
        self, name: str, sr: int, channels: int, subtype: str, samples: int
    ) -> AbstractContextManager[Write]:
        """A function taking the denoised ``(channels, n)`` float32 blocks, in order."""
        raise NotImplementedError

    def mask(self, name: str, mask: np.ndarray, images: list[np.ndarray]) -> None:
        """One channel's bool two-sided ``(1024, T)`` mask and (``keeps_images``) the blocks
        of its uint8 image."""
        raise NotImplementedError


class FileSink(RecordingSink):
    """The command line's files: ``out/denoised/NAME.wav`` (16-bit, or 32-bit float for a
    float recording) written block by block and, for recordings up to ``png_max_seconds``
    long, each channel's ``out/masks/NAME.png`` (and ``out/overlays/NAME.png``)."""

    def __init__(self, out: Path, png_max_seconds: float, overlays: bool = False) -> None:
        self.out, self.png_max_seconds, self.keeps_images = out, png_max_seconds, overlays

    def subtype(self, recorded: str) -> str:
        return "FLOAT" if recorded in FLOAT_SUBTYPES else "PCM_16"

    def wants_masks(self, path: object, seconds: float, n_frames: int) -> tuple[bool, list[str]]:
        if seconds > self.png_max_seconds:
            return False, []
        if n_frames > PNG_MAX_FRAMES:
            return False, [f"{path}: no mask PNG, {n_frames} frames is more than "
                           f"{PNG_MAX_FRAMES} (see its selection table)"]  # fmt: skip
        return True, []

    def writer(
        self, name: str, sr: int, channels: int, subtype: str, samples: int
    ) -> AbstractContextManager[Write]:
        return audio_writer(self.out / "denoised" / f"{name}.wav", sr, channels, subtype, samples)

    def mask(self, name: str, mask: np.ndarray, images: list[np.ndarray]) -> None:
        write_png(self.out / "masks" / f"{name}.png", mask)
        if self.keeps_images:
            image = np.concatenate(images, axis=1)
            blocks = range(0, mask.shape[1], OVERLAY_BLOCK_FRAMES)
            rgb = np.concatenate([
                np.round(overlay(image[:, b : b + OVERLAY_BLOCK_FRAMES],
                                 mask[:, b : b + OVERLAY_BLOCK_FRAMES]) * 255).astype(np.uint8)
                for b in blocks
            ], axis=1)  # fmt: skip
            write_png(self.out / "overlays" / f"{name}.png", rgb)


class MemorySink(RecordingSink):
    """Outputs kept as arrays: :attr:`audio`, the denoised float32 ``(channels, n)`` samples as
    rendered (not quantised) at ``sr``, and :attr:`masks`, each channel's mask (none without
    ``keep_masks``)."""

    def __init__(self, keep_masks: bool = True) -> None:
        self.keep_masks = keep_masks
        self.blocks: list[np.ndarray] = []
        self.sr = self.channels = 0
        self.masks: list[np.ndarray] = []

    def subtype(self, recorded: str) -> str:
        return "FLOAT"

    def wants_masks(self, path: object, seconds: float, n_frames: int) -> tuple[bool, list[str]]:
        return self.keep_masks, []

    @contextmanager
    def writer(
        self, name: str, sr: int, channels: int, subtype: str, samples: int
    ) -> Iterator[Write]:
        self.blocks, self.sr, self.channels = [], sr, channels
        yield self.blocks.append

    def mask(self, name: str, mask: np.ndarray, images: list[np.ndarray]) -> None:
        self.masks.append(mask)

    @property
    def audio(self) -> np.ndarray:
        """The denoised samples, ``(channels, n)`` float32."""
        return np.concatenate([np.zeros((self.channels, 0), np.float32), *self.blocks], axis=1)
