"""Audio <-> spectrogram image conversions, faithful to the BSD dataset's MATLAB code.

The conventions (see ``shared/reference/BSD_PROTOCOL.md``):

* STFT and two-sided centered rows: :mod:`utils.audio.conventions`.
* Image pixel = ``round(clip(|S|, 0, 1) * 255)`` (no normalisation, no log).
* Mask -> audio: zero every bin where the (resized) mask is 0, then invert by
  weighted overlap-add and keep the real part.
"""

from __future__ import annotations

import cv2
import numpy as np

from utils.audio.conventions import CENTER_ROW, N_BINS, N_FFT, bin_at, frame_at
from utils.audio.kernel import MID_FRAME_PHASE, istft_planes, stft_planes

# Rows holding bins 0, -1, ..., -511, -512 (bin -512 is bin +512, the last row).
_NEGATIVE_BIN_ROWS = np.concatenate([np.arange(CENTER_ROW, -1, -1), [N_FFT - 1]])


def stft_half(y: np.ndarray) -> np.ndarray:
    """Bins 0 ... 512 of :func:`stft` as a complex ``(513, T)`` array (row k = bin k).

    The other rows of the two-sided spectrum of a real signal are their complex
    conjugates. Computed by :func:`stft_planes` (float32).
    """
    a, b = stft_planes(y)
    return ((a + 1j * b) * MID_FRAME_PHASE).T


def istft_half(half: np.ndarray, length: int | None = None) -> np.ndarray:
    """Weighted overlap-add inverse of a ``(513, T)`` half spectrum (bins 0 ... 512), like
    ``irfft`` (the imaginary parts of bins 0 and 512 are ignored); see :func:`istft_planes`."""
    if half.ndim != 2 or half.shape[0] != N_BINS:
        raise ValueError(f"istft_half expects a ({N_BINS}, T) spectrum, got shape {half.shape}")
    mid_frame = half.T * np.conj(MID_FRAME_PHASE)
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
    (bin k shows at row ``CENTER_ROW + k`` of the mask and at its mirror). For a float
    map of gains, the float32 sum of the gains at +k and -k.

    Keeping ``real(ifft)`` of a masked spectrum of a real signal is the same as
    weighting bin k by the mean of the mask at +k and -k: half this count (for a
    mirror-symmetric mask, the mask's own half).
    """
    keep = np.asarray(keep)
    if keep.ndim != 2 or keep.shape[0] != N_FFT:
        raise ValueError(f"expected a ({N_FFT}, T) mask, got shape {keep.shape}")
    if np.issubdtype(keep.dtype, np.floating):
        rows = keep.astype(np.float32, copy=False)
    else:
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


def planes_to_image(planes: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """The BSD image of :func:`stft_planes`' planes: the ``(1024, T)`` two-sided image of
    ``stft`` (the phase factor does not change magnitudes), of the signal scaled by
    ``gain`` (1: the data set's image)."""
    return two_sided(planes_to_half_image(planes, gain))


def planes_to_half_image(planes: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Rows ``CENTER_ROW ...`` (bins 0 ... 512) of :func:`planes_to_image`: uint8 ``(513, T)``."""
    return cv2.transpose(magnitude_pixels(cv2.magnitude(planes[0], planes[1]), gain))


def magnitude_pixels(magnitude: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """The image's uint8 pixels of float32 magnitudes times ``gain`` (``magnitude`` is
    overwritten)."""
    if gain != 1.0:
        magnitude *= np.float32(gain)
    return _magnitude_pixels(magnitude)


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
