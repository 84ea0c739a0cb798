"""Reading and writing recordings, and the BSD names that tie images to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from utils.common.files import atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
CHANNEL_SUFFIXES = {"_left": "left", "_right": "right"}
_CHANNEL_INDEX = {"left": 0, "right": 1}
_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile command; sndfile.h
WAV_LIMIT_BYTES = (1 << 32) - (1 << 20)  # a RIFF WAV's data must stay below 4 GiB (with headers)


def sniff_audio_format(path: str | Path) -> str | None:
    """Return the container format read from the file's first bytes, not its name.

    One of ``"WAV"``, ``"FLAC"``, ``"OGG"``, ``"MP3"``, or None when unknown.
    BSD stores some recordings as MP3 data behind a ``.wav`` name.
    """
    with open(path, "rb") as handle:
        head = handle.read(12)
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "MP3"
    return None


def load_audio_channels(
    path: str | Path, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Read every channel of a recording (its first ``max_seconds`` only, if given) as
    float64.

    Returns ``(Y, sr)`` with ``Y`` of shape ``(channels, samples)``, any number of
    channels and any bit depth (8/16/24/32-bit PCM, float). The format is taken from
    the content, so MP3 data behind a ``.wav`` name decodes.

    Raises:
        ValueError: naming the file, when it is missing, unreadable, empty or
            holds NaN/inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: audio file not found")
    try:
        # libsndfile detects the format from the content, whatever the file's name says.
        frames = -1 if max_seconds is None else int(sf.info(str(path)).samplerate * max_seconds)
        data, sr = sf.read(str(path), frames=frames, dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError, TypeError) as err:
        raise ValueError(f"{path}: cannot decode audio ({err})") from None
    if data.size == 0:
        raise ValueError(f"{path}: audio holds no samples")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: audio holds NaN or infinite samples")
    return np.ascontiguousarray(data.T), int(sr)


def sample_rate_of(path: str | Path) -> int:
    """A recording's sample rate, read from its header alone.

    Raises:
        ValueError: naming the file, when it is missing or not a readable recording.
    """
    try:
        return int(sf.info(str(path)).samplerate)
    except (RuntimeError, sf.LibsndfileError, OSError, TypeError) as err:
        raise ValueError(f"{path}: cannot read the audio header ({err})") from None


def resample(signals: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """``(channels, samples)`` or ``(samples,)`` signals at ``sr`` resampled to ``target_sr``
    (librosa's default, soxr's high-quality filter), float64; unchanged when equal."""
    if sr == target_sr:
        return signals
    import librosa  # imported here: a second of start-up that most runs never need

    return librosa.resample(np.asarray(signals), orig_sr=sr, target_sr=target_sr, axis=-1)


def load_audio(path: str | Path, channel: str | int | None = None) -> tuple[np.ndarray, int]:
    """Read a recording as a 1-D float64 signal at its own sample rate (no resampling).

    Args:
        path: wav/flac/ogg/mp3 file (the format is sniffed from the content).
        channel: None for mono (a file of two or more channels is averaged to mono),
            ``"left"``/``"right"`` (channel 1/2, as BSD's ``_left``/``_right``
            images), or a 0-based channel index.

    Returns:
        ``(y, sr)``: ``y`` of shape ``(samples,)``, ``sr`` in Hz.
    """
    signals, sr = load_audio_channels(path)
    if channel is None:
        return signals.mean(axis=0) if signals.shape[0] > 1 else signals[0], sr
    index = _CHANNEL_INDEX.get(channel, channel) if isinstance(channel, str) else channel
    if not isinstance(index, int) or not 0 <= index < signals.shape[0]:
        raise ValueError(
            f"{path}: channel {channel!r} requested but the file has {signals.shape[0]} channel(s)"
        )
    return signals[index], sr


def audio_source_for_image(image_name: str | Path) -> tuple[str, str | None]:
    """Map a BSD image name to its recording's stem and channel.

    ``"X_left.png"`` -> ``("X", "left")``, ``"X_right.png"`` -> ``("X", "right")``,
    ``"X.png"`` -> ``("X", None)``.
    """
    stem = Path(image_name).stem
    for suffix, channel in CHANNEL_SUFFIXES.items():
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)], channel
    return stem, None


def find_audio_file(folder: str | Path, stem: str) -> Path | None:
    """Return ``folder/stem.<ext>`` for the first existing audio extension, else None."""
    for ext in AUDIO_EXTENSIONS:
        candidate = Path(folder) / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


def write_audio(path: str | Path, y: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    """Write ``y`` (``(samples,)`` or ``(channels, samples)``) to a WAV/FLAC file.

    ``PCM_16`` is written by exact scaling (``round(y * 32768)``, clipped), so reading
    the file back with :func:`load_audio` returns ``int16 / 32768`` exactly.
    Float WAVs carry no PEAK chunk (it holds a timestamp), so equal signals give
    equal bytes. Writes to a temporary name first and renames, so a crash never
    leaves half a file.
    """
    samples = np.asarray(y, dtype=np.float64)
    channels = 1 if samples.ndim == 1 else samples.shape[0]
    with audio_writer(path, sr, channels, subtype, samples.shape[-1]) as write:
        write(samples)


@contextmanager
def audio_writer(
    path: str | Path, sr: int, channels: int, subtype: str = "PCM_16", expected_samples: int = 0
) -> Iterator[Callable[[np.ndarray], None]]:
    """A function that appends ``(channels, n)`` (or ``(n,)`` mono) blocks to a WAV/FLAC
    file, written as :func:`write_audio` writes, at a temporary name renamed to ``path``
    when the block ends without error (removed otherwise). A WAV expected to pass 4 GB
    (``expected_samples`` per channel) is written as RF64."""
    path = Path(path)
    fmt = path.suffix[1:].upper()
    bytes_per_sample = {"PCM_16": 2, "PCM_24": 3}.get(subtype, 4)
    if fmt == "WAV" and expected_samples * channels * bytes_per_sample > WAV_LIMIT_BYTES:
        fmt = "RF64"

    with (
        atomic_path(path) as tmp,
        sf.SoundFile(str(tmp), "w", int(sr), channels, subtype=subtype, format=fmt) as handle,
    ):
        if subtype in ("FLOAT", "DOUBLE"):
            sf._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)

        def write(block: np.ndarray) -> None:
            samples = np.asarray(block)
            samples = samples.T if samples.ndim == 2 else samples
            handle.write(quantize_pcm16(samples) if subtype == "PCM_16" else samples)

        yield write


def quantize_pcm16(y: np.ndarray) -> np.ndarray:
    """Round a float signal to the 16-bit PCM grid as int16 (scale 32768, clipped)."""
    return np.clip(np.round(np.asarray(y) * 32768.0), -32768, 32767).astype(np.int16)
