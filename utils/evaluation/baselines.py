"""Non-learned reference methods that a trained BudSAM model must beat.

Every baseline gives a two-sided binary mask in the BSD layout, ``(1024, T)`` bool,
mirror-symmetric about the DC row (row 511), so it is scored exactly like a model's
prediction (:func:`utils.scoring.metrics.foreground_scores`) and turned into audio by
:func:`utils.audio.mask_to_audio`.

* :func:`energy_threshold_mask`: from the spectrogram image alone; keeps pixels well
  above their frequency row's noise floor and cleans the result into blobs.
* :func:`noisereduce_mask`: from the recording; keeps the bins that the spectral
  gating of the ``noisereduce`` package (:func:`noisereduce_audio`) lets through.

How the defaults were chosen: once, by a coarse-to-fine grid search for the highest
mean foreground IoU over the 40 ``train`` images of a synthetic set made with seed
101 (a seed no test and no reported figure uses); no test data was looked at::

    python -c "from utils import synthetic; synthetic.generate_dataset(
        '/tmp/bl_tune', {'train': 40, 'valid': 0, 'test': 0}, seed=101)"

Searched: ``margin_db`` 6-24, ``min_level`` 1-160, openings 1x1-11x5, closings 1x1-25x9,
``min_area`` 0-1000, dilations 1x1-9x5 (energy threshold); ``keep_ratio`` 0.1-1.0 and
``min_level`` 0-160, with and without cleanup (noisereduce mask, one setting for both
gates: the best mean of the two). Mean IoU there with the defaults: energy threshold
0.83, noisereduce mask 0.80 (stationary) and 0.73 (non-stationary); on the 40
held-out ``test`` images of the seed-0 set: 0.71, 0.74 and 0.69.

The absolute levels (``min_level``, in uint8 image units) matter most for the
noisereduce mask: the bare keep-ratio mask (``keep_ratio=0.5``, no level floor, no
cleanup) scores only 0.13 / 0.11 on the tuning set. They suit BSD's unnormalised
images, whose bird pixels are mostly bright, but are the settings least likely to
carry over to recordings of a very different loudness.
"""

from __future__ import annotations

import numpy as np

from utils.audio import bsd
from utils.audio.conventions import CENTER_ROW, N_FFT, WINDOW_LENGTH, fit_length
from utils.data.mask_ops import clean_mask_half

NOISEREDUCE_WINDOW = 1024  # noisereduce's default n_fft = window length, in samples


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.shape[0] != N_FFT or image.shape[1] == 0:
        raise ValueError(
            f"expected a ({N_FFT}, T) spectrogram image with T >= 1, got shape {image.shape}"
        )
    return image


def _check_signal(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {y.shape}")
    if len(y) < WINDOW_LENGTH:
        raise ValueError(
            f"signal of {len(y)} samples is shorter than one STFT window ({WINDOW_LENGTH})"
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("signal holds NaN or infinite samples")
    return y


def energy_threshold_mask(
    image: np.ndarray,
    *,
    margin_db: float = 7.5,
    min_level: int = 40,
    open_size: tuple[int, int] = (9, 5),
    close_size: tuple[int, int] = (15, 7),
    min_area: int = 150,
    dilate_size: tuple[int, int] = (5, 5),
) -> np.ndarray:
    """Mask the pixels that stand out of their frequency row's noise floor.

    The floor of each frequency row is its median over time (stationary noise);
    a pixel is kept when it exceeds that floor by ``margin_db`` (a factor
    ``10 ** (margin_db / 20)`` in magnitude) and is at least ``min_level`` (uint8
    units). The result is cleaned by :func:`clean_mask_half` into blobs. Computed
    on rows 511 ... 1023 (bins 0 ... 512) and mirrored, so the mask is symmetric
    about DC like BSD's. Defaults: see the module docstring for how they were tuned.

    Args:
        image: uint8 ``(1024, T)`` BSD spectrogram image.
        margin_db: how far above the row's median a pixel must be, in dB.
        min_level: the lowest pixel value kept, whatever the floor.
        open_size, close_size, min_area, dilate_size: see :func:`clean_mask_half`.

    Returns:
        bool ``(1024, T)`` mask; all False for an all-zero image.
    """
    image = _check_image(image)
    half = image[CENTER_ROW:].astype(np.float32)  # (513, T), row k = bin k
    floor = np.median(half, axis=1, keepdims=True)
    threshold = np.maximum(floor * np.float32(10 ** (margin_db / 20)), np.float32(min_level))
    keep = (half >= threshold) & (half > 0)
    keep = clean_mask_half(keep, open_size, close_size, min_area, dilate_size)
    return bsd.two_sided(keep)


def noisereduce_audio(y: np.ndarray, sr: int, stationary: bool) -> np.ndarray:
    """Denoise ``y`` with ``noisereduce.reduce_noise`` (spectral gating), default settings.

    Runs single-threaded (``n_jobs=1``) and is deterministic. All-zero input gives
    all-zero output (the non-stationary gate would divide 0 by 0). Signals longer
    than 600,000 samples are processed in noisereduce's default chunks.

    Args:
        y: float ``(N,)`` signal; ``N >= 128``, and ``N >= 1024`` for the stationary gate.
        sr: sample rate in Hz.
        stationary: the stationary gate (one noise threshold per frequency, from the
            signal's first 600,000 samples) rather than the non-stationary one (a
            running floor with a 2 s time constant).

    Returns:
        float64 ``(N,)`` denoised signal.
    """
    import noisereduce  # imported here: it pulls in joblib and tqdm

    y = _check_signal(y)
    if stationary and len(y) < NOISEREDUCE_WINDOW:
        # Its noise statistics come from a STFT of the whole signal, which then fails or warns.
        raise ValueError(
            f"signal of {len(y)} samples is too short for stationary noisereduce, which needs "
            f"at least {NOISEREDUCE_WINDOW} (one window) to estimate the noise"
        )
    if not np.any(y):
        return np.zeros_like(y)
    denoised = noisereduce.reduce_noise(y=y, sr=int(sr), stationary=stationary, n_jobs=1)
    denoised = np.asarray(denoised, dtype=np.float64).reshape(-1)
    return fit_length(denoised, len(y))


def noisereduce_mask(
    y: np.ndarray,
    sr: int,
    stationary: bool = False,
    keep_ratio: float = 0.2,
    *,
    min_level: float = 96.0,
    clean: bool = True,
) -> np.ndarray:
    """The bins that noisereduce keeps: ``|stft(denoised)| >= keep_ratio * |stft(y)|``.

    Computed on bins 0 ... 512 of the BSD STFT and mirrored. Bins where the input
    itself is zero are never kept. By default the bin must also be bright in the
    image (``min_level``) and the mask is cleaned into blobs as in
    :func:`energy_threshold_mask`; ``min_level=0, clean=False`` gives the bare
    keep-ratio mask. Defaults: see the module docstring for how they were tuned.

    Args:
        y: float ``(N,)`` signal; ``N >= 128``, and ``N >= 1024`` for the stationary gate.
        sr: sample rate in Hz.
        stationary: which noisereduce gate (see :func:`noisereduce_audio`).
        keep_ratio: the fraction of a bin's input magnitude the output must keep.
        min_level: also require ``|stft(y)| * 255 >= min_level`` (the bin's pixel
            value in the BSD image); 0 disables it.
        clean: clean the mask with :func:`clean_mask_half` (its defaults).

    Returns:
        bool ``(1024, T)`` mask, ``T = audio.num_frames(N)``; all False for silence.
    """
    y = _check_signal(y)
    denoised = noisereduce_audio(y, sr, stationary)
    return kept_bins_mask(y, denoised, keep_ratio, min_level=min_level, clean=clean)


def kept_bins_mask(
    y: np.ndarray,
    denoised: np.ndarray,
    keep_ratio: float = 0.2,
    *,
    min_level: float = 96.0,
    clean: bool = True,
) -> np.ndarray:
    """The bins a denoiser kept: ``|stft(denoised)| >= keep_ratio * |stft(y)|``, cleaned.

    The mask half of :func:`noisereduce_mask` for a denoised signal already at hand
    (``y`` and ``denoised`` of equal length); same arguments, same ``(1024, T)`` result.
    """
    y = _check_signal(y)
    kept = np.abs(bsd.stft_half(_check_signal(denoised)))
    level = np.abs(bsd.stft_half(y))
    keep = (kept >= keep_ratio * level) & (level > 0)
    if min_level > 0:
        keep &= level * 255.0 >= min_level
    if clean:
        keep = clean_mask_half(keep)
    return bsd.two_sided(keep)
