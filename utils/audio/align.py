"""Aligning a recording with a published BSD image (MP3 decoders differ in delay)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.audio.bsd import stft
from utils.audio.conventions import CENTER_ROW, HOP_LENGTH, WINDOW_LENGTH, num_frames, num_samples
from utils.audio.io import audio_source_for_image, find_audio_file, load_audio

# The largest decoder delay :func:`align_to_image` looks for, in samples. A BSD image's
# recording may be longer than the image by this delay plus as much again of padding
# at the end; a longer one is not the image's recording.
ALIGN_MAX_OFFSET = 2048


def raw_audio_for_image(
    raw_dir: str | Path, image_name: str, image: np.ndarray
) -> tuple[np.ndarray, int]:
    """The part of a BSD image's raw recording that the image shows, and its rate.

    Maps ``X_left.png`` to channel 1 of ``raw_dir/X.wav`` (and so on; ``X.png`` to the
    mono mix of all channels), and aligns the decode to the image with
    :func:`align_to_image` when their widths differ.

    Raises:
        ValueError: naming the file, when it is missing or unreadable, or when its
            length cannot match the image's width at any offset up to
            :data:`ALIGN_MAX_OFFSET` (too short, or longer than the image by more than
            twice that).
    """
    segment, sr, _ = raw_audio_segment(raw_dir, image_name, image)
    return segment, sr


def raw_audio_segment(
    raw_dir: str | Path, image_name: str, image: np.ndarray
) -> tuple[np.ndarray, int, int]:
    """:func:`raw_audio_for_image` that also returns the sample ``offset`` of the part
    shown (0 unless the decode had to be aligned): ``(segment, sr, offset)``."""
    stem, channel = audio_source_for_image(image_name)
    path = find_audio_file(raw_dir, stem)
    if path is None:
        raise ValueError(f"{Path(raw_dir) / stem}.*: no raw recording for {image_name}")
    y, sr = load_audio(path, channel)
    width = image.shape[1]
    extra = len(y) - num_samples(width)
    if not 0 <= extra <= 2 * ALIGN_MAX_OFFSET:
        raise ValueError(
            f"{path}: {len(y)} samples ({num_frames(len(y))} frames) do not match the "
            f"{width} frames of {image_name} at any offset up to {ALIGN_MAX_OFFSET} samples"
        )
    # Only offsets that leave the whole image's worth of samples are searched.
    offset = 0 if extra < HOP_LENGTH else align_to_image(y, image, min(extra, ALIGN_MAX_OFFSET))
    return y[offset : offset + num_samples(width)], sr, offset


def align_to_image(
    y: np.ndarray, image: np.ndarray, max_offset: int = ALIGN_MAX_OFFSET, n_frames: int = 256
) -> int:
    """Find the sample offset at which ``stft(y[offset:])`` best reproduces ``image``.

    MP3 decoders differ by a delay of some hundred samples, so a recording decoded
    here can be shifted against the decode the dataset's image was made from.
    Compares ``n_frames`` of the image's most energetic columns for every offset in
    ``0 ... max_offset`` and returns the one with the lowest mean absolute error.
    The recording that matches the image is then
    ``y[offset : offset + num_samples(image.shape[1])]``.
    """
    image = np.asarray(image, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    width = image.shape[1]
    n_frames = min(n_frames, width)
    max_shift = max_offset // HOP_LENGTH + 1  # whole hops beyond a sub-hop offset
    # Pick the n_frames-wide run of columns with the most energy (silence matches any offset).
    column_energy = np.concatenate([[0.0], np.cumsum(image.sum(axis=0))])
    run_energy = column_energy[n_frames:] - column_energy[:-n_frames]
    first_column = int(np.argmax(run_energy))
    # The image is mirror-symmetric about DC: rows from DC to +512 carry all of it.
    target = image[CENTER_ROW:, first_column : first_column + n_frames]
    segment = y[first_column * HOP_LENGTH :]

    best_offset, best_error = 0, np.inf
    for sub_hop in range(HOP_LENGTH):
        needed = (n_frames + max_shift - 1) * HOP_LENGTH + WINDOW_LENGTH
        piece = segment[sub_hop : sub_hop + needed]
        if num_frames(len(piece)) < n_frames:
            break
        pixels = np.clip(np.abs(stft(piece)[CENTER_ROW:]), 0.0, 1.0) * 255.0
        for shift in range(min(max_shift, pixels.shape[1] - n_frames + 1)):
            offset = shift * HOP_LENGTH + sub_hop
            if offset > max_offset:
                break
            error = np.mean(np.abs(pixels[:, shift : shift + n_frames] - target))
            if error < best_error:
                best_offset, best_error = offset, error
    return best_offset
