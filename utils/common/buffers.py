"""Arrays that grow at one end and shrink at the other without copying everything they
hold each time: a buffer moves its values to the front only when its end is reached, and
grows (to twice what it holds) only when they would fill more than half of it. Moving
overwrites the buffer: a view of it is valid until the next append."""

from __future__ import annotations

import numpy as np


class TimeBuffer:
    """An array that grows and shrinks along one axis (time): values are appended at its
    end and dropped from its start. :meth:`view` is the values held, as a view (valid
    until the next :meth:`append`)."""

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

    def _slice(self, start: int, stop: int, data: np.ndarray | None = None) -> np.ndarray:
        """Steps ``start ... stop - 1`` of ``data`` (default: the buffer's array), a view."""
        data = self._data if data is None else data
        index = [slice(None)] * data.ndim
        index[self.axis] = slice(start, stop)
        return data[tuple(index)]

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
        self._slice(0, held, data)[...] = self.view()  # to the front: the ranges never overlap
        self._data, self._start, self._stop = data, 0, held
