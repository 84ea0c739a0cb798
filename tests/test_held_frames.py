"""The buffers a streamed recording holds its frames in."""

import numpy as np

from utils.common.buffers import TimeBuffer
from utils.inference.held_frames import HeldFrames


def test_a_time_buffer_holds_what_was_appended_and_not_dropped():
    rng = np.random.default_rng(0)
    buffer = TimeBuffer((2, 0, 3), axis=1, dtype=np.float32)
    expected = np.zeros((2, 0, 3), np.float32)
    capacities, most_held = set(), 0
    for step in range(200):
        count = int(rng.integers(0, 40))
        values = None if step % 5 == 0 else rng.random((2, count, 3), dtype=np.float32)
        buffer.append(values, count)
        new = np.zeros((2, count, 3), np.float32) if values is None else values
        expected = np.concatenate([expected, new], axis=1)
        most_held = max(most_held, expected.shape[1])
        drop = int(rng.integers(0, 45))
        buffer.drop(drop)
        expected = expected[:, drop:]
        assert len(buffer) == expected.shape[1]
        np.testing.assert_array_equal(buffer.view(), expected)
        capacities.add(buffer._data.shape[1])
    assert len(capacities) > 1  # it grew
    assert max(capacities) <= 2 * most_held  # with what it held, not with what passed


def test_a_time_buffer_view_writes_through():
    buffer = TimeBuffer((1, 0), axis=1, dtype=np.float32)
    buffer.append(None, 5)
    buffer.view()[0, 2:4] += 1.5
    buffer.append(np.full((1, 3), 2.0, np.float32), 3)
    buffer.drop(2)
    np.testing.assert_array_equal(buffer.view(), [[1.5, 1.5, 0.0, 2.0, 2.0, 2.0]])


def test_held_frames_keep_planes_only_when_asked_and_count_what_they_held():
    images = [np.full((513, 10), 7, np.uint8), np.full((513, 10), 9, np.uint8)]
    planes = [np.ones((2, 10, 513), np.float32)] * 2
    for keep_planes in (False, True):
        frames = HeldFrames(2, model_rows=256, weight_rows=1, keep_planes=keep_planes)
        frames.append(planes, images)
        frames.release(4)
        frames.append(planes, images)
        assert (frames.first, frames.held, frames.most_frames_held) == (4, 20, 16)
        assert frames.images(1).shape == (513, 16) and (frames.images(1) == 9).all()
        assert frames.sums(0).shape == (256, 16) and not frames.sums(0).any()
        assert frames.weights(0).shape == (1, 16)
        assert frames.planes(0).shape == ((2, 16, 513) if keep_planes else (2, 0, 513))
