"""The fast kernel under the BSD transforms: bins 0 ... 512 of the STFT as two real
float32 planes, with each frame's phase measured at its middle.

A frame has 128 samples zero-padded to 1,024, so its DFT is a product with a
(128 x 513) matrix, cheaper than an FFT of the padded frame. Measuring each frame's
phase at its middle (sample 63.5) instead of its first sample makes that product
real and half as large: with p_n = 63.5 - n and the symmetric window w,

    X_k = exp(-i theta_k 63.5) (A_k + i B_k),          theta_k = 2 pi k / 1024,
    A_k = sum_{n<64} w_n (x_n + x_{127-n}) cos(theta_k p_n),
    B_k = sum_{n<64} w_n (x_n - x_{127-n}) sin(theta_k p_n).

|X_k| = |A_k + i B_k|, and weighting bins by a mask commutes with the phase factor,
so the image and the masked inverse work on the real planes (A, B) directly; the
inverse is two products of the same size. All in float32: a relative error near
1e-7, far below an image's 1/255 step or a 16-bit WAV's. :mod:`utils.audio.reference`
is the plain ``np.fft`` computation that the tests compare this kernel with.
"""

from __future__ import annotations

import numpy as np

from utils.audio.conventions import (
    HOP_LENGTH,
    N_BINS,
    N_FFT,
    WINDOW,
    WINDOW_LENGTH,
    fit_length,
    num_frames,
)

_HALF_WINDOW = WINDOW_LENGTH // 2


def _plane_bases() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float32 matrices of the kernel: forward ``(64, 513)`` cosine and sine, window
    folded in; inverse ``(513, 64)`` cosine and sine, with the inverse DFT's bin weights
    (1 at bins 0 and 512, else 2, over 1024) and the synthesis window folded in."""
    n = np.arange(_HALF_WINDOW)[:, None]
    k = np.arange(N_BINS)[None, :]
    # theta_k p_n = pi k (127 - 2n) / 1024, reduced modulo 2 pi for accuracy.
    angle = np.pi * ((k * (WINDOW_LENGTH - 1 - 2 * n)) % (2 * N_FFT)) / N_FFT
    cos, sin = np.cos(angle), np.sin(angle)
    sin[:, 0] = 0.0  # exact zeros: bin 0 has no sine part, bin 512 no cosine part
    cos[:, -1] = 0.0
    half_window = WINDOW[:_HALF_WINDOW, None]
    bin_weight = np.full((N_BINS, 1), 2.0 / N_FFT)
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
MID_FRAME_PHASE = np.exp(-1j * np.pi * np.arange(N_BINS) * (WINDOW_LENGTH - 1) / N_FFT)
assert WINDOW_LENGTH == 2 * HOP_LENGTH, "the overlap-add below assumes two hops per window"
_SQUARED_WINDOW_HALVES = (WINDOW**2).reshape(2, HOP_LENGTH).astype(np.float32)
_OVERLAP_GAIN = 1.0 / _SQUARED_WINDOW_HALVES.sum(axis=0)


# Masked inverse: leaving out the frames (the bins) a mask drops pays when it keeps
# less than this fraction of them.
_SKIP_PAYS_BELOW = 0.75


def stft_planes(y: np.ndarray) -> np.ndarray:
    """Bins 0 ... 512 of the BSD STFT as float32 planes ``(2, T, 513)``: ``A`` and ``B``
    with ``stft`` bin k = ``exp(-i pi k 127 / 1024) (A + i B)`` (the phase measured at each
    frame's middle; see this module's docstring). One row per frame.

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
    return frame_planes(frames)


def frame_planes(frames: np.ndarray) -> np.ndarray:
    """:func:`stft_planes` of ``(T, 128)`` float32 frames (windows of 128 samples, not yet
    windowed): planes ``(2, T, 513)``. Each frame's planes depend on its samples only."""
    n_frames = frames.shape[0]
    head, tail = frames[:, :_HALF_WINDOW], frames[:, : _HALF_WINDOW - 1 : -1]  # x_n, x_{127-n}
    planes = np.empty((2, n_frames, N_BINS), dtype=np.float32)
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
    if planes.ndim != 3 or planes.shape[0] != 2 or planes.shape[2] != N_BINS:
        raise ValueError(f"expected (2, T, {N_BINS}) planes, got shape {planes.shape}")
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
    cols = slice(None) if band > _SKIP_PAYS_BELOW * N_BINS else slice(bins[0], bins[-1] + 1)
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
