"""The BSD STFT and its inverse written plainly with ``np.fft`` (float64): the definition
that :mod:`utils.audio.kernel` computes fast, kept for the tests to compare with."""

from __future__ import annotations

import numpy as np

from utils.audio.conventions import (
    CENTER_ROW,
    HOP_LENGTH,
    N_FFT,
    WINDOW,
    WINDOW_LENGTH,
    fit_length,
    num_frames,
    num_samples,
)


def reference_stft(y: np.ndarray) -> np.ndarray:
    """Complex ``(1024, T)`` STFT of a 1-D signal in centered rows (row i = bin i - 511):
    each windowed 128-sample frame, zero-padded to 1,024 points, through ``np.fft.fft``."""
    y = np.asarray(y, dtype=np.float64)
    starts = HOP_LENGTH * np.arange(num_frames(len(y)))
    frames = y[starts[:, None] + np.arange(WINDOW_LENGTH)] * WINDOW  # (T, 128)
    spectrum = np.fft.fft(frames, n=N_FFT, axis=1).T  # (1024, T), row k = bin k mod 1024
    return np.roll(spectrum, CENTER_ROW, axis=0)


def reference_istft(S: np.ndarray, length: int | None = None) -> np.ndarray:
    """Weighted overlap-add inverse of a centered ``(1024, T)`` spectrum, real part:
    ``sum_t w * ifft(S_t)[:128]`` placed at each frame's start, divided by ``sum_t w^2``."""
    n_frames = S.shape[1]
    frames = np.fft.ifft(np.roll(S, -CENTER_ROW, axis=0), axis=0).real[:WINDOW_LENGTH].T
    signal = np.zeros(num_samples(n_frames))
    overlap = np.zeros(num_samples(n_frames))
    for t in range(n_frames):
        span = slice(t * HOP_LENGTH, t * HOP_LENGTH + WINDOW_LENGTH)
        signal[span] += WINDOW * frames[t]
        overlap[span] += WINDOW**2
    signal /= overlap
    return signal if length is None else fit_length(signal, length)
