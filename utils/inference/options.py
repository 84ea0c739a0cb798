"""The settings of an inference run that decide how its inputs are segmented and rendered,
shared by ``budsam_infer.py`` and the Python API (:mod:`utils.api`): the command line's
flags of the same names and defaults, and what ``auto`` and unset ones become for
recordings and for spectrogram images."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from utils.audio.render import BSD_RENDERING, Rendering
from utils.data.inputs import LoadOptions
from utils.inference.segmenter import (
    DEFAULT_OVERLAP,
    RECORDING_RENDERING,
    RECORDING_SKIP_CONTRAST,
    RECORDING_TILE_WIDTH,
    BandPrompt,
    ModelSettings,
    Segmenter,
)
from utils.model.budsam import BudSAM

LEVELS = ("auto", "normalize", "bsd")


@dataclass(frozen=True)
class SegmentOptions:
    """``budsam_infer.py``'s flags of these names (see its ``--help``); ``box`` is its
    ``--box T0 T1 F0 F1``: a time span in seconds and a band in Hz.

    Raises:
        ValueError: on construction, for a box, level, rendering or overlap out of range
            (with the flag's name).
    """

    prompt: str = "full"
    box: Sequence[float] | None = None
    sr: int | None = None
    keep_rate: bool = False
    level: str = "auto"
    render: str = "auto"
    floor_db: float | None = None
    far_floor_db: float | None = None
    gate_alpha: float | None = None
    gate_hops: int | None = None
    gate_gamma: float | None = None
    gate_smooth_hz: float | None = None
    gate_smooth_ms: float | None = None
    gate_chorus_share: float | None = None
    energy_db: float | None = None
    margin_hz: float | None = None
    margin_ms: float | None = None
    tile_width: int | None = None
    overlap: float | None = None
    time_flip: bool | None = None
    threshold: float = 0.5
    batch_size: int = 8
    amp: str = "none"
    seed: int = 0
    skip_contrast: float = RECORDING_SKIP_CONTRAST

    def __post_init__(self) -> None:
        if self.box is not None:
            if len(self.box) != 4:
                raise ValueError(f"--box needs 4 numbers, T0 T1 F0 F1; got {list(self.box)}")
            t0, t1, f0, f1 = self.box
            if not (0 <= t0 < t1 and 0 <= f0 < f1):
                raise ValueError(f"--box needs 0 <= T0 < T1 and 0 <= F0 < F1, got {t0} {t1} "
                                 f"{f0} {f1}")  # fmt: skip
        if self.level not in LEVELS:
            raise ValueError(f"--level must be one of {LEVELS}, got {self.level!r}")
        self.rendering(for_recordings=True)
        if self.overlap is not None and not 0 <= self.overlap < 1:
            raise ValueError(f"--overlap must be in [0, 1), got {self.overlap}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SegmentOptions:
        """The options of ``budsam_infer.py``'s parsed arguments."""
        return cls(**{field.name: getattr(args, field.name) for field in fields(cls)})

    def rendering(self, for_recordings: bool, settings: ModelSettings | None = None) -> Rendering:
        """The rendering asked for: ``auto`` parts from the model's rendering of recordings
        (:meth:`ModelSettings.recording_defaults`; :data:`RECORDING_RENDERING` without
        ``settings``) for recordings, and from the data set's binary mask otherwise (BSD
        images, the paper's ground-truth box)."""
        if not for_recordings:
            base = BSD_RENDERING
        else:
            base = settings.recording_defaults()[1] if settings else RECORDING_RENDERING
        asked = {
            "kind": None if self.render == "auto" else self.render,
            "floor_db": self.floor_db,
            "far_floor_db": self.far_floor_db,
            "alpha": self.gate_alpha,
            "hops": self.gate_hops,
            "gamma": self.gate_gamma,
            "smooth_hz": self.gate_smooth_hz,
            "smooth_ms": self.gate_smooth_ms,
            "chorus_share": self.gate_chorus_share,
            "energy_db": self.energy_db,
            "margin_hz": self.margin_hz,
            "margin_ms": self.margin_ms,
        }
        given = {name: value for name, value in asked.items() if value is not None}
        return dataclasses.replace(base, threshold=self.threshold, **given)

    def rendering_for(self, recordings: bool, settings: ModelSettings) -> Rendering:
        """The rendering :meth:`segmenter` gives: for recordings, the BSD mask with
        ``--prompt gt_box``, the paper's protocol."""
        return self.rendering(recordings and self.prompt != "gt_box", settings)

    def load_options(self, settings: ModelSettings, recordings: bool) -> LoadOptions:
        """How views are made: recordings at the model's training rate (unless
        ``keep_rate``) and, at the ``auto`` level, normalised; images as they are."""
        sample_rate = None if self.keep_rate or not recordings else settings.sample_rate
        normalize = self.level == "normalize" or (self.level == "auto" and recordings)
        return LoadOptions(sample_rate, normalize)

    def segmenter(
        self,
        model: BudSAM,
        settings: ModelSettings,
        recordings: bool,
        device: torch.device | None = None,
    ) -> Segmenter:
        """A :class:`Segmenter` for recordings or for spectrogram images, as asked."""
        box = self.box
        band = None if box is None else BandPrompt((box[0], box[1]), (box[2], box[3]))
        overlap = self.overlap
        if overlap is None:
            overlap = settings.recording_defaults()[0] if recordings else DEFAULT_OVERLAP
        as_recordings = recordings and self.prompt != "gt_box"
        return Segmenter(
            model, settings, prompt="box" if band else self.prompt, band=band,
            default_sr=self.sr, overlap=overlap, threshold=self.threshold,
            tile_width=self.tile_width or settings.tile_width
            or (RECORDING_TILE_WIDTH if recordings else None),
            batch_size=self.batch_size, device=device, amp=self.amp, seed=self.seed,
            rendering=self.rendering_for(recordings, settings),
            time_flip=settings.time_flip(self.time_flip, as_recordings),
            skip_contrast=self.skip_contrast if recordings and self.level != "bsd" else 0.0,
        )  # fmt: skip
