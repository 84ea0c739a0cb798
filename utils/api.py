"""Denoise a recording in one call: a file or an array in, arrays out.

    from utils.api import BudSAMDenoiser

    denoiser = BudSAMDenoiser.from_checkpoint("work_dir/RUN/budsam_model_best.pth")
    result = denoiser.denoise("song.wav", box=(0.5, 3.0, 2000, 9000))
    result.audio, result.sr, result.mask, result.regions

A recording goes through the code ``budsam_infer.py`` runs on one
(:func:`utils.inference.streaming.denoise_recording`, the same options and defaults), and
an array through it too, read as a file would be: the results are the command line's,
kept in memory instead of written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.audio.stream import AudioArray
from utils.data.inputs import RECORDING, Source
from utils.data.selection_table import Selection
from utils.inference.options import SegmentOptions
from utils.inference.segmenter import ModelSettings, load_model
from utils.inference.sinks import MemorySink
from utils.inference.streaming import DEFAULT_CHUNK_SECONDS, denoise_recording
from utils.model.budsam import BudSAM

# The options of budsam_infer.py that apply to recordings (see its --help): rendering
# (render, floor_db, margin_hz, margin_ms), threshold, level, tiles, and so on.
OPTIONS = tuple(
    field.name
    for field in dataclasses.fields(SegmentOptions)
    if field.name not in ("prompt", "box", "sr", "seed")  # images' prompts; per call
)


@dataclass
class Denoised:
    """What :meth:`BudSAMDenoiser.denoise` gives.

    ``audio``: float32 denoised samples, ``(samples,)`` for a mono file or a 1-D array,
    else ``(channels, samples)``, at ``sr`` Hz (the model's training rate unless
    ``keep_rate``: a resampled recording's length changes). ``mask``: bool, the model's
    mask over each channel's spectrogram, ``(1024, T)`` (mono) or ``(channels, 1024, T)``,
    as the command line's ``masks/NAME.png``: column ``t`` is STFT frame ``t`` (samples
    ``64 t ... 64 t + 127``), row ``511 + k`` is bin ``k`` (``k * sr / 1024`` Hz, from 0 at
    row 511 down to ``sr / 2`` at the last row; the rows above mirror bins 1 ... 511);
    None with ``mask=False``. ``regions``: the bird-sound regions of every channel, in time
    order (Raven selections, 1-based ``channel``, as ``selections/NAME.selections.txt``).
    ``warnings``: what the command line would warn about (a silent channel...), but for
    clipping to 16 bits: the audio here stays float.
    """

    audio: np.ndarray
    sr: int
    mask: np.ndarray | None
    regions: list[Selection]
    warnings: list[str]


class BudSAMDenoiser:
    """A BudSAM model and the options it denoises recordings with (see
    :meth:`from_checkpoint`)."""

    def __init__(
        self,
        model: BudSAM,
        settings: ModelSettings,
        options: SegmentOptions | None = None,
        device: torch.device | None = None,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    ) -> None:
        if not chunk_seconds > 0:
            raise ValueError(f"--chunk_seconds must be above 0, got {chunk_seconds}")
        self.model, self.settings, self.device = model, settings, device
        self.options = options or SegmentOptions()
        self.chunk_seconds = chunk_seconds

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        *,
        model_type: str | None = None,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        **options,
    ) -> BudSAMDenoiser:
        """Load a BudSAM (or, with ``model_type``, an official SAM) checkpoint.

        ``options``: any of :data:`OPTIONS`, as ``budsam_infer.py``'s flags of the same
        names (e.g. ``render="binary"``, ``floor_db=-30``, ``threshold=0.4``); the others
        default as there for recordings.

        Raises:
            ValueError: the command line's one line, for a missing, unreadable or wrong
                checkpoint, or an option out of range; for ``device="cuda"`` without one.
            TypeError: for an unknown option.
        """
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unknown options {unknown}; expected some of {list(OPTIONS)}")
        segment_options = SegmentOptions(**options)
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda: no CUDA device is visible; use device='cpu'")
        model, settings = load_model(str(path), model_type, device)
        return cls(model, settings, segment_options, device, chunk_seconds)

    def denoise(
        self,
        audio_or_path: str | Path | np.ndarray,
        sr: int | None = None,
        box: Sequence[float] | None = None,
        *,
        mask: bool = True,
    ) -> Denoised:
        """Denoise a recording: a file's path, or an array ``(samples,)`` or
        ``(channels, samples)`` at ``sr`` Hz (float, or integer PCM scaled as a file's).

        ``box``: ``(T0, T1, F0, F1)``, a time span in seconds and a band in Hz, as
        ``--box``: every channel is prompted with it and nothing outside it is kept.
        ``mask=False`` keeps no mask (a long recording's takes 1 byte per pixel).

        Raises:
            ValueError: naming the recording, when it cannot be read or the box does not
                fit it; for an array without ``sr``, or a path with one.
        """
        box = None if box is None else tuple(float(value) for value in box)
        options = dataclasses.replace(self.options, box=box)
        segmenter = options.segmenter(self.model, self.settings, True, self.device)
        source, squeeze = _source(audio_or_path, sr)
        sink = MemorySink(keep_masks=mask)
        result = denoise_recording(
            source, segmenter, None, options.load_options(self.settings, True),
            chunk_seconds=self.chunk_seconds, sink=sink,
        )  # fmt: skip
        squeeze = sink.channels == 1 if squeeze is None else squeeze
        masks = np.stack(sink.masks) if mask else None
        return Denoised(
            audio=sink.audio[0] if squeeze else sink.audio,
            sr=sink.sr,
            mask=masks[0] if squeeze and masks is not None else masks,
            regions=result.selections,
            warnings=result.warnings,
        )


def _source(audio_or_path: str | Path | np.ndarray, sr: int | None) -> tuple[Source, bool | None]:
    """The recording to stream, and whether its output is 1-D (None: when it is mono)."""
    if isinstance(audio_or_path, (str, Path)):
        if sr is not None:
            raise ValueError(f"{audio_or_path}: sr is for arrays; a file's rate is its own")
        path = Path(audio_or_path)
        return Source(path.stem, RECORDING, path), None
    if sr is None:
        raise ValueError("an array needs its sample rate: denoise(audio, sr=...)")
    samples = np.asarray(audio_or_path)
    if samples.ndim == 2 and samples.shape[0] > samples.shape[1]:
        raise ValueError(f"expected (channels, samples), got shape {samples.shape} (more "
                         "channels than samples: pass audio.T?)")  # fmt: skip
    if samples.dtype in (np.int16, np.int32):  # PCM, scaled as soundfile reads it
        samples = samples / -float(np.iinfo(samples.dtype).min)
    elif not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"expected float samples, or int16/int32 PCM; got {samples.dtype}")
    if int(sr) != sr:
        raise ValueError(f"the sample rate must be a whole number of Hz, got {sr}")
    recording = AudioArray(np.atleast_2d(samples), int(sr))
    return Source("array", RECORDING, recording), samples.ndim == 1
