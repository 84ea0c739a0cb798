"""The frames a streamed recording holds between reading and rendering them.

Per channel: the BSD STFT planes (only when the rendering needs them), the half-spectrum
images the model's crops come from, and the running sums of the tiles' maps and of their
blending weights. Frames are appended as the recording is read and released once
rendered, in time buffers (:class:`utils.common.buffers.TimeBuffer`): appending and
releasing do not copy everything held each time. The arrays returned are views, valid
until the next :meth:`HeldFrames.append`.
"""

from __future__ import annotations

import numpy as np

from utils.audio.conventions import N_BINS
from utils.common.buffers import TimeBuffer


class HeldFrames:
    """Frames ``first ... held - 1`` of every channel: images ``(513, frames)`` uint8,
    planes ``(2, frames, 513)`` (when kept), map sums ``(model rows, frames)`` and weights
    ``(weight rows, frames)``, all float32."""

    def __init__(self, channels: int, model_rows: int, weight_rows: int, keep_planes: bool) -> None:
        self.first = 0
        self.held = 0
        self.most_frames_held = 0  # what memory depends on
        self.keep_planes = keep_planes
        self._planes = [TimeBuffer((2, 0, N_BINS), 1, np.float32) for _ in range(channels)]
        self._images = [TimeBuffer((N_BINS, 0), 1, np.uint8) for _ in range(channels)]
        self._sums = [TimeBuffer((model_rows, 0), 1, np.float32) for _ in range(channels)]
        self._weights = [TimeBuffer((weight_rows, 0), 1, np.float32) for _ in range(channels)]

    def append(self, planes: list[np.ndarray], images: list[np.ndarray]) -> None:
        """Hold the next frames: each channel's planes and images (empty sums)."""
        count = images[0].shape[1]
        for c, image in enumerate(images):
            if self.keep_planes:
                self._planes[c].append(planes[c], count)
            self._images[c].append(image, count)
            self._sums[c].append(None, count)
            self._weights[c].append(None, count)
        self.held += count
        self.most_frames_held = max(self.most_frames_held, self.held - self.first)

    def release(self, before_frame: int) -> None:
        """Forget the frames before ``before_frame``."""
        drop = max(0, before_frame) - self.first
        if drop <= 0:
            return
        for buffers in (self._planes, self._images, self._sums, self._weights):
            for buffer in buffers:
                buffer.drop(drop)
        self.first += drop

    def images(self, channel: int) -> np.ndarray:
        """The channel's held images (column 0 is frame ``first``)."""
        return self._images[channel].view()

    def planes(self, channel: int) -> np.ndarray:
        """The channel's held planes (row 0 is frame ``first``)."""
        return self._planes[channel].view()

    def sums(self, channel: int) -> np.ndarray:
        """The channel's running sums of weighted maps (column 0 is frame ``first``)."""
        return self._sums[channel].view()

    def weights(self, channel: int) -> np.ndarray:
        """The channel's running sums of blending weights (column 0 is frame ``first``)."""
        return self._weights[channel].view()
