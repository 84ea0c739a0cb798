"""Rendering a clean-sound probability map into audio: the gain each STFT bin gets.

A :class:`Rendering` turns a two-sided ``(1024, T)`` probability map into gains in
[0, 1]:

1. ``binary`` keeps the bins at or above the threshold (gain 1) and drops the rest
   (the dataset's image2audio); ``soft`` uses the probabilities as gains;
2. a margin widens what is kept by ``margin_hz`` above and below and ``margin_ms``
   before and after (a maximum filter: the onsets, tails and weak harmonics next to
   what the model found);
3. a floor of ``floor_db`` (e.g. -20 dB) is the least gain any bin gets: the noise is
   attenuated rather than cut out.

``gated`` works in a finer STFT instead (:mod:`utils.audio.gated`): the soft mask with its
margin, times a noise gate, with ``floor_db`` near what the model keeps and
``far_floor_db`` elsewhere (``hops`` 2 halves its work; ``smooth_hz`` and ``smooth_ms``
average the gate over neighbouring bins). Its gains are a
:class:`utils.audio.gated.FineGains`. With ``energy_db``, the probabilities are first
zeroed where a bin of the spectrogram image is less than that far above its frequency's
floor (the lower median over the recording: :func:`utils.audio.level.image_floors`).
With ``chorus_share``, a frequency the model keeps in more than that share of the frames
around a bin is gated against its own mean power (a chorus, see :mod:`utils.audio.gated`).

The default, ``binary`` without margin or floor, is the BSD binary mask exactly. A floor
of 0 dB returns the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from utils.audio.bsd import kept_bin_counts
from utils.audio.conventions import CENTER_ROW, HOP_LENGTH, N_FFT
from utils.audio.gated import (
    HOPS,
    FineGains,
    GateSettings,
    block_gains,
    context_samples,
    source_frames,
)
from utils.audio.kernel import istft_planes, stft_planes

KINDS = ("binary", "soft", "gated")


def _check_extent(what: str, hz_and_ms: tuple[float, float]) -> None:
    """ValueError naming ``what`` unless both values are finite and >= 0."""
    if not all(math.isfinite(v) and v >= 0 for v in hz_and_ms):
        raise ValueError(f"{what} must be finite and >= 0, got {hz_and_ms}")


@dataclass(frozen=True)
class Rendering:
    """How probabilities become gains; see the module docstring."""

    kind: str = "binary"
    floor_db: float = -math.inf
    margin_hz: float = 0.0
    margin_ms: float = 0.0
    threshold: float = 0.5
    far_floor_db: float | None = None  # gated only: far from what is kept (None: floor_db)
    alpha: float = 2.0  # gated only: the gate's noise over-estimate
    hops: int = 4  # gated only: fine frames over each sample (2: half the work)
    energy_db: float | None = None  # gated only: keep only bins this far above their row's floor
    gamma: float = 1.0  # gated only: the exponent of the probability in the gain
    smooth_hz: float = 0.0  # gated only: the gate's mean over this much above and below
    smooth_ms: float = 0.0  # gated only: and this much before and after
    chorus_share: float | None = None  # gated only: a band kept this often is a chorus

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown rendering {self.kind!r}; expected one of {KINDS}")
        if not self.floor_db <= 0.0:
            raise ValueError(f"the floor must be at most 0 dB, got {self.floor_db}")
        far = self.far_floor_db
        if self.kind == "gated" and far is not None and not far <= self.floor_db:
            raise ValueError(f"the far floor must be at most the floor ({self.floor_db} dB), "
                             f"got {far} (set --far_floor_db too)")  # fmt: skip
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"the gate's alpha must be positive, got {self.alpha}")
        if not (math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            raise ValueError(f"the gate's gamma must be in (0, 1], got {self.gamma}")
        if self.hops not in HOPS:
            raise ValueError(f"the gate's hops must be one of {HOPS}, got {self.hops}")
        if self.energy_db is not None and not (
            math.isfinite(self.energy_db) and self.energy_db >= 0
        ):
            raise ValueError(f"the energy margin must be finite and >= 0 dB, got {self.energy_db}")
        share = self.chorus_share
        if share is not None and not (math.isfinite(share) and 0 < share <= 1):
            raise ValueError(f"the chorus share must be in (0, 1], got {share}")
        _check_extent("margins", (self.margin_hz, self.margin_ms))
        _check_extent("the gate's smoothing", (self.smooth_hz, self.smooth_ms))

    @property
    def is_bsd(self) -> bool:
        """Whether this is the dataset's binary mask, unchanged."""
        no_margin = self.margin_hz == 0 and self.margin_ms == 0
        return self.kind == "binary" and self.floor_db == -math.inf and no_margin

    @property
    def spec(self) -> str:
        """The rendering as :func:`parse_rendering` reads it back."""
        parts = [self.kind]
        if self.floor_db != -math.inf:
            parts.append(f"floor={self.floor_db:g}")
        if self.margin_hz or self.margin_ms:
            parts.append(f"margin={self.margin_hz:g}:{self.margin_ms:g}")
        if self.kind == "gated" and self.far_floor_db is not None:
            parts.append(f"far={self.far_floor_db:g}")
        if self.kind == "gated":
            parts.append(f"alpha={self.alpha:g}")
        if self.kind == "gated" and self.gamma != Rendering.gamma:
            parts.append(f"gamma={self.gamma:g}")
        if self.kind == "gated" and self.hops != Rendering.hops:
            parts.append(f"hops={self.hops}")
        if self.kind == "gated" and (self.smooth_hz or self.smooth_ms):
            parts.append(f"smooth={self.smooth_hz:g}:{self.smooth_ms:g}")
        if self.kind == "gated" and self.chorus_share is not None:
            parts.append(f"chorus={self.chorus_share:g}")
        if self.energy_cue_db is not None:
            parts.append(f"energy={self.energy_cue_db:g}")
        return ",".join(parts)

    @property
    def energy_cue_db(self) -> float | None:
        """The gated rendering's ``energy_db`` (None for the other kinds, which ignore it)."""
        return self.energy_db if self.kind == "gated" else None

    @property
    def gate(self) -> GateSettings:
        """The ``gated`` rendering's parameters."""
        far = self.floor_db if self.far_floor_db is None else self.far_floor_db
        return GateSettings(self.floor_db, far, self.alpha, self.margin_hz, self.margin_ms,
                            self.threshold, self.hops, self.gamma, self.smooth_hz,
                            self.smooth_ms, self.chorus_share)  # fmt: skip

    def context_frames(self, sr: int) -> int:
        """BSD frames either side of a block of frames that its rendering depends on."""
        if self.kind == "gated":
            return context_samples(self.gate, sr) // HOP_LENGTH + 2
        return self.margin_size(sr)[1]

    def margin_size(self, sr: int) -> tuple[int, int]:
        """The margin in (bins, frames) at sample rate ``sr``."""
        bins = int(round(self.margin_hz * N_FFT / sr))
        frames = int(round(self.margin_ms / 1000.0 * sr / HOP_LENGTH))
        return bins, frames

    def gains(self, probabilities: np.ndarray, sr: int) -> np.ndarray:
        """Float32 gains in [0, 1] of the shape of ``probabilities`` (a two-sided map, or
        bins 0 ... 512); not for ``gated`` (see :meth:`signal_gains`)."""
        if self.kind == "gated":
            raise ValueError("the gated rendering's gains are on its own STFT: use signal_gains")
        if self.kind == "binary":
            base = (probabilities >= self.threshold).astype(np.float32)
        else:
            base = np.clip(probabilities, 0.0, 1.0, dtype=np.float32)
        bins, frames = self.margin_size(sr)
        if bins or frames:  # grey dilation: each bin gets the largest gain within the margin
            kernel = np.ones((2 * bins + 1, 2 * frames + 1), np.uint8)
            base = cv2.dilate(base, kernel, dst=base, borderType=cv2.BORDER_REPLICATE)
        if self.floor_db != -math.inf:
            floor = np.float32(10.0 ** (self.floor_db / 20.0))
            base *= 1.0 - floor
            base += floor
        return base

    def signal_gains(
        self,
        y: np.ndarray,
        probabilities: np.ndarray,
        sr: int,
        region: np.ndarray | None = None,
    ) -> np.ndarray | FineGains:
        """The gains for the whole signal ``y`` given its two-sided ``(1024, T)``
        probabilities, zero outside ``region`` (bool, the same shape) when given: a BSD-grid
        map for ``binary``/``soft``, a :class:`FineGains` for ``gated``."""
        if self.kind != "gated":
            gains = self.gains(probabilities, sr)
            return gains if region is None else gains * region
        frames = source_frames(self.gate, sr, (0, len(y)), len(y))
        half = None if region is None else region[CENTER_ROW:, frames]
        return block_gains(y, 0, probabilities[CENTER_ROW:, frames], sr, self.gate,
                           (0, len(y)), len(y), half)  # fmt: skip


BSD_RENDERING = Rendering()  # the data set's binary mask


def parse_rendering(spec: str, threshold: float = 0.5) -> Rendering:
    """A :class:`Rendering` from
    ``KIND[,floor=DB][,margin=HZ:MS][,far=DB][,alpha=A][,gamma=G][,hops=H][,smooth=HZ:MS]
    [,chorus=SHARE][,energy=DB]``, e.g. ``soft,floor=-20``, ``binary,margin=300:40,floor=-20`` or
    ``gated,floor=-20,far=-50,alpha=2,gamma=0.5,margin=200:30,smooth=50:20``.

    Raises:
        ValueError: naming the part that cannot be read.
    """
    kind, *options = [part.strip() for part in spec.split(",")]
    values: dict = {"kind": kind, "threshold": threshold}
    for option in options:
        name, _, value = option.partition("=")
        try:
            if name == "floor":
                values["floor_db"] = float(value)
            elif name == "margin":
                values["margin_hz"], values["margin_ms"] = _hz_and_ms(value)
            elif name == "far":
                values["far_floor_db"] = float(value)
            elif name == "alpha":
                values["alpha"] = float(value)
            elif name == "gamma":
                values["gamma"] = float(value)
            elif name == "hops":
                values["hops"] = int(value)
            elif name == "smooth":
                values["smooth_hz"], values["smooth_ms"] = _hz_and_ms(value)
            elif name == "chorus":
                values["chorus_share"] = float(value)
            elif name == "energy":
                values["energy_db"] = float(value)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"rendering {spec!r}: cannot read {option!r}; expected floor=DB, "
                "margin=HZ:MS, far=DB, alpha=A, gamma=G, hops=H, smooth=HZ:MS, chorus=SHARE or "
                "energy=DB"
            ) from None
    return Rendering(**values)


def _hz_and_ms(value: str) -> tuple[float, float]:
    """``HZ:MS`` (or ``HZ``, MS 0) as two floats; ValueError if either cannot be read."""
    hz, _, ms = value.partition(":")
    return float(hz), float(ms or 0)


def apply_gains(
    y: np.ndarray, gains: np.ndarray | FineGains, planes: np.ndarray | None = None
) -> np.ndarray:
    """``y`` with each STFT bin scaled by its two-sided ``(1024, T)`` gain, inverted by
    weighted overlap-add (the real part, as the dataset's image2audio); ``len(y)`` samples.
    A {0, 1} gain map gives :func:`utils.audio.bsd.mask_to_audio`'s result. ``FineGains``
    (the gated rendering's) apply on their own STFT."""
    if isinstance(gains, FineGains):
        return gains.apply(np.asarray(y, np.float32)).astype(np.float64)
    planes = stft_planes(y) if planes is None else planes
    if gains.shape != (N_FFT, planes.shape[1]):
        raise ValueError(f"gains must be ({N_FFT}, {planes.shape[1]}), got {gains.shape}")
    weights = kept_bin_counts(gains)  # each bin's gain at +k plus its gain at -k
    return 0.5 * istft_planes(planes, len(y), weights=weights)
