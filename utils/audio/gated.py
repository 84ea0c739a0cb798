"""The ``gated`` rendering of recordings: the model's soft mask and a noise gate, applied in
a finer STFT than the data set's.

The BSD STFT's 128-sample window resolves frequencies only about 375 Hz apart at 48 kHz,
so a bird's harmonics share their bins with much noise. Here the model's probabilities (on
the BSD grid) are carried onto a Hann STFT of about 43 ms windows (2,048 samples at 48 kHz,
see :func:`fine_grid`) with a hop of a quarter window (``hops`` 4) or half a window
(``hops`` 2: half the work, for speed), and each of its bins gets the gain

    floor + (1 - floor) * clip(P ** gamma * smooth(G), 0, 1)

* ``P``: the probability, widened by the rendering's margin (a maximum filter), raised to
  ``gamma`` (below 1: the bins the model is unsure of keep more);
* ``G``: a Wiener gate, ``max(1 - alpha N / |X|^2, 0)``, where ``N`` is the bin's noise
  power: the mean power, at that frequency and within :data:`NOISE_WINDOW_S` seconds
  either side, of the bins the widened probability calls noise (below
  :data:`NOISE_PROBABILITY`). Where the model calls none of them noise (a cicada band it
  takes for a bird, say), ``N`` is the geometric mean power of all of them raised by
  :data:`UNLABELLED_NOISE_DB`: only what stands well out of that stretch passes. With
  ``chorus_share``, where the model keeps (at or above the threshold) more than that share
  of the frames within the same window at a frequency, ``N`` is at least the mean power of
  all of them there: a pulsing chorus the model takes for a bird (cicadas, crickets) is
  gated as noise, and a call standing out of it passes;
* ``smooth``: the mean over ``smooth_hz`` above and below and ``smooth_ms`` before and
  after (a box filter; none by default): fewer isolated bins flicker on and off;
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

from utils.audio.conventions import HOP_LENGTH, N_BINS, N_FFT, num_frames

FINE_WINDOW_S = 0.0427  # the finer STFT's window: the power of two nearest this, in samples
NOISE_WINDOW_S = 5.0  # the noise power is measured this far either side of a bin
NOISE_PROBABILITY = 0.2  # a bin whose widened probability is below this counts as noise
NEAR_HZ, NEAR_MS = 500.0, 300.0  # the near floor holds this close to what the model keeps
UNLABELLED_NOISE_DB = 15.0  # N over the geometric mean power where no bin is called noise


@dataclass(frozen=True)
class GateSettings:
    """The parameters of the ``gated`` rendering (see the module docstring)."""

    floor_db: float
    far_floor_db: float
    alpha: float
    margin_hz: float
    margin_ms: float
    threshold: float
    hops: int = 4  # fine frames over each sample: the fine hop is the window over this
    gamma: float = 1.0  # the exponent of the widened probability in the gain
    smooth_hz: float = 0.0  # the gate is averaged over this much above and below
    smooth_ms: float = 0.0  # and this much before and after
    chorus_share: float | None = None  # a band kept this often counts as a chorus (None: off)


HOPS = (2, 4)  # the fine hops allowed: half and a quarter of a window


def fine_grid(sr: int, hops: int = 4) -> tuple[int, int]:
    """The finer STFT's window (= FFT) length and hop at sample rate ``sr``, with ``hops``
    (one of :data:`HOPS`) frames over each sample."""
    if hops not in HOPS:
        raise ValueError(f"the gate's hops must be one of {HOPS}, got {hops}")
    n_fft = 2 ** max(6, round(math.log2(sr * FINE_WINDOW_S)))
    return n_fft, n_fft // hops


def _frames(seconds_or_hz: float, per_unit: float) -> int:
    return int(round(seconds_or_hz * per_unit))


def _context_frames(settings: GateSettings, sr: int) -> tuple[int, int, int, int, int]:
    """(margin, near, noise window) half-widths in fine frames, and the margin's and the
    near floor's half-widths in fine bins."""
    n_fft, hop = fine_grid(sr, settings.hops)
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


def _smooth_size(settings: GateSettings, sr: int) -> tuple[int, int]:
    """The gate's smoothing half-widths in (fine frames, fine bins)."""
    n_fft, hop = fine_grid(sr, settings.hops)
    return _frames(settings.smooth_ms, sr / hop / 1000.0), _frames(settings.smooth_hz, n_fft / sr)


def _reach(settings: GateSettings, sr: int) -> int:
    """Fine frames either side of a frame that its gain depends on (plus one)."""
    margin_t, near_t, noise_t, _, _ = _context_frames(settings, sr)
    smooth_t = _smooth_size(settings, sr)[0]
    return max(noise_t + margin_t + smooth_t, near_t) + 1


def context_samples(settings: GateSettings, sr: int) -> int:
    """How many samples (and BSD frames' worth of probabilities) either side of a block
    :func:`block_gains` needs to render it as a whole recording's rendering would."""
    n_fft, hop = fine_grid(sr, settings.hops)
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
    hops: int = 4  # as GateSettings.hops

    def rendered(self) -> np.ndarray:
        """The signal these gains were computed from, rendered: float32 samples
        ``keep[0] ... keep[1] - 1`` (as :meth:`apply` of that signal, without its STFT)."""
        n_fft, hop = fine_grid(self.sr, self.hops)
        return _overlap_add(self.spectrum * self.gains, self.first, n_fft, hop, self.keep)

    def apply(self, samples: np.ndarray, start: int = 0) -> np.ndarray:
        """``samples`` (from sample ``start``, covering ``keep``'s frames) with these gains:
        float32 samples ``keep[0] ... keep[1] - 1``."""
        n_fft, hop = fine_grid(self.sr, self.hops)
        last = self.first + len(self.gains)
        spectrum = _spectrum(samples, start, self.total, self.first, last, n_fft, hop)
        return _overlap_add(spectrum * self.gains, self.first, n_fft, hop, self.keep)


def _fine_span(
    settings: GateSettings, sr: int, keep: tuple[int, int], total: int
) -> tuple[int, int, slice]:
    """Fine frames ``a ... b - 1`` whose samples and probabilities render ``keep`` (its own
    frames and their context), and the slice of them that covers ``keep``."""
    n_fft, hop = fine_grid(sr, settings.hops)
    context = _reach(settings, sr)
    n_frames = -(-(total + n_fft - hop) // hop)  # frame j covers j hop - (n_fft - hop) ...
    kept_first = keep[0] // hop
    kept_last = min(n_frames - 1, (keep[1] - 1) // hop + n_fft // hop - 1)
    a, b = max(0, kept_first - context), min(n_frames, kept_last + context + 1)
    return a, b, slice(kept_first - a, kept_last + 1 - a)


def source_frames(settings: GateSettings, sr: int, keep: tuple[int, int], total: int) -> np.ndarray:
    """The BSD frames whose probabilities :func:`block_gains` takes to render samples
    ``keep[0] ... keep[1] - 1`` of a recording of ``total`` samples: for each fine frame
    (see :func:`_fine_span`), the BSD frame centred on its centre sample (a fine hop is a
    whole number of BSD hops), within the recording's frames."""
    n_fft, hop = fine_grid(sr, settings.hops)
    a, b, _ = _fine_span(settings, sr, keep, total)
    centres = np.arange(a, b) * hop + hop - n_fft // 2
    last = max(0, num_frames(total) - 1)
    return np.clip((centres - HOP_LENGTH) // HOP_LENGTH, 0, last)


def block_gains(
    samples: np.ndarray,
    start: int,
    probability: np.ndarray,
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
        probability: ``(513, n)`` clean-sound probabilities (values in [0, 1]) of bins
            0 ... 512 at the ``n`` BSD frames :func:`source_frames` names.
        region: optional bool ``(513, n)`` at the same frames: where anything may pass
            (a box prompt).
    """
    n_fft, hop = fine_grid(sr, settings.hops)
    margin_t, near_t, noise_t, margin_b, near_b = _context_frames(settings, sr)
    smooth_t, smooth_b = _smooth_size(settings, sr)
    a, b, inner = _fine_span(settings, sr, keep, total)
    if probability.shape != (N_BINS, b - a):
        raise ValueError(f"probabilities must be ({N_BINS}, {b - a}), got {probability.shape}")
    spectrum = _spectrum(samples, start, total, a, b, n_fft, hop)
    power = _power(spectrum)
    fine = _on_fine_bins(probability, n_fft)
    widened = _widen(fine, margin_t, margin_b)  # in [0, 1], as the probabilities
    # The gate is smoothed over frames around the inner ones: those within the recording.
    gated = slice(max(inner.start - smooth_t, 0), min(inner.stop + smooth_t, b - a))
    noise = _noise_power(power, widened < NOISE_PROBABILITY, noise_t, gated)
    if settings.chorus_share is not None and settings.chorus_share < 1:  # 1: never
        chorus = _chorus_power(power, fine >= settings.threshold, noise_t, gated,
                               settings.chorus_share)  # fmt: skip
        noise = np.maximum(noise, chorus, out=noise)
    gate = _smooth(_wiener_gate(power[gated], noise, settings.alpha), smooth_t, smooth_b)
    kept = gate[inner.start - gated.start : inner.stop - gated.start]
    kept *= widened[inner] if settings.gamma == 1.0 else widened[inner] ** settings.gamma
    near = _widen((fine >= settings.threshold).view(np.uint8), near_t, near_b)[inner]
    near_floor, far_floor = _amplitude(settings.floor_db), _amplitude(settings.far_floor_db)
    floor = np.where(near > 0, near_floor, far_floor)
    kept *= 1.0 - floor  # floor + (1 - floor) * kept
    gains = np.add(kept, floor, out=kept)
    if region is not None:
        gains *= _on_fine_bins(region[:, inner].astype(np.float32), n_fft) > 0.5
    return FineGains(gains, a + inner.start, sr, keep, total, spectrum[inner], settings.hops)


def _wiener_gate(power: np.ndarray, noise: np.ndarray, alpha: float) -> np.ndarray:
    """``max(1 - alpha N / |X|^2, 0)`` per bin: 1 where no noise is measured, 0 where there
    is noise and the bin is silent."""
    ratio = (noise > 0).astype(np.float32)
    np.divide(np.float32(alpha) * noise, power, out=ratio, where=power > 0)
    gate = np.subtract(np.float32(1.0), ratio, out=ratio)
    return np.maximum(gate, 0.0, out=gate)


def _smooth(values: np.ndarray, frames: int, bins: int) -> np.ndarray:
    """Mean over ``frames`` fine frames and ``bins`` fine bins either side (the edge values
    repeated beyond the array)."""
    if not frames and not bins:
        return values
    return cv2.blur(values, (2 * bins + 1, 2 * frames + 1), borderType=cv2.BORDER_REPLICATE)


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


def _power(spectrum: np.ndarray) -> np.ndarray:
    """``|spectrum|^2`` (float32) of a complex64 spectrum."""
    parts = spectrum.view(np.float32)
    squares = parts * parts
    return squares[..., 0::2] + squares[..., 1::2]


def _on_fine_bins(values: np.ndarray, n_fft: int) -> np.ndarray:
    """``(frames, n_fft / 2 + 1)`` float32: ``values`` (``(513, frames)``, bins 0 ... 512)
    linearly interpolated at the fine bins' frequencies (fine bin k lies at BSD bin
    ``k N_FFT / n_fft``; both FFT lengths are powers of two)."""
    in_time = cv2.transpose(np.ascontiguousarray(values, np.float32))  # (frames, 513)
    if n_fft <= N_FFT:
        return np.ascontiguousarray(in_time[:, :: N_FFT // n_fft])
    steps = n_fft // N_FFT  # fine bins per BSD bin
    fine = np.empty((len(in_time), n_fft // 2 + 1), np.float32)
    lower, upper = in_time[:, :-1], in_time[:, 1:]
    for step in range(steps):
        up_weight = np.float32(step / steps)
        fine[:, step:-1:steps] = lower * (1 - up_weight) + upper * up_weight
    fine[:, -1] = in_time[:, -1]
    return fine


def _widen(values: np.ndarray, frames: int, bins: int) -> np.ndarray:
    """Maximum over ``frames`` fine frames and ``bins`` fine bins either side."""
    if not frames and not bins:
        return values
    return cv2.dilate(values, np.ones((2 * frames + 1, 2 * bins + 1), np.uint8))


def _noise_power(
    power: np.ndarray, is_noise: np.ndarray, half_width: int, inner: slice
) -> np.ndarray:
    """Per bin of the ``inner`` frames: the mean power of the noise bins at its frequency
    within ``half_width`` frames; where there are none, the geometric mean power of all the
    bins there, raised by :data:`UNLABELLED_NOISE_DB`."""
    sums = _window_sums(np.where(is_noise, power, np.float32(0.0)), half_width, inner)
    counts = _window_sums(is_noise.view(np.uint8), half_width, inner)
    noise = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0.5)
    unlabelled = counts < 0.5
    columns = np.flatnonzero(unlabelled.any(axis=0))  # only these need the fallback
    if columns.size:
        fallback = _geometric_mean_power(power[:, columns], half_width, inner)
        fallback *= np.float32(10.0 ** (UNLABELLED_NOISE_DB / 10.0))
        noise[:, columns] = np.where(unlabelled[:, columns], fallback, noise[:, columns])
    return noise


def _chorus_power(
    power: np.ndarray, kept: np.ndarray, half_width: int, inner: slice, share: float
) -> np.ndarray:
    """Per bin of the ``inner`` frames: the mean power at its frequency within ``half_width``
    frames where more than ``share`` of those frames are ``kept``, else 0 (frames outside
    the array left out)."""
    frames = _frame_counts(len(power), half_width, inner)
    in_chorus = _window_sums(kept.view(np.uint8), half_width, inner) / frames > np.float32(share)
    chorus = np.zeros(in_chorus.shape, np.float32)
    columns = np.flatnonzero(in_chorus.any(axis=0))  # only these need their mean power
    if columns.size:
        mean = _window_sums(power[:, columns], half_width, inner) / frames
        chorus[:, columns] = np.where(in_chorus[:, columns], mean, np.float32(0.0))
    return chorus


def _frame_counts(n_frames: int, half_width: int, inner: slice) -> np.ndarray:
    """``(frames, 1)``: how many of ``n_frames`` frames lie within ``half_width`` of each of
    the ``inner`` frames."""
    return _window_sums(np.ones((n_frames, 1), np.uint8), half_width, inner)


def _geometric_mean_power(power: np.ndarray, half_width: int, inner: slice) -> np.ndarray:
    """Per bin of the ``inner`` frames: the geometric mean of ``power`` at its frequency
    within ``half_width`` frames (frames outside the array left out)."""
    logs = np.log(np.maximum(power, np.float32(1e-30)))
    frames = _frame_counts(len(power), half_width, inner)
    return np.exp(_window_sums(logs, half_width, inner) / frames)


def _window_sums(values: np.ndarray, half_width: int, inner: slice) -> np.ndarray:
    """Float32 sums of ``values`` (``(frames, bins)``, float32 or uint8) over ``half_width``
    frames either side of each of the ``inner`` frames (frames outside the array count as
    zero)."""
    sums = cv2.boxFilter(values, cv2.CV_32F, (1, 2 * half_width + 1), normalize=False,
                         borderType=cv2.BORDER_CONSTANT)  # fmt: skip
    return sums[inner]


def _overlap_add(
    spectrum: np.ndarray, first: int, n_fft: int, hop: int, keep: tuple[int, int]
) -> np.ndarray:
    """Samples ``keep[0] ... keep[1] - 1`` of the weighted overlap-add of fine frames
    ``first ...`` (every sample of ``keep`` lies under all its frames)."""
    window = _window(n_fft)
    frames = sp_fft.irfft(spectrum, n=n_fft, axis=1)
    frames *= window
    origin = first * hop - (n_fft - hop)
    out = np.zeros((len(frames) - 1) * hop + n_fft, np.float32)
    for k in range(n_fft // hop):  # frames k, k + n/hop, ... do not overlap one another
        part = frames[k :: n_fft // hop].reshape(-1)
        out[k * hop : k * hop + len(part)] += part
    squared = (window**2).reshape(-1, hop).sum(axis=0)  # the same for every sample
    out /= np.tile(squared, len(out) // hop + 1)[: len(out)]
    return out[keep[0] - origin : keep[1] - origin]
