"""Segmenting spectrogram views with a trained model, and turning masks into audio.

:func:`load_model` reads a BudSAM checkpoint (with the settings it was trained
with) or an official SAM checkpoint; :class:`Segmenter` predicts a binary mask
per :class:`utils.data.inputs.View`, tile by tile along time for long spectrograms,
under one of three prompts: the whole spectrogram (``full``, needs no ground
truth), the paper's box around the ground-truth mask (``gt_box``), or a user's
time span and frequency band (``box``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from utils.audio import bsd
from utils.audio.conventions import CENTER_ROW
from utils.audio.gated import FineGains
from utils.audio.level import image_floors, loud_bins
from utils.audio.render import BSD_RENDERING, Rendering, apply_gains, parse_rendering
from utils.data.inputs import View
from utils.data.preprocess import scaled_box_shift
from utils.data.tiling import overlapping_tile_starts
from utils.inference.predict import predict_probabilities
from utils.model.budsam import BudSAM
from utils.model.factory import load_trained
from utils.model.sam import checkpoint_args

PROMPTS = ("full", "gt_box", "box")


# Time tiles for recordings when the model was trained on whole images: about the
# width of a BSD image (the published sample's is 3032 frames, 4 s at 48 kHz).
RECORDING_TILE_WIDTH = 3032
DEFAULT_OVERLAP = 0.25
# How recordings' masks become audio unless told otherwise (BSD images: the binary mask).
# Chosen on mixtures of the shared *_train folders (docs/evaluation.md, "Real field
# recordings"): the soft mask with a noise gate in a finer STFT, 20 dB of floor near the bird
# and 50 dB far from it, raised SI-SDR and BirdNET's confidence over every BSD-grid rendering;
# the probability's square root in the gain (gamma 0.5) raised BirdNET's confidence further;
# the gate averaged over 50 Hz and 20 ms either side raised SI-SDR by 0.5 dB, BirdNET unchanged;
# gating the bands the model keeps in over half the frames against their own mean power
# (insect choruses) raised both, with two models.
RECORDING_RENDERING = Rendering("gated", floor_db=-20.0, margin_hz=200.0, margin_ms=30.0,
                                far_floor_db=-50.0, alpha=2.0, gamma=0.5, smooth_hz=50.0,
                                smooth_ms=20.0, chorus_share=0.5)  # fmt: skip
# Tiles of level-normalised recordings whose contrast is below this are not run: the highest
# threshold that skipped no tile the quick-start model finds anything in, on the synthetic
# validation split and the *_train mixtures (``python -m bench.bench_tile_skip``).
RECORDING_SKIP_CONTRAST = 0.06


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (batch sizes, tile widths...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class ModelSettings:
    """How a checkpoint's model expects its input, from its training arguments."""

    model_type: str
    tile_width: int | None = None
    half_spectrum: bool = False
    reference_preprocess: bool = False
    bbox_shift: int = 20  # box jitter in pixels of a 1024 input (the paper's -bbox_shift)
    sample_rate: int | None = None  # the training recordings' (most common) rate, if known
    # How recordings are segmented and rendered by default with this model, when its
    # training run (its preset) says (None: DEFAULT_OVERLAP and RECORDING_RENDERING).
    recording_overlap: float | None = None
    recording_render: str | None = None
    recording_time_flip: bool = False  # also run the model on the time-reversed recording

    def time_flip(self, asked: bool | None, recordings: bool) -> bool:
        """Whether to run time-flip averaging: as ``asked``, else as recorded for
        recordings, and not for anything else (BSD images, the paper's protocol)."""
        return asked if asked is not None else recordings and self.recording_time_flip

    def recording_defaults(self) -> tuple[float, Rendering]:
        """The tile overlap and the rendering of recordings unless told otherwise."""
        overlap = DEFAULT_OVERLAP if self.recording_overlap is None else self.recording_overlap
        if self.recording_render is None:
            return overlap, RECORDING_RENDERING
        return overlap, parse_rendering(self.recording_render)


def load_model(
    checkpoint: str, model_type: str | None = None, device: torch.device | None = None
) -> tuple[BudSAM, ModelSettings]:
    """A model in eval mode from a BudSAM, baseline or official SAM checkpoint, and its
    settings (a baseline's is a :class:`BaselineSegmenter`, called as a BudSAM is).

    ``model_type`` is read from a BudSAM checkpoint; an official SAM file records
    none, so it must be given.

    Raises:
        ValueError: naming the file, when it is missing or unreadable, records another
            model type than the one given, or does not fit the model type.
    """
    args = checkpoint_args(checkpoint)
    recorded = args.get("model_type")
    if model_type and recorded and model_type != recorded:
        raise ValueError(
            f"{checkpoint}: the checkpoint is a {recorded} model, but -model_type {model_type} "
            "was given (leave -model_type out to use the recorded one)"
        )
    model_type = model_type or recorded
    if not model_type:
        raise ValueError(
            f"{checkpoint}: records no model type (an official SAM file?); pass "
            "-model_type vit_b, vit_l or vit_h"
        )
    model = load_trained(checkpoint, model_type, args).to(device or torch.device("cpu"))
    settings = model_settings(checkpoint, model_type, args)
    return model, settings


def model_settings(checkpoint: str, model_type: str, args: dict) -> ModelSettings:
    """The :class:`ModelSettings` of a checkpoint of ``model_type`` from its recorded
    training arguments ``args``.

    Raises:
        ValueError: naming the checkpoint, when its recorded inference defaults are not
            a rendering spec and an overlap in [0, 1).
    """
    settings = ModelSettings(
        model_type=model_type,
        tile_width=args.get("tile_width"),
        half_spectrum=bool(args.get("half_spectrum", False)),
        reference_preprocess=bool(args.get("ref_preprocess", False)),
        bbox_shift=int(args.get("bbox_shift", 20)),
        sample_rate=args.get("sample_rate"),
        recording_overlap=args.get("recording_overlap"),
        recording_render=args.get("recording_render"),
        recording_time_flip=bool(args.get("recording_time_flip") or False),
    )
    try:
        overlap, _ = settings.recording_defaults()
        if not 0 <= overlap < 1:
            raise ValueError(f"the overlap must be in [0, 1), got {overlap}")
    except ValueError as err:
        raise ValueError(f"{checkpoint}: its recorded inference defaults: {err}") from None
    return settings


@dataclass(frozen=True)
class BandPrompt:
    """A user's box: a time span in seconds and a frequency band in Hz."""

    seconds: tuple[float, float]
    hertz: tuple[float, float]


class Segmenter:
    """Clean-sound probability maps for views, at each spectrogram's own size
    (:meth:`probabilities`), and each view's binary mask and audio from its map
    (:meth:`render`).

    Args:
        model, settings: from :func:`load_model`.
        prompt: ``"full"``, ``"gt_box"`` (views must carry masks) or ``"box"``
            (with ``band``; views must know their sample rate, else ``default_sr``).
        tile_width: frames per time tile; None uses the checkpoint's, and whole
            images for a model trained on whole images.
        overlap: fraction of a tile shared with the next one.
        threshold: probability above which a pixel is clean sound.
        rendering: how :meth:`render` turns a view's probabilities into audio (its
            threshold is set to ``threshold``).
        skip_contrast: with the ``full`` prompt, tiles whose
            :func:`utils.inference.predict.tile_contrast` is below it are not run (their
            probabilities are 0); 0 runs every tile.
        background_model: streamed recordings run the model in a background thread while
            the recording is read, transformed, rendered and written; None: on a GPU only.
        time_flip: the model also runs on the tiles of the time-reversed input, blended in
            (see :func:`utils.inference.predict.predict_probabilities`).
    """

    def __init__(
        self,
        model: BudSAM,
        settings: ModelSettings,
        *,
        prompt: str = "full",
        band: BandPrompt | None = None,
        default_sr: int | None = None,
        threshold: float = 0.5,
        tile_width: int | None = None,
        overlap: float = DEFAULT_OVERLAP,
        device: torch.device | None = None,
        batch_size: int = 8,
        amp: str = "none",
        seed: int = 0,
        rendering: Rendering = BSD_RENDERING,
        skip_contrast: float = 0.0,
        background_model: bool | None = None,
        time_flip: bool = False,
    ) -> None:
        if prompt not in PROMPTS:
            raise ValueError(f"unknown prompt {prompt!r}; expected one of {PROMPTS}")
        if (prompt == "box") != (band is not None):
            raise ValueError("a box needs prompt='box' and a band, and only then")
        self.model, self.settings = model, settings
        self.prompt, self.band, self.default_sr = prompt, band, default_sr
        self.tile_width = tile_width or settings.tile_width
        self.overlap, self.threshold = overlap, threshold
        self.batch_size, self.device, self.amp, self.seed = batch_size, device, amp, seed
        self.rendering = dataclasses.replace(rendering, threshold=threshold)
        self.skip_contrast = skip_contrast if prompt == "full" else 0.0
        on_gpu = device is not None and device.type == "cuda"
        self.background_model = on_gpu if background_model is None else background_model
        self.time_flip = time_flip

    def cannot_segment(self, view: View) -> str | None:
        """Why this prompt cannot be used on ``view``, or None when it can."""
        if self.prompt == "gt_box" and view.mask is None:
            return f"{view.name}: --prompt gt_box needs its ground-truth mask, and it has none"
        if self.prompt == "box":
            sr = view.sr or self.default_sr
            if not sr:
                return f"{view.name}: --box needs the sample rate (no audio found; pass --sr)"
            try:
                bsd.band_extent(self.band.seconds, self.band.hertz, sr, view.image.shape[1])
            except ValueError as err:
                return f"{view.name}: {err}"
        return None

    def count_tiles(self, view: View) -> int:
        """How many tiles the model will see for ``view``."""
        width = view.image.shape[1]
        return len(overlapping_tile_starts(width, self.tile_width, self.overlap))

    def render(
        self, view: View, probabilities: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | FineGains | None]:
        """The view's binary mask (probability >= threshold), its audio rendered as
        ``rendering`` says, and the gain each STFT bin got (None, None without audio; a
        :class:`FineGains` for the gated rendering).

        The data set's binary rendering is :func:`denoise` of the mask exactly. With a
        ``box`` prompt nothing outside the band passes, whatever the floor or margin.
        """
        mask = probabilities >= self.threshold
        if view.audio is None:
            return mask, None, None
        if self.rendering.is_bsd:
            return mask, denoise(view, mask), mask.astype(np.float32)
        region = None
        if self.prompt == "box":
            sr = view.sr or self.default_sr
            region = bsd.band_region(self.band.seconds, self.band.hertz, sr, view.image.shape[1])
        if self.rendering.energy_cue_db is not None:
            half = view.image[CENTER_ROW:]
            loud = loud_bins(half, image_floors(half), self.rendering.energy_cue_db)
            probabilities = probabilities * bsd.two_sided(loud)
        gains = self.rendering.signal_gains(view.audio, probabilities, view.sr, region)
        return mask, apply_gains(view.audio, gains, planes=view.spectrum), gains

    def probabilities(self, views: list[View]) -> list[np.ndarray]:
        """One float32 ``(1024, T)`` clean-sound probability map per view (zero outside a
        ``box`` prompt's band; see :meth:`cannot_segment` first)."""
        if not views:
            return []
        boxes = regions = None
        if self.prompt == "box":
            seconds, hertz, half = self.band.seconds, self.band.hertz, self.settings.half_spectrum
            sizes = [(view.sr or self.default_sr, view.image.shape[1]) for view in views]
            boxes = [bsd.band_box(seconds, hertz, sr, w, half) for sr, w in sizes]
            regions = [bsd.band_region(seconds, hertz, sr, w) for sr, w in sizes]
        probabilities = predict_probabilities(
            self.model,
            [view.image for view in views],
            [view.mask for view in views] if self.prompt == "gt_box" else None,
            boxes=boxes,
            tile_width=self.tile_width,
            overlap=self.overlap if self.tile_width else 0.0,
            half_spectrum=self.settings.half_spectrum,
            max_shift=scaled_box_shift(self.settings.bbox_shift, self.model.img_size),
            seed=self.seed,
            names=[view.name for view in views],
            device=self.device,
            amp=self.amp,
            batch_size=self.batch_size,
            reference_preprocess=self.settings.reference_preprocess,
            skip_contrast=self.skip_contrast,
            time_flip=self.time_flip,
        )
        if regions is not None:
            for probability, region in zip(probabilities, regions, strict=True):
                probability[~region] = 0.0
        return probabilities


def denoise(view: View, mask: np.ndarray) -> np.ndarray | None:
    """The view's raw audio with the mask applied (BSD's image2audio); None without audio."""
    return None if view.audio is None else bsd.mask_to_audio(view.audio, mask, planes=view.spectrum)
