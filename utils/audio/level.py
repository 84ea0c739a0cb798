"""Recording level: one gain per recording so that its spectrogram image does not depend on
the recorder's input gain.

The BSD image is ``|STFT|`` clipped at 1 with no normalisation, so a quiet recording
(the norm for autonomous recorders) gives a nearly black image. For recordings, the
magnitudes are scaled by :func:`level_gain` before the image is made: the largest gain
that brings neither the bird band's median magnitude (mostly the noise floor) above
:data:`FLOOR_TARGET` nor its 99th percentile (the loud events) above
:data:`PEAK_TARGET`. Both statistics scale with the signal, so a recording and the same
recording at any other gain give the same image. The targets are the medians of these
statistics over the synthetic training split (``python -m bench.bench_level``), so a
recording is brought to the training data's typical level. BSD images are never
rescaled: the data set's path stays as published.
"""

from __future__ import annotations

import cv2
import numpy as np

from utils.audio.conventions import N_BINS, bin_at

BAND_HZ = (1000.0, 10000.0)
FLOOR_TARGET = 0.0841  # median |S| in the band, median over the synthetic training split
PEAK_TARGET = 2.527  # 99th percentile of |S| in the band, the same way
MAX_FRAMES = 20000  # frames sampled (evenly) for the statistics of a long recording


def band_statistics(planes: np.ndarray, sr: int, step: int | None = None) -> tuple[float, float]:
    """The median and 99th percentile of ``|STFT|`` over the bird band's bins, from
    :func:`utils.audio.kernel.stft_planes`' ``(2, T, 513)`` planes: of every ``step``-th
    frame (by default at most :data:`MAX_FRAMES` frames, evenly spaced)."""
    first = int(np.ceil(bin_at(BAND_HZ[0], sr)))
    last = min(int(np.floor(bin_at(BAND_HZ[1], sr))), N_BINS - 1)
    if first > last or planes.shape[1] == 0:  # a rate below 2 kHz has no band to measure
        return 0.0, 0.0
    step = step or max(1, planes.shape[1] // MAX_FRAMES)
    a = np.ascontiguousarray(planes[0, ::step, first : last + 1])
    b = np.ascontiguousarray(planes[1, ::step, first : last + 1])
    magnitude = cv2.magnitude(a, b)
    median, peak = np.percentile(magnitude, (50.0, 99.0))
    return float(median), float(peak)


def level_gain(planes: np.ndarray, sr: int) -> float:
    """The factor for a recording's magnitudes (see the module docstring); 1.0 for a
    recording with nothing in the band (silence, or a rate too low to have the band)."""
    return gain_from_statistics(*band_statistics(planes, sr))


def gain_from_statistics(median: float, peak: float) -> float:
    """:func:`level_gain` from a recording's :func:`band_statistics`."""
    if peak <= 0.0:
        return 1.0
    if median <= 0.0:
        return PEAK_TARGET / peak
    return min(FLOOR_TARGET / median, PEAK_TARGET / peak)


def lower_medians(values: np.ndarray, axis: int = 1) -> np.ndarray:
    """The lower median along ``axis`` of a 2-D array (the ``(n - 1) // 2``-th smallest of
    its ``n`` values): an order statistic, so it commutes with any non-decreasing map of
    the values."""
    count = values.shape[axis]
    if count == 0:
        return np.zeros(values.shape[1 - axis], values.dtype)
    middle = (count - 1) // 2
    return np.take(np.partition(values, middle, axis=axis), middle, axis=axis)


def image_floors(half_image: np.ndarray) -> np.ndarray:
    """Each frequency row's floor: the lower median of a uint8 ``(513, T)`` half image over
    frames ``0, s, 2 s ...``, spaced as :func:`band_statistics` spaces them."""
    step = max(1, half_image.shape[1] // MAX_FRAMES)
    return lower_medians(np.ascontiguousarray(half_image[:, ::step]))


def loud_bins(half_image: np.ndarray, floors: np.ndarray, margin_db: float) -> np.ndarray:
    """Bool, the shape of ``half_image``: the bins at least ``margin_db`` above their row's
    floor (and not black)."""
    threshold = floors.astype(np.float32)[:, None] * np.float32(10.0 ** (margin_db / 20.0))
    return (half_image >= threshold) & (half_image > 0)
