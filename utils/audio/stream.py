"""Reading a recording of any length in blocks, and its BSD STFT frame by frame.

:func:`recording_blocks` decodes a file in fixed blocks of samples, resampled on the
fly (soxr's streaming resampler, whose output does not depend on how the input is
cut), so a recording is never held whole. :class:`FrameStream` turns those blocks into
STFT planes for increasing ranges of frames, keeping only the samples still needed.
:func:`scan_recording` reads a recording once for what must be known before it is
segmented: its length, whether each channel is silent, its peak, and the level
statistics of :mod:`utils.audio.level` on evenly spaced frames. A recording is a file, or
an :class:`AudioArray` held in memory, read the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from utils.audio.bsd import magnitude_pixels
from utils.audio.conventions import HOP_LENGTH, WINDOW_LENGTH, num_frames
from utils.audio.kernel import frame_planes
from utils.audio.level import MAX_FRAMES, band_statistics, gain_from_statistics, lower_medians
from utils.common.buffers import TimeBuffer

BLOCK_SAMPLES = 1 << 16  # samples decoded per read
# soxr's high quality, as librosa's default resampling.
RESAMPLE_QUALITY = "HQ"


@dataclass(frozen=True, eq=False)
class AudioArray:
    """A recording in memory: float ``(channels, n)`` ``samples`` at ``sr`` Hz, read in blocks
    as a file is (float32); ``label`` names it in messages, as a file's path does."""

    samples: np.ndarray
    sr: int
    label: str = "<array>"

    def __post_init__(self) -> None:
        shape = self.samples.shape
        if len(shape) != 2 or not shape[0] or not np.issubdtype(self.samples.dtype, np.floating):
            raise ValueError(f"{self.label}: expected float (channels, samples), got "
                             f"{self.samples.dtype} {shape}")  # fmt: skip
        if not self.sr > 0:
            raise ValueError(f"{self.label}: the sample rate must be above 0, got {self.sr}")

    def __str__(self) -> str:
        return self.label


Recording = str | Path | AudioArray  # what the functions here read


@dataclass(frozen=True)
class RecordingInfo:
    """What a recording's header says: its rate, channels and length in samples."""

    path: Path | AudioArray
    sr: int
    channels: int
    samples: int
    subtype: str

    @property
    def seconds(self) -> float:
        return self.samples / self.sr if self.sr else 0.0


def recording_info(path: Recording) -> RecordingInfo:
    """The header of a recording (of an :class:`AudioArray`: its shape, subtype ``FLOAT``).

    Raises:
        ValueError: naming the file, when it is missing or not a readable recording.
    """
    if isinstance(path, AudioArray):
        channels, samples = path.samples.shape
        return RecordingInfo(path, int(path.sr), channels, samples, "FLOAT")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError, OSError, TypeError) as err:
        raise ValueError(f"{path}: cannot decode audio ({err})") from None
    return RecordingInfo(path, int(info.samplerate), int(info.channels), int(info.frames),
                         str(info.subtype))  # fmt: skip


def resampled_length(samples: int, sr: int, target_sr: int) -> int:
    """About how many samples a recording has once resampled (exact without resampling)."""
    return samples if sr == target_sr else int(round(samples * target_sr / sr))


def recording_blocks(
    path: Recording, target_sr: int | None = None, block: int = BLOCK_SAMPLES
) -> Iterator[np.ndarray]:
    """A recording's samples as float32 ``(channels, n)`` blocks, at ``target_sr`` when
    given (else its own rate). Blocks may differ in length; their concatenation does
    not depend on ``block``.

    Raises:
        ValueError: naming the file, when it cannot be decoded or holds NaN or infinite
            samples (with the time of the first).
    """
    info = recording_info(path)
    resampler = None
    if target_sr and target_sr != info.sr:
        import soxr  # imported here: most runs never resample

        resampler = soxr.ResampleStream(
            info.sr, target_sr, info.channels, dtype="float32", quality=RESAMPLE_QUALITY
        )
    read = 0
    try:
        with _reader(path) as read_frames:
            while True:
                data = read_frames(block)
                last = len(data) < block
                if not np.all(np.isfinite(data)):
                    bad = read + int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
                    raise ValueError(
                        f"{path}: audio holds NaN or infinite samples (first at "
                        f"{bad / info.sr:.3f} s)"
                    )
                read += len(data)
                if resampler is not None:
                    data = resampler.resample_chunk(data, last=last)
                if len(data):
                    yield np.ascontiguousarray(data.T)
                if last:
                    return
    except (RuntimeError, sf.LibsndfileError, OSError, TypeError) as err:
        raise ValueError(f"{path}: cannot decode audio ({err})") from None


@contextmanager
def _reader(path: Recording) -> Iterator[Callable[[int], np.ndarray]]:
    """A function that reads the next ``n`` samples of a recording as float32 ``(n, channels)``
    (fewer at its end)."""
    if not isinstance(path, AudioArray):
        with sf.SoundFile(str(path)) as handle:
            yield lambda n: handle.read(n, dtype="float32", always_2d=True)
        return
    position = 0

    def read(n: int) -> np.ndarray:
        nonlocal position
        data = np.ascontiguousarray(path.samples[:, position : position + n].T, np.float32)
        position += len(data)
        return data

    yield read


class FrameStream:
    """STFT planes of a stream of ``(channels, n)`` sample blocks, frame range by frame
    range. Frame ``t`` covers samples ``64 t ... 64 t + 127``, as :func:`stft_planes`."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self._blocks = blocks
        self._samples: TimeBuffer | None = None  # samples from self._first on
        self._first = 0
        self.exhausted = False

    def _read_until(self, end_sample: int) -> None:
        while not self.exhausted and self._end < end_sample:
            block = next(self._blocks, None)
            if block is None:
                self.exhausted = True
                continue
            if self._samples is None:
                self._samples = TimeBuffer((block.shape[0], 0), 1, np.float32)
            self._samples.append(block, block.shape[1])

    @property
    def _end(self) -> int:
        return self._first + (0 if self._samples is None else len(self._samples))

    def samples(self, start: int, stop: int) -> np.ndarray:
        """A copy of samples ``start ... stop - 1`` of every channel, ``(channels, n)``;
        shorter at the recording's end. ``start`` must not precede what :meth:`release`
        let go."""
        self._read_until(stop)
        if start < self._first:
            raise ValueError(f"samples from {start} were released (kept from {self._first})")
        if self._samples is None:
            return np.zeros((0, 0), np.float32)
        return self._samples.view()[:, start - self._first : stop - self._first].copy()

    def planes(self, first: int, stop: int) -> list[np.ndarray]:
        """Each channel's ``(2, n, 513)`` planes of frames ``first ... stop - 1`` (fewer when
        the recording ends before)."""
        chunk = self.samples(first * HOP_LENGTH, (stop - 1) * HOP_LENGTH + WINDOW_LENGTH)
        n = num_frames(chunk.shape[1])
        return [_planes_of(channel, n) for channel in chunk]

    def release(self, before_sample: int) -> None:
        """Forget the samples before ``before_sample``."""
        drop = before_sample - self._first
        if self._samples is not None and drop > 0:
            self._samples.drop(drop)
            self._first = before_sample


def _planes_of(y: np.ndarray, n_frames: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(y, WINDOW_LENGTH)[::HOP_LENGTH]
    return frame_planes(windows[:n_frames])


@dataclass
class RecordingScan:
    """One pass over a recording: its exact length, each channel's level gain (see
    :func:`utils.audio.level.level_gain`), peak and whether it is silent."""

    samples: int
    gains: list[float]
    peaks: list[float]
    measured_frames: int = 0  # frames the level statistics were taken on, per channel
    bin_medians: list[np.ndarray] = field(default_factory=list)  # per channel, when asked

    def floors(self, channel: int, gain: float) -> np.ndarray:
        """The channel's :func:`utils.audio.level.image_floors` in an image made with
        ``gain``."""
        return magnitude_pixels(self.bin_medians[channel].copy(), gain)

    @property
    def silent(self) -> list[bool]:
        return [peak == 0.0 for peak in self.peaks]


def scan_recording(
    path: Recording, target_sr: int, channels: int, estimate: int, medians: bool = False
) -> RecordingScan:
    """Read a recording at ``target_sr`` once (``estimate``: about how many samples it has
    there) for its length, peaks, level gains and (``medians``) each bin's lower median
    magnitude, for :meth:`RecordingScan.floors`. The level statistics use frames
    ``0, s, 2 s ...`` with ``s = max(1, num_frames(estimate) // MAX_FRAMES)``, as
    :func:`utils.audio.level.band_statistics` spaces them on a whole recording; ``s``
    doubles whenever more than twice :data:`MAX_FRAMES` frames are picked (a header
    that understates the length), so memory stays bounded.

    Raises:
        ValueError: as :func:`recording_blocks`, or naming the file when it is shorter
            than one STFT window.
    """
    step = max(1, num_frames(estimate) // MAX_FRAMES)
    stride = step * HOP_LENGTH
    picked: list[list[np.ndarray]] = [[] for _ in range(channels)]
    peaks = [0.0] * channels
    carry = np.zeros((channels, 0), np.float32)  # the samples from sample `held` on
    held = next_pick = total = 0  # next_pick: the first sample of the next picked frame
    for block in recording_blocks(path, target_sr):
        total += block.shape[1]
        for c in range(channels):
            peaks[c] = max(peaks[c], float(np.max(np.abs(block[c])))) if block.size else peaks[c]
        carry = np.concatenate([carry, block], axis=1)
        end = held + carry.shape[1]
        count = max(0, (end - WINDOW_LENGTH - next_pick) // stride + 1)
        if count:
            offsets = next_pick - held + stride * np.arange(count)
            for c in range(channels):
                windows = np.lib.stride_tricks.sliding_window_view(carry[c], WINDOW_LENGTH)
                picked[c].append(windows[offsets])
            next_pick += count * stride
        if sum(map(len, picked[0])) > 2 * MAX_FRAMES:  # the header understated the length
            picked = [[np.concatenate(windows)[::2]] for windows in picked]
            next_pick += stride * ((next_pick // stride) % 2)  # onto the doubled grid
            stride *= 2
        drop = min(next_pick - held, carry.shape[1])
        carry, held = carry[:, drop:], held + drop
    if total == 0:
        raise ValueError(f"{path}: audio holds no samples")
    if num_frames(total) == 0:
        raise ValueError(
            f"{path}: {total} samples is shorter than one STFT window ({WINDOW_LENGTH})"
        )
    gains, bin_medians = [], []
    for c in range(channels):
        planes = frame_planes(np.concatenate(picked[c]))
        gains.append(gain_from_statistics(*band_statistics(planes, target_sr, step=1)))
        if medians:
            bin_medians.append(lower_medians(cv2.magnitude(planes[0], planes[1]), axis=0))
    return RecordingScan(total, gains, peaks, planes.shape[1], bin_medians)
