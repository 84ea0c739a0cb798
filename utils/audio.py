"""Audio <-> spectrogram image conversions, faithful to the BSD dataset's MATLAB code.

The conventions (see ``shared/reference/BSD_PROTOCOL.md``):

* STFT: symmetric Hamming window of 128 samples, hop 64, FFT length 1024, no
  padding, so ``frames = (N - 128) // 64 + 1``.
* Two-sided spectrum in MATLAB's "centered" order: row ``i`` holds frequency bin
  ``i - 511``, i.e. bins -511 ... +512 from top to bottom.
* Image pixel = ``round(clip(|S|, 0, 1) * 255)`` (no normalisation, no log).
* Mask -> audio: zero every bin where the (resized) mask is 0, then invert by
  weighted overlap-add and keep the real part.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from utils.files import atomic_path

WINDOW_LENGTH = 128
HOP_LENGTH = 64
N_FFT = 1024
WINDOW = np.hamming(WINDOW_LENGTH)  # symmetric, like MATLAB's hamming(128)
# Row i of a centered spectrum holds FFT bin (i - CENTER_ROW): bins -511 ... +512.
CENTER_ROW = N_FFT // 2 - 1
# Rows holding bins 0, -1, ..., -511, -512 (bin -512 is bin +512, the last row).
_NEGATIVE_BIN_ROWS = np.concatenate([np.arange(CENTER_ROW, -1, -1), [N_FFT - 1]])

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
CHANNEL_SUFFIXES = {"_left": "left", "_right": "right"}
_CHANNEL_INDEX = {"left": 0, "right": 1}
_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile command; sndfile.h
# The largest decoder delay :func:`align_to_image` looks for, in samples. A BSD image's
# recording may be longer than the image by this delay plus as much again of padding
# at the end; a longer one is not the image's recording.
ALIGN_MAX_OFFSET = 2048


# ----------------------------------------------------------------------------- loading


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


def load_audio_channels(path: str | Path) -> tuple[np.ndarray, int]:
    """Read every channel of a recording as float64.

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
        data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError, TypeError) as err:
        raise ValueError(f"{path}: cannot decode audio ({err})") from None
    if data.size == 0:
        raise ValueError(f"{path}: audio holds no samples")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: audio holds NaN or infinite samples")
    return np.ascontiguousarray(data.T), int(sr)


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


def write_audio(path: str | Path, y: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    """Write ``y`` (``(samples,)`` or ``(channels, samples)``) to a WAV/FLAC file.

    ``PCM_16`` is written by exact scaling (``round(y * 32768)``, clipped), so reading
    the file back with :func:`load_audio` returns ``int16 / 32768`` exactly.
    Float WAVs carry no PEAK chunk (it holds a timestamp), so equal signals give
    equal bytes. Writes to a temporary name first and renames, so a crash never
    leaves half a file.
    """
    path = Path(path)
    samples = np.asarray(y, dtype=np.float64)
    samples = samples.T if samples.ndim == 2 else samples
    if subtype == "PCM_16":
        samples = quantize_pcm16(samples)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    fmt = path.suffix[1:].upper()
    with (
        atomic_path(path) as tmp,
        sf.SoundFile(str(tmp), "w", int(sr), channels, subtype=subtype, format=fmt) as handle,
    ):
        if subtype in ("FLOAT", "DOUBLE"):
            sf._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)
        handle.write(samples)


def quantize_pcm16(y: np.ndarray) -> np.ndarray:
    """Round a float signal to the 16-bit PCM grid as int16 (scale 32768, clipped)."""
    return np.clip(np.round(np.asarray(y) * 32768.0), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- STFT


def num_frames(n_samples: int) -> int:
    """Number of STFT frames (image width) for a signal of ``n_samples`` samples."""
    return max(0, (int(n_samples) - WINDOW_LENGTH) // HOP_LENGTH + 1)


def num_samples(n_frames: int) -> int:
    """Samples spanned by ``n_frames`` STFT frames: ``(n_frames - 1) * 64 + 128``."""
    return (int(n_frames) - 1) * HOP_LENGTH + WINDOW_LENGTH


# ----------------------------------------------------------------------------- the STFT kernel
#
# A frame has 128 samples zero-padded to 1,024, so its DFT is a product with a
# (128 x 513) matrix, cheaper than an FFT of the padded frame. Measuring each frame's
# phase at its middle (sample 63.5) instead of its first sample makes that product
# real and half as large: with p_n = 63.5 - n and the symmetric window w,
#
#     X_k = exp(-i theta_k 63.5) (A_k + i B_k),          theta_k = 2 pi k / 1024,
#     A_k = sum_{n<64} w_n (x_n + x_{127-n}) cos(theta_k p_n),
#     B_k = sum_{n<64} w_n (x_n - x_{127-n}) sin(theta_k p_n).
#
# |X_k| = |A_k + i B_k|, and weighting bins by a mask commutes with the phase factor,
# so the image and the masked inverse work on the real planes (A, B) directly; the
# inverse is two products of the same size, below. All in float32: a relative error
# near 1e-7, far below an image's 1/255 step or a 16-bit WAV's.

_HALF_WINDOW = WINDOW_LENGTH // 2
_N_BINS = N_FFT // 2 + 1


def _plane_bases() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float32 matrices of the kernel: forward ``(64, 513)`` cosine and sine, window
    folded in; inverse ``(513, 64)`` cosine and sine, with the inverse DFT's bin weights
    (1 at bins 0 and 512, else 2, over 1024) and the synthesis window folded in."""
    n = np.arange(_HALF_WINDOW)[:, None]
    k = np.arange(_N_BINS)[None, :]
    # theta_k p_n = pi k (127 - 2n) / 1024, reduced modulo 2 pi for accuracy.
    angle = np.pi * ((k * (WINDOW_LENGTH - 1 - 2 * n)) % (2 * N_FFT)) / N_FFT
    cos, sin = np.cos(angle), np.sin(angle)
    sin[:, 0] = 0.0  # exact zeros: bin 0 has no sine part, bin 512 no cosine part
    cos[:, -1] = 0.0
    half_window = WINDOW[:_HALF_WINDOW, None]
    bin_weight = np.full((_N_BINS, 1), 2.0 / N_FFT)
    bin_weight[[0, -1]] = 1.0 / N_FFT
    matrices = (
        half_window * cos,
        half_window * sin,
        bin_weight * cos.T * half_window.T,
        bin_weight * sin.T * half_window.T,
    )
    return tuple(m.astype(np.float32) for m in matrices)


_FORWARD_COS, _FORWARD_SIN, _INVERSE_COS, _INVERSE_SIN = _plane_bases()
# Each bin's phase factor exp(-i theta_k 63.5): planes -> the STFT's bins.
_MID_FRAME_PHASE = np.exp(-1j * np.pi * np.arange(_N_BINS) * (WINDOW_LENGTH - 1) / N_FFT)
assert WINDOW_LENGTH == 2 * HOP_LENGTH, "the overlap-add below assumes two hops per window"
_SQUARED_WINDOW_HALVES = (WINDOW**2).reshape(2, HOP_LENGTH).astype(np.float32)
_OVERLAP_GAIN = 1.0 / _SQUARED_WINDOW_HALVES.sum(axis=0)
# Masked inverse: leaving out the frames (the bins) a mask drops pays when it keeps
# less than this fraction of them.
_SKIP_PAYS_BELOW = 0.75


def stft_planes(y: np.ndarray) -> np.ndarray:
    """Bins 0 ... 512 of the BSD STFT as float32 planes ``(2, T, 513)``: ``A`` and ``B``
    with ``stft`` bin k = ``exp(-i pi k 127 / 1024) (A + i B)`` (the phase measured at each
    frame's middle; see the kernel's note). One row per frame.

    Raises:
        ValueError: for a signal that is not 1-D or shorter than one window.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"stft expects a 1-D signal, got shape {y.shape}")
    n_frames = num_frames(len(y))
    if n_frames == 0:
        raise ValueError(
            f"signal of {len(y)} samples is shorter than one STFT window ({WINDOW_LENGTH})"
        )
    frames = np.lib.stride_tricks.sliding_window_view(y, WINDOW_LENGTH)[::HOP_LENGTH][:n_frames]
    head, tail = frames[:, :_HALF_WINDOW], frames[:, : _HALF_WINDOW - 1 : -1]  # x_n, x_{127-n}
    planes = np.empty((2, n_frames, _N_BINS), dtype=np.float32)
    np.matmul(head + tail, _FORWARD_COS, out=planes[0])
    np.matmul(head - tail, _FORWARD_SIN, out=planes[1])
    return planes


def istft_planes(
    planes: np.ndarray, length: int | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`stft_planes`' ``(2, T, 513)`` planes.

    Args:
        planes: ``A`` and ``B`` planes, e.g. from :func:`stft_planes`.
        length: pad with zeros or cut the output to this many samples; by default
            the natural length ``num_samples(T)``.
        weights: ``(T, 513)`` factors for the planes' bins (e.g. :func:`kept_bin_counts`),
            applied first; frames whose weights are all zero and the bins outside
            the range of nonzero weights are left out when that saves work.

    Returns:
        The float64 signal.
    """
    if planes.ndim != 3 or planes.shape[0] != 2 or planes.shape[2] != _N_BINS:
        raise ValueError(f"expected (2, T, {_N_BINS}) planes, got shape {planes.shape}")
    n_frames = planes.shape[1]
    # Parts of samples n and 127 - n (n < 64) that agree (even) and that differ in sign (odd).
    if weights is None:
        even, odd = planes[0] @ _INVERSE_COS, planes[1] @ _INVERSE_SIN
    else:
        even, odd = _weighted_frame_halves(planes, weights)
    # Hop h holds the second half of frame h - 1 plus the first half of frame h, divided
    # by the squared windows that overlap there (one half at either end).
    signal = np.empty((n_frames + 1, HOP_LENGTH), dtype=np.float32)
    np.add(even, odd, out=signal[:-1])
    signal[-1] = 0.0
    signal[1:] += (even - odd)[:, ::-1]
    signal[1:-1] *= _OVERLAP_GAIN
    signal[0] /= _SQUARED_WINDOW_HALVES[0]
    signal[-1] /= _SQUARED_WINDOW_HALVES[1]
    x = signal.reshape(-1).astype(np.float64)
    return x if length is None else fit_length(x, length)


def _weighted_frame_halves(
    planes: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(planes[0] * weights) @ _INVERSE_COS`` and ``(planes[1] * weights) @ _INVERSE_SIN``,
    ``(T, 64)`` each, computed on the range of bins with nonzero weights and on the frames
    with any, each when it is small enough for leaving the rest out to pay (a bird's
    mask keeps a band of bins, often in a small part of the frames)."""
    n_frames = planes.shape[1]
    if weights.shape != planes.shape[1:]:
        raise ValueError(f"weights must be {planes.shape[1:]}, got shape {weights.shape}")
    frames = np.flatnonzero(weights.any(axis=1))
    if frames.size == 0:
        return tuple(np.zeros((n_frames, _HALF_WINDOW), dtype=np.float32) for _ in range(2))
    bins = np.flatnonzero(weights.any(axis=0))
    band = bins[-1] + 1 - bins[0]
    cols = slice(None) if band > _SKIP_PAYS_BELOW * _N_BINS else slice(bins[0], bins[-1] + 1)
    cos, sin = _INVERSE_COS[cols], _INVERSE_SIN[cols]
    if frames.size > _SKIP_PAYS_BELOW * n_frames:
        kept = weights[:, cols]
        return (planes[0][:, cols] * kept) @ cos, (planes[1][:, cols] * kept) @ sin
    even = np.zeros((n_frames, _HALF_WINDOW), dtype=np.float32)
    odd = np.zeros((n_frames, _HALF_WINDOW), dtype=np.float32)
    kept = weights[frames, cols]
    even[frames] = (planes[0][frames, cols] * kept) @ cos
    odd[frames] = (planes[1][frames, cols] * kept) @ sin
    return even, odd


def stft_half(y: np.ndarray) -> np.ndarray:
    """Bins 0 ... 512 of :func:`stft` as a complex ``(513, T)`` array (row k = bin k).

    The other rows of the two-sided spectrum of a real signal are their complex
    conjugates. Computed by :func:`stft_planes` (float32).
    """
    a, b = stft_planes(y)
    return ((a + 1j * b) * _MID_FRAME_PHASE).T


def istft_half(half: np.ndarray, length: int | None = None) -> np.ndarray:
    """Weighted overlap-add inverse of a ``(513, T)`` half spectrum (bins 0 ... 512), like
    ``irfft`` (the imaginary parts of bins 0 and 512 are ignored); see :func:`istft_planes`."""
    if half.ndim != 2 or half.shape[0] != _N_BINS:
        raise ValueError(f"istft_half expects a ({_N_BINS}, T) spectrum, got shape {half.shape}")
    mid_frame = half.T * np.conj(_MID_FRAME_PHASE)
    return istft_planes(np.stack([mid_frame.real, mid_frame.imag]).astype(np.float32), length)


def stft(y: np.ndarray) -> np.ndarray:
    """BSD STFT of a 1-D signal.

    Returns a complex array of shape ``(1024, T)``, ``T = (N - 128) // 64 + 1``,
    rows in MATLAB's centered two-sided order (bins -511 ... +512).
    """
    return two_sided(stft_half(y), conjugate=True)


def two_sided(half: np.ndarray, conjugate: bool = False) -> np.ndarray:
    """Build a centered ``(1024, T)`` array from its bins 0 ... 512 (``(513, T)``).

    Rows for bins -511 ... -1 mirror bins 511 ... 1 (complex-conjugated for a
    spectrum, as for any real signal; copied as they are for a mask or an image).
    """
    full = np.empty((N_FFT,) + half.shape[1:], dtype=half.dtype)
    full[CENTER_ROW:] = half
    mirrored = half[CENTER_ROW:0:-1]
    full[:CENTER_ROW] = np.conj(mirrored) if conjugate else mirrored
    return full


def kept_bin_counts(keep: np.ndarray) -> np.ndarray:
    """How many of the two pixels of each bin 0 ... 512 a two-sided ``(1024, T)`` mask keeps:
    uint8 ``(T, 513)`` in {0, 1, 2}, one row per frame like :func:`stft_planes`' planes
    (bin k shows at row ``CENTER_ROW + k`` of the mask and at its mirror).

    Keeping ``real(ifft)`` of a masked spectrum of a real signal is the same as
    weighting bin k by the mean of the mask at +k and -k: half this count (for a
    mirror-symmetric mask, the mask's own half).
    """
    keep = np.asarray(keep)
    if keep.ndim != 2 or keep.shape[0] != N_FFT:
        raise ValueError(f"expected a ({N_FFT}, T) mask, got shape {keep.shape}")
    rows = (keep if keep.dtype == bool else keep != 0).view(np.uint8)
    counts = rows[CENTER_ROW:].copy()  # bins 0 ... 512
    counts[: CENTER_ROW + 1] += rows[CENTER_ROW::-1]  # bins 0 ... -511
    counts[-1] += rows[-1]  # bin -512 is bin +512
    return cv2.transpose(counts)  # one row per frame


def istft(S: np.ndarray, length: int | None = None) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add; returns the real part.

    Args:
        S: complex ``(1024, T)`` spectrum in centered order.
        length: pad with zeros or cut the output to this many samples; by default
            the natural length ``num_samples(T)``.
    """
    if S.ndim != 2 or S.shape[0] != N_FFT:
        raise ValueError(f"istft expects a ({N_FFT}, T) spectrum, got shape {S.shape}")
    # real(ifft(X)) = irfft of X's Hermitian part (X[k] + conj(X[-k])) / 2, k = 0 ... 512.
    return istft_half((S[CENTER_ROW:] + np.conj(S[_NEGATIVE_BIN_ROWS])) / 2, length)


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Cut ``x`` to ``length`` samples or pad it with trailing zeros."""
    if len(x) >= length:
        return x[:length]
    return np.concatenate([x, np.zeros(length - len(x), dtype=x.dtype)])


# ----------------------------------------------------------------------------- images and masks


def frame_at(seconds: float, sr: int) -> float:
    """The (fractional) STFT frame, i.e. image column, whose window is centred at ``seconds``.

    Frame ``t`` spans samples ``64 t ... 64 t + 127``, centred on sample ``64 t + 64``.
    """
    return float(seconds) * sr / HOP_LENGTH - 1.0


def bin_at(hertz: float, sr: int) -> float:
    """The (fractional) frequency bin of ``hertz``: bin ``k`` is ``k * sr / 1024`` Hz, and is
    image row ``CENTER_ROW + k`` (``CENTER_ROW - k`` for its mirror)."""
    return float(hertz) * N_FFT / sr


def band_extent(
    seconds: tuple[float, float], hertz: tuple[float, float], sr: int, width: int
) -> tuple[int, int, int, int]:
    """Columns ``x0 ... x1 - 1`` and bins ``k0 ... k1`` of a time span and frequency band
    in a ``(1024, width)`` BSD image: ``(x0, x1, k0, k1)``.

    Raises:
        ValueError: for an empty or reversed span or band, or one outside the image.
    """
    (t0, t1), (f0, f1) = seconds, hertz
    if not (0 <= t0 < t1 and 0 <= f0 < f1):
        raise ValueError(f"box needs 0 <= T0 < T1 and 0 <= F0 < F1, got {t0} {t1} {f0} {f1}")
    if f0 >= sr / 2:
        raise ValueError(f"box band {f0}-{f1} Hz lies above the Nyquist frequency {sr / 2:g} Hz")
    x0 = max(0, int(np.floor(frame_at(t0, sr))))
    x1 = min(width, int(np.ceil(frame_at(t1, sr))) + 1)
    if x1 <= x0:
        raise ValueError(f"box time span {t0}-{t1} s lies past the recording's end")
    k0 = int(np.floor(bin_at(f0, sr)))
    k1 = min(N_FFT // 2, int(np.ceil(bin_at(f1, sr))))
    return x0, x1, k0, k1


def band_box(
    seconds: tuple[float, float],
    hertz: tuple[float, float],
    sr: int,
    width: int,
    half_spectrum: bool = False,
) -> np.ndarray:
    """Box prompt ``[x0, y0, x1, y1]`` (image pixels, ends exclusive) for a time span and
    frequency band of a ``(1024, width)`` BSD image (see :func:`band_extent`).

    The two-sided image shows the band twice, mirrored about the centre row, so the
    box spans from -F1 to +F1; with ``half_spectrum`` (a model that sees bins
    0 ... 512 only) it spans the band itself, F0 to F1.
    """
    x0, x1, k0, k1 = band_extent(seconds, hertz, sr, width)
    y0 = CENTER_ROW + k0 if half_spectrum else CENTER_ROW - min(k1, CENTER_ROW)
    return np.array([x0, y0, x1, CENTER_ROW + k1 + 1], dtype=np.float32)


def band_region(
    seconds: tuple[float, float], hertz: tuple[float, float], sr: int, width: int
) -> np.ndarray:
    """Bool ``(1024, width)``: the pixels of a time span and band, in both mirrored halves."""
    x0, x1, k0, k1 = band_extent(seconds, hertz, sr, width)
    half = np.zeros((N_FFT // 2 + 1, width), dtype=bool)
    half[k0 : k1 + 1, x0:x1] = True
    return two_sided(half)


def spectrogram_to_image(S: np.ndarray) -> np.ndarray:
    """BSD image of a spectrum: ``uint8 round(clip(|S|, 0, 1) * 255)``, same shape as ``S``."""
    return np.ascontiguousarray(_magnitude_pixels(np.abs(S)))


def planes_to_image(planes: np.ndarray) -> np.ndarray:
    """The BSD image of :func:`stft_planes`' planes: the ``(1024, T)`` two-sided image of
    ``stft`` (the phase factor does not change magnitudes)."""
    pixels = _magnitude_pixels(cv2.magnitude(planes[0], planes[1]))  # (T, 513)
    return two_sided(cv2.transpose(pixels))


def _magnitude_pixels(magnitude: np.ndarray) -> np.ndarray:
    """``uint8 round(clip(magnitude, 0, 1) * 255)``, rounding halves up like MATLAB's
    im2uint8; ``magnitude`` (float) is overwritten."""
    np.minimum(magnitude, 1.0, out=magnitude)
    magnitude *= 255.0
    magnitude += 0.5  # truncating x + 0.5 (x >= 0) rounds halves up
    return magnitude.astype(np.uint8)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask to ``shape`` (rows, cols) like MATLAB's ``imresize`` of a uint8 mask.

    Bicubic interpolation of the 0/255 image; a pixel stays 0 when the resized
    uint8 value would round to 0 (the dataset tests ``mask < 1``).
    """
    keep = (np.asarray(mask) > 0).astype(np.float32) * 255.0
    resized = cv2.resize(keep, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return resized >= 0.5


def mask_for_spectrum(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A binary mask as a bool array of ``shape``, resized (:func:`resize_mask`) if needed.

    ``mask`` may be bool, {0, 1} or {0, 255}; nonzero means keep. A bool mask of
    ``shape`` is returned as it is, not copied.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if mask.shape != tuple(shape):
        return resize_mask(mask, shape)
    return mask if mask.dtype == bool else mask > 0


def apply_mask(S: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the bins of ``S`` where ``mask`` is 0 (a copy; ``S`` is unchanged).

    ``mask`` is binary (bool, {0, 1} or {0, 255}); it is resized to ``S.shape`` first
    when the shapes differ.
    """
    return np.where(mask_for_spectrum(mask, S.shape), S, 0)


def mask_to_audio(
    y: np.ndarray, mask: np.ndarray, length: int | None = None, planes: np.ndarray | None = None
) -> np.ndarray:
    """The dataset's image2audio: keep the masked bins of ``stft(y)`` and invert.

    ``mask`` is a two-sided binary mask (``(1024, T)``, or any size, then resized as
    :func:`apply_mask` does). Returns the denoised signal, ``len(y)`` samples long
    unless ``length`` is given (samples past the last full STFT frame are zero).
    Equal to ``istft(apply_mask(stft(y), mask))``, computed on half the bins;
    ``planes`` is ``stft_planes(y)`` when the caller has it already.
    """
    planes = stft_planes(y) if planes is None else planes
    keep = mask_for_spectrum(mask, (N_FFT, planes.shape[1]))
    length = len(y) if length is None else length
    counts = kept_bin_counts(keep)  # twice the weights: halved after the inverse
    return 0.5 * istft_planes(planes, length, weights=counts)


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
