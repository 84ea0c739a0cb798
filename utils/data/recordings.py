"""Folders of a user's own recordings (clean calls, site noise) as mixing material."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.audio import io as audio_io
from utils.audio.conventions import WINDOW_LENGTH

MAX_SOURCE_SECONDS = 120.0  # of each file: what one decoded source may hold
SILENT_STRETCH_DB = -30.0  # a clip's stretch this far below the clip's peak holds no call
DECODED_KEPT = 16  # decoded sources kept per process (so at most ~740 MB at 48 kHz)


def audio_files(folder: str | Path) -> list[Path]:
    """The recordings in ``folder``, sorted by name.

    Raises:
        ValueError: naming the folder, when it is missing or holds none.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in audio_io.AUDIO_EXTENSIONS)
    if not files:
        raise ValueError(f"{folder}: holds no recordings ({', '.join(audio_io.AUDIO_EXTENSIONS)})")
    return files


def load_mono(path: str | Path, sr: int, max_seconds: float | None = None) -> np.ndarray:
    """A recording (its first ``max_seconds``, if given) as one channel (the channels'
    mean) at ``sr``."""
    signals, own_sr = audio_io.load_audio_channels(path, max_seconds)
    return audio_io.resample(signals.mean(axis=0), own_sr, sr)


@functools.lru_cache(maxsize=DECODED_KEPT)
def load_mono_cached(path: str, sr: int) -> np.ndarray:
    """The first :data:`MAX_SOURCE_SECONDS` of a recording as :func:`load_mono` gives them;
    the last :data:`DECODED_KEPT` files and rates decoded are kept (read-only)."""
    signal = load_mono(path, sr, MAX_SOURCE_SECONDS)
    signal.flags.writeable = False
    return signal


def noise_stretch(
    noise: np.ndarray, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """``length`` samples of ``noise`` from a random offset (looped when it is shorter),
    and the offset."""
    offset = int(rng.integers(0, len(noise)))
    looped = np.tile(noise, length // len(noise) + 2)
    return looped[offset : offset + length], offset


def user_clip(rng: np.random.Generator, files: tuple[str, ...], sr: int, n: int) -> np.ndarray:
    """``n`` samples holding one of the user's clean clips (a random stretch of a longer
    one, a shorter one at a random place), peak 1; zeros when the stretch holds no call
    (its peak :data:`SILENT_STRETCH_DB` below the clip's: background between calls)."""
    clip = load_mono_cached(files[int(rng.integers(0, len(files)))], sr)
    song = np.zeros(n)
    if len(clip) >= n:
        start = int(rng.integers(0, len(clip) - n + 1))
        song[:] = clip[start : start + n]
    else:
        start = int(rng.integers(0, n - len(clip) + 1))
        song[start : start + len(clip)] = clip
    peak = np.max(np.abs(song))
    if peak <= np.max(np.abs(clip)) * 10 ** (SILENT_STRETCH_DB / 20):
        return np.zeros(n)
    return song / (peak + 1e-12)


def usable_recordings(folder: str | Path) -> tuple[list[Path], list[str]]:
    """The recordings of ``folder`` whose first :data:`MAX_SOURCE_SECONDS` (the part
    mixed) decode, last at least one STFT window and are not silent, and one line per
    file skipped (naming it and why).

    Raises:
        ValueError: naming the folder, when it is missing, holds no recordings, or none
            is usable.
    """
    usable, skipped = [], []
    for path in audio_files(folder):
        try:
            signals, _ = audio_io.load_audio_channels(path, MAX_SOURCE_SECONDS)
        except ValueError as err:
            skipped.append(str(err))
            continue
        if signals.shape[-1] < WINDOW_LENGTH:
            skipped.append(f"{path}: shorter than one STFT window")
        elif not np.any(signals.mean(axis=0)):  # what is mixed is the channels' mean
            skipped.append(f"{path}: silent")
        else:
            usable.append(path)
    if not usable:
        raise ValueError(f"{folder}: no usable recording ({len(skipped)} skipped)")
    return usable, skipped


@dataclass(frozen=True)
class UserSounds:
    """A user's clean bird clips and site noise recordings, mixed into a synthetic
    training split in place of the built-in birds and noise (each half the time)."""

    bird_files: tuple[str, ...] = ()
    noise_files: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_folders(cls, bird_dir: str | None, noise_dir: str | None) -> UserSounds:
        """The usable recordings of the folders given (None: none of that kind); skipped
        files are listed in ``skipped``.

        Raises:
            ValueError: naming the folder, when a folder given holds no usable recording.
        """
        files: dict[str, tuple[str, ...]] = {}
        skipped: list[str] = []
        for kind, folder in (("bird_files", bird_dir), ("noise_files", noise_dir)):
            if folder is None:
                files[kind] = ()
                continue
            usable, problems = usable_recordings(folder)
            files[kind] = tuple(str(p.resolve()) for p in usable)
            skipped += problems
        return cls(files["bird_files"], files["noise_files"], tuple(skipped))

    def __bool__(self) -> bool:
        return bool(self.bird_files or self.noise_files)

    def describe(self) -> dict:
        """What identifies these sounds: each file's path, size and modification time
        (JSON-ready)."""
        stats = {path: Path(path).stat() for path in self.bird_files + self.noise_files}
        return {
            kind: [[path, stats[path].st_size, stats[path].st_mtime_ns] for path in paths]
            for kind, paths in (("bird_files", self.bird_files), ("noise_files", self.noise_files))
        }

    def warn_skipped(self) -> None:
        """Print one warning line per skipped file, and their count."""
        for line in self.skipped:
            print(f"warning: skipped: {line}", file=sys.stderr)
        if self.skipped:
            print(f"warning: {len(self.skipped)} recordings skipped", file=sys.stderr)


NO_USER_SOUNDS = UserSounds()  # the built-in sounds only
