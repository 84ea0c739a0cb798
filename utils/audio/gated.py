"""The ``gated`` rendering of recordings: the model's soft mask and a noise gate, applied in
a finer STFT than the data set's.

The BSD STFT's 128-sample window resolves frequencies only about 375 Hz apart at 48 kHz,
so a bird's harmonics share their bins with much noise. Here the model's probabilities (on
the BSD grid) are carried onto a Hann STFT of about 43 ms windows (2,048 samples at 48 kHz,
see :func:`fine_grid`) with a quarter window's hop, and each of its bins gets the gain

    floor + (1 - floor) * clip(P * G, 0, 1)

* ``P``: the probability, widened by the rendering's margin (a maximum filter);
* ``G``: a Wiener gate, ``max(1 - alpha N / |X|^2, 0)``, where ``N`` is the bin's noise
  power: the mean power, at that frequency and within :data:`NOISE_WINDOW_S` seconds
  either side, of the bins the widened probability calls noise (below
  :data:`NOISE_PROBABILITY`); a bin with no such neighbour is not gated;
* ``floor``: ``floor_db`` near what the model keeps (within :data:`NEAR_HZ` and
  :data:`NEAR_MS` of a bin at or above the threshold), ``far_floor_db`` elsewhere.

Everything is local in time: the output samples of a block depend only on the samples and
probabilities within :func:`context_samples` of it, so :func:`block_gains` gives the same
audio whether a recording is rendered at once or a block at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import fft as sp_fft

from utils.audio.conventions import HOP_LENGTH, N_BINS, N_FFT

FINE_WINDOW_S = 0.0427  # the finer STFT's window: the power of two nearest this, in samples
NOISE_WINDOW_S = 5.0  # the noise power is measured this far either side of a bin
NOISE_PROBABILITY = 0.2  # a bin whose widened probability is below this counts as noise
NEAR_HZ, NEAR_MS = 500.0, 300.0  # the near floor holds this close to what the model keeps


@dataclass(frozen=True)
class GateSettings:
    """The parameters of the ``gated`` rendering (see the module docstring)."""

    floor_db: float
    far_floor_db: float
    alpha: float
    margin_hz: float
    margin_ms: float
    threshold: float


def fine_grid(sr: int) -> tuple[int, int]:
    """The finer STFT's window (= FFT) length and hop at sample rate ``sr``."""
    n_fft = 2 ** max(6, round(math.log2(sr * FINE_WINDOW_S)))
    return n_fft, n_fft // 4


def _frames(seconds_or_hz: float, per_unit: float) -> int:
    return int(round(seconds_or_hz * per_unit))


def _context_frames(settings: GateSettings, sr: int) -> tuple[int, int, int, int, int]:
    """(margin, near, noise window) half-widths in fine frames, and the margin's and the
    near floor's half-widths in fine bins."""
    n_fft, hop = fine_grid(sr)
    frames_per_ms = sr / hop / 1000.0
    margin_t = _frames(settings.margin_ms, frames_per_ms)
    near_t = _frames(NEAR_MS, frames_per_ms)
    noise_t = _frames(NOISE_WINDOW_S * 1000.0, frames_per_ms)
    bins_per_hz = n_fft / sr
    return (
        margin_t,
        near_t,
        noise_t,
        _frames(settings.margin_hz, bins_per_hz),
        _frames(NEAR_HZ, bins_per_hz),
    )


def _reach(settings: GateSettings, sr: int) -> int:
    """Fine frames either side of a frame that its gain depends on (plus one)."""
    margin_t, near_t, noise_t, _, _ = _context_frames(settings, sr)
    return max(noise_t + margin_t, near_t) + 1


def context_samples(settings: GateSettings, sr: int) -> int:
    """How many samples (and BSD frames' worth of probabilities) either side of a block
    :func:`block_gains` needs to render it as a whole recording's rendering would."""
    n_fft, hop = fine_grid(sr)
    return _reach(settings, sr) * hop + n_fft + hop


@dataclass(frozen=True)
class FineGains:
    """The gain of each bin of fine frames ``first ... first + len(gains) - 1``, for output
    samples ``keep[0] ... keep[1] - 1`` of a recording of ``total`` samples."""

    gains: np.ndarray  # (frames, n_fft / 2 + 1) float32
    first: int
    sr: int
    keep: tuple[int, int]
    total: int
    spectrum: np.ndarray = field(repr=False)  # the same frames of the signal they came from

    def rendered(self) -> np.ndarray:
        """The signal these gains were computed from, rendered: float32 samples
        ``keep[0] ... keep[1] - 1`` (as :meth:`apply` of that signal, without its STFT)."""
        n_fft, hop = fine_grid(self.sr)
        return _overlap_add(self.spectrum * self.gains, self.first, n_fft, hop, self.keep)

    def apply(self, samples: np.ndarray, start: int = 0) -> np.ndarray:
        """``samples`` (from sample ``start``, covering ``keep``'s frames) with these gains:
        float32 samples ``keep[0] ... keep[1] - 1``."""
        n_fft, hop = fine_grid(self.sr)
        last = self.first + len(self.gains)
        spectrum = _spectrum(samples, start, self.total, self.first, last, n_fft, hop)
        return _overlap_add(spectrum * self.gains, self.first, n_fft, hop, self.keep)


def block_gains(
    samples: np.ndarray,
    start: int,
    probability: np.ndarray,
    first_frame: int,
    sr: int,
    settings: GateSettings,
    keep: tuple[int, int],
    total: int,
    region: np.ndarray | None = None,
) -> FineGains:
    """The gains that render samples ``keep[0] ... keep[1] - 1`` of a recording of ``total``
    samples: ``block_gains(samples, start, ...).rendered()`` is that rendering, and
    :meth:`FineGains.apply` renders another signal (e.g. its noise) with the same gains.

    Args:
        samples: the recording's samples ``start ... start + len - 1``; they must cover
            ``keep`` widened by :func:`context_samples` (within the recording).
        probability: ``(513, F)`` clean-sound probabilities of bins 0 ... 512 of the BSD
            frames ``first_frame ... first_frame + F - 1``, covering the same span.
        region: optional bool ``(513, F)``: where anything may pass (a box prompt).
    """
    n_fft, hop = fine_grid(sr)
    margin_t, near_t, noise_t, margin_b, near_b = _context_frames(settings, sr)
    context = _reach(settings, sr)
    n_frames = -(-(total + n_fft - hop) // hop)  # frame j covers j hop - (n_fft - hop) ...
    kept_first = keep[0] // hop
    kept_last = min(n_frames - 1, (keep[1] - 1) // hop + n_fft // hop - 1)
    a, b = max(0, kept_first - context), min(n_frames, kept_last + context + 1)
    spectrum = _spectrum(samples, start, total, a, b, n_fft, hop)
    power = spectrum.real**2 + spectrum.imag**2
    centres = np.arange(a, b) * hop + hop - n_fft // 2
    fine = _on_fine_grid(probability, first_frame, centres, n_fft)
    widened = _widen(fine, margin_t, margin_b)
    inner = slice(kept_first - a, kept_last + 1 - a)
    noise = _noise_power(power, widened < NOISE_PROBABILITY, noise_t, inner)
    power = power[inner]
    ratio = np.ones_like(power)
    np.divide(settings.alpha * noise, power, out=ratio, where=(noise > 0) & (power > 0))
    gate = np.where(noise > 0, np.clip(1.0 - ratio, 0.0, 1.0), np.float32(1.0))
    near = _widen((fine >= settings.threshold).astype(np.uint8), near_t, near_b)[inner] > 0
    floor = np.where(near, _amplitude(settings.floor_db), _amplitude(settings.far_floor_db))
    gains = floor + (1.0 - floor) * np.clip(widened[inner] * gate, 0.0, 1.0)
    if region is not None:
        gains *= _on_fine_grid(region.astype(np.float32), first_frame, centres[inner], n_fft) > 0.5
    return FineGains(gains.astype(np.float32), kept_first, sr, keep, total, spectrum[inner])


def _amplitude(db: float) -> np.float32:
    return np.float32(0.0 if db == -math.inf else 10.0 ** (db / 20.0))


def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann


def _spectrum(
    samples: np.ndarray, start: int, total: int, a: int, b: int, n_fft: int, hop: int
) -> np.ndarray:
    """``(b - a, n_fft / 2 + 1)`` complex64 STFT of fine frames ``a ... b - 1`` (zeros
    outside the recording)."""
    first = a * hop - (n_fft - hop)
    length = (b - a - 1) * hop + n_fft
    padded = np.zeros(length, np.float32)
    lo, hi = max(first, 0), min(first + length, total)
    if lo < start or hi > start + len(samples):
        raise ValueError(f"samples {start} ... {start + len(samples)} do not cover {lo} ... {hi}")
    padded[lo - first : hi - first] = samples[lo - start : hi - start]
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    return sp_fft.rfft(frames * _window(n_fft), axis=1)


def _on_fine_grid(
    values: np.ndarray, first_frame: int, centres: np.ndarray, n_fft: int
) -> np.ndarray:
    """``(len(centres), n_fft / 2 + 1)`` float32: ``values`` (bins 0 ... 512 of BSD frames
    from ``first_frame``) at the BSD frames centred on the fine frames' centre samples
    (whole frames: a fine hop is a whole number of BSD hops), linearly interpolated at the
    fine bins' frequencies."""
    columns = (centres - HOP_LENGTH) // HOP_LENGTH - first_frame
    in_time = values[:, np.clip(columns, 0, values.shape[1] - 1)].T  # (frames, 513)
    rows = np.minimum(np.arange(n_fft // 2 + 1) * (N_FFT / n_fft), N_BINS - 1)
    below = np.minimum(rows.astype(np.int64), N_BINS - 2)
    up_weight = (rows - below).astype(np.float32)
    fine = in_time[:, below] * (1 - up_weight)
    fine += in_time[:, below + 1] * up_weight
    return fine.astype(np.float32, copy=False)


def _widen(values: np.ndarray, frames: int, bins: int) -> np.ndarray:
    """Maximum over ``frames`` fine frames and ``bins`` fine bins either side."""
    if not frames and not bins:
        return values
    return cv2.dilate(values, np.ones((2 * frames + 1, 2 * bins + 1), np.uint8))


def _noise_power(
    power: np.ndarray, is_noise: np.ndarray, half_width: int, inner: slice
) -> np.ndarray:
    """Per bin of the ``inner`` frames: the mean power of the noise bins at its frequency
    within ``half_width`` frames (0 where there are none)."""
    weights = is_noise.astype(np.float32)
    sums = _window_sums(power * weights, half_width, inner)
    counts = _window_sums(weights, half_width, inner)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0.5).astype(np.float32)


def _window_sums(values: np.ndarray, half_width: int, inner: slice) -> np.ndarray:
    """Sums of ``values`` (float32 ``(frames, bins)``) over ``half_width`` frames either
    side of each of the ``inner`` frames (frames outside the array count as zero)."""
    sums = cv2.boxFilter(values, cv2.CV_32F, (1, 2 * half_width + 1), normalize=False,
                         borderType=cv2.BORDER_CONSTANT)  # fmt: skip
    return sums[inner]


def _overlap_add(
    spectrum: np.ndarray, first: int, n_fft: int, hop: int, keep: tuple[int, int]
) -> np.ndarray:
    """Samples ``keep[0] ... keep[1] - 1`` of the weighted overlap-add of fine frames
    ``first ...`` (every sample of ``keep`` lies under all its frames)."""
    window = _window(n_fft)
    frames = sp_fft.irfft(spectrum, n=n_fft, axis=1).astype(np.float32) * window
    origin = first * hop - (n_fft - hop)
    out = np.zeros((len(frames) - 1) * hop + n_fft, np.float32)
    for k in range(n_fft // hop):  # frames k, k + n/hop, ... do not overlap one another
        part = frames[k :: n_fft // hop].reshape(-1)
        out[k * hop : k * hop + len(part)] += part
    squared = (window**2).reshape(-1, hop).sum(axis=0)  # the same for every sample
    out /= np.tile(squared, len(out) // hop + 1)[: len(out)]
    return out[keep[0] - origin : keep[1] - origin]
