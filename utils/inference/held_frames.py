"""The frames a streamed recording holds between reading and rendering them.

Per channel: the BSD STFT planes (only when the rendering needs them), the half-spectrum
images the model's crops come from, and the running sums of the tiles' maps and of their
blending weights. Frames are appended as the recording is read and released once
rendered; a buffer moves its frames to the front only when its end is reached, and grows
(to twice what it holds) only when they would fill more than half of it, so appending
and releasing do not copy everything held each time.
"""

from __future__ import annotations

import numpy as np

from utils.audio.conventions import N_BINS


class TimeBuffer:
    """An array that grows and shrinks along one axis (time): values are appended at its
    end and dropped from its start. :meth:`view` is the values held, as a view."""

    def __init__(self, shape: tuple[int, ...], axis: int, dtype: type) -> None:
        """``shape``: the array's shape with 0 along ``axis``."""
        self.axis = axis
        self._data = np.zeros(shape, dtype)
        self._start = self._stop = 0

    def __len__(self) -> int:
        return self._stop - self._start

    def view(self) -> np.ndarray:
        return self._slice(self._start, self._stop)

    def append(self, values: np.ndarray | None, count: int) -> None:
        """Append ``count`` steps: ``values`` (of that length along the axis) or zeros."""
        self._make_room(count)
        stop = self._stop + count
        new = self._slice(self._stop, stop)
        if values is None:
            new[...] = 0
        else:
            new[...] = values
        self._stop = stop

    def drop(self, count: int) -> None:
        """Forget the first ``count`` steps."""
        self._start += min(count, len(self))

    def _slice(self, start: int, stop: int) -> np.ndarray:
        index = [slice(None)] * self._data.ndim
        index[self.axis] = slice(start, stop)
        return self._data[tuple(index)]

    def _make_room(self, count: int) -> None:
        capacity = self._data.shape[self.axis]
        if self._stop + count <= capacity:
            return
        held = len(self)
        if held + count > capacity // 2:  # more than half full once moved: grow
            shape = list(self._data.shape)
            shape[self.axis] = 2 * (held + count)
            data = np.empty(shape, self._data.dtype)
        else:
            data = self._data
        index = [slice(None)] * data.ndim
        index[self.axis] = slice(0, held)
        data[tuple(index)] = self.view()  # a move to the front: the ranges never overlap
        self._data, self._start, self._stop = data, 0, held


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
