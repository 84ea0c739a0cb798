"""The BSD STFT's conventions (see ``shared/reference/BSD_PROTOCOL.md``) and the
sample/frame/bin arithmetic built on them.

* Symmetric Hamming window of 128 samples, hop 64, FFT length 1024, no padding, so
  ``frames = (N - 128) // 64 + 1``.
* Two-sided spectrum in MATLAB's "centered" order: row ``i`` holds frequency bin
  ``i - 511``, i.e. bins -511 ... +512 from top to bottom.
"""

from __future__ import annotations

import numpy as np

WINDOW_LENGTH = 128
HOP_LENGTH = 64
N_FFT = 1024
WINDOW = np.hamming(WINDOW_LENGTH)  # symmetric, like MATLAB's hamming(128)
# Row i of a centered spectrum holds FFT bin (i - CENTER_ROW): bins -511 ... +512.
CENTER_ROW = N_FFT // 2 - 1
N_BINS = N_FFT // 2 + 1  # bins 0 ... 512: the non-negative half of a real signal's spectrum


def num_frames(n_samples: int) -> int:
    """Number of STFT frames (image width) for a signal of ``n_samples`` samples."""
    return max(0, (int(n_samples) - WINDOW_LENGTH) // HOP_LENGTH + 1)


def num_samples(n_frames: int) -> int:
    """Samples spanned by ``n_frames`` STFT frames: ``(n_frames - 1) * 64 + 128``."""
    return (int(n_frames) - 1) * HOP_LENGTH + WINDOW_LENGTH


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Cut ``x`` to ``length`` samples or pad it with trailing zeros."""
    if len(x) >= length:
        return x[:length]
    return np.concatenate([x, np.zeros(length - len(x), dtype=x.dtype)])


def frame_at(seconds: float, sr: int) -> float:
    """The (fractional) STFT frame, i.e. image column, whose window is centred at ``seconds``.

    Frame ``t`` spans samples ``64 t ... 64 t + 127``, centred on sample ``64 t + 64``.
    """
    return float(seconds) * sr / HOP_LENGTH - 1.0


def bin_at(hertz: float, sr: int) -> float:
    """The (fractional) frequency bin of ``hertz``: bin ``k`` is ``k * sr / 1024`` Hz, and is
    image row ``CENTER_ROW + k`` (``CENTER_ROW - k`` for its mirror)."""
    return float(hertz) * N_FFT / sr
