"""Denoising one recording of any length in bounded memory.

A recording is read twice: for its length and level (:func:`scan_recording`), then frame
block by frame block. Its time tiles (one grid over the recording) go through the model
in batches, in order (on a background thread with ``Segmenter.background_model``; the
results are the same); a frame is final once every tile over it is blended, and blocks
of final frames are rendered (with the context they need), written and forgotten.
Memory depends on ``chunk_seconds`` and the tile width, not on the recording's length;
the masks do not depend on ``chunk_seconds``. Masks become Raven selections
(:class:`RegionTracker`); mask PNGs (and overlays) are kept for recordings up to
``png_max_seconds``. A :class:`utils.inference.sinks.RecordingSink` may take the
outputs instead of files."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from utils.audio import bsd
from utils.audio.conventions import CENTER_ROW, HOP_LENGTH, N_BINS, N_FFT, num_frames
from utils.audio.gated import block_gains, source_frames
from utils.audio.kernel import istft_planes
from utils.audio.level import loud_bins
from utils.audio.stream import (
    FrameStream,
    recording_blocks,
    recording_info,
    resampled_length,
    scan_recording,
)
from utils.common.progress import Progress
from utils.data.inputs import LoadOptions, Source, channel_names
from utils.data.preprocess import full_box
from utils.data.selection_table import Selection
from utils.data.tiling import tile_box, tile_grids
from utils.inference.box_prompts import BoxPrompt, box_gate, box_prompts, prompt_region, tile_jobs
from utils.inference.held_frames import HeldFrames
from utils.inference.predict import blend_tile, tile_maps
from utils.inference.regions import RegionTracker
from utils.inference.segmenter import Segmenter
from utils.inference.sinks import FileSink, RecordingSink
from utils.scoring.reports import recording_row

DEFAULT_CHUNK_SECONDS = 30.0  # the gated rendering pays its 5.1 s of context once a block
DEFAULT_PNG_MAX_SECONDS = 60.0
PROGRESS_MIN_SECONDS = 300  # a recording this long reports its own progress
PCM16_FULL_SCALE = 32767.5 / 32768  # from here on a sample is clipped in a 16-bit WAV


@dataclass
class RecordingResult:
    """What denoising a recording gave: a metrics row per channel, warnings, and the
    bird-sound regions of every channel."""

    rows: list[dict]
    warnings: list[str] = field(default_factory=list)
    selections: list[Selection] = field(default_factory=list)


def denoise_recording(
    source: Source,
    segmenter: Segmenter,
    out: Path | None,
    options: LoadOptions,
    *,
    chunk_seconds: float,
    png_max_seconds: float = DEFAULT_PNG_MAX_SECONDS,
    overlays: bool = False,
    selections: list[Selection] | None = None,
    sink: RecordingSink | None = None,
) -> RecordingResult:
    """Denoise ``source`` (a recording) into ``out/denoised/NAME.wav``, written block by
    block, and return its rows and regions (the caller writes the selection table).

    Prompts: ``segmenter.prompt`` ``full`` or ``box`` (its band on every channel), or one
    box per selection when ``selections`` is given. ``options`` as for
    :func:`utils.data.inputs.load_views`. ``sink`` takes the outputs instead (``out``,
    ``png_max_seconds`` and ``overlays`` are then unused); ``source.path`` may be an
    :class:`utils.audio.stream.AudioArray`.

    Raises:
        ValueError: naming the file, when it cannot be read or prompted (the denoised
            WAV is only renamed into place once whole).
    """
    if segmenter.prompt == "gt_box":
        raise ValueError(f"{source.path}: --prompt gt_box needs a ground-truth mask; a "
                         "recording has none")  # fmt: skip
    sink = sink or FileSink(out, png_max_seconds, overlays)
    info = recording_info(source.path)
    sr = options.sample_rate or info.sr
    result = RecordingResult([])
    trained_sr = segmenter.settings.sample_rate
    if trained_sr and sr != trained_sr:
        result.warnings.append(f"{source.path}: recorded at {sr} Hz and segmented at that rate, "
                               f"but the model was trained at {trained_sr} Hz: its calls lie "
                               "on other image rows")  # fmt: skip
    estimate = resampled_length(info.samples, info.sr, sr)
    energy_db = segmenter.rendering.energy_cue_db
    scan = scan_recording(source.path, sr, info.channels, estimate, energy_db is not None)
    names = channel_names(source.name, info.channels)
    for name in (name for name, silent in zip(names, scan.silent, strict=True) if silent):
        result.warnings.append(f"{source.path}: the audio of {name} is silent (all zeros); "
                               "its audio scores are left empty")  # fmt: skip
    n_frames = num_frames(scan.samples)
    boxes = None
    if selections is None and segmenter.prompt == "box":
        band = segmenter.band
        selections = [Selection(*band.seconds, *band.hertz, c + 1) for c in range(info.channels)]
    if selections is not None:
        boxes, unused = box_prompts(source.path, selections, sr, n_frames, info.channels,
                                    segmenter.settings.half_spectrum)  # fmt: skip
        result.warnings += unused
    gains = scan.gains if options.normalize_level else [1.0] * info.channels
    keep_masks, notes = sink.wants_masks(source.path, scan.samples / sr, n_frames)
    result.warnings += notes
    run = _StreamedRun(segmenter, sr, n_frames, scan.samples, info.channels, gains, boxes,
                       keep_masks, keep_masks and sink.keeps_images)  # fmt: skip
    run.floors = [scan.floors(c, g) for c, g in enumerate(gains)] if scan.bin_medians else []
    seconds = scan.samples // sr
    if seconds >= PROGRESS_MIN_SECONDS:
        run.progress = Progress(seconds, f"{source.name} (s of audio)", interval=seconds // 10)
    subtype = sink.subtype(info.subtype)
    with sink.writer(source.name, sr, info.channels, subtype, scan.samples) as write:
        chunk_frames = max(1, int(chunk_seconds * sr / HOP_LENGTH))
        energies, clipped = run.run(FrameStream(recording_blocks(source.path, sr)), write,
                                    chunk_frames, subtype)  # fmt: skip
    if run.progress is not None:
        run.progress.close()
    if clipped:
        result.warnings.append(f"{source.path}: {clipped} denoised samples reached full scale "
                               "and were clipped in the 16-bit WAV")  # fmt: skip
    for c, name in enumerate(names):
        result.rows.append(recording_row(name, scan.samples / sr, *energies[c]))
        result.selections += run.trackers[c].finish()
        if keep_masks:
            sink.mask(name, np.concatenate(run.png_masks[c], axis=1), run.png_images[c])
    result.selections.sort(key=lambda s: (s.begin_s, s.channel))
    return result


class _StreamedRun:
    """The state of one recording's streamed run: the frames held (planes, images,
    blended probabilities) and what is written."""

    def __init__(
        self,
        segmenter: Segmenter,
        sr: int,
        n_frames: int,
        n_samples: int,
        channels: int,
        gains: list[float],
        boxes: list[BoxPrompt] | None,
        keep_masks: bool,
        keep_images: bool = False,
    ) -> None:
        self.segmenter, self.sr, self.n_frames, self.n_samples = segmenter, sr, n_frames, n_samples
        self.channels, self.gains, self.boxes = channels, gains, boxes
        self.keep_masks, self.keep_images = keep_masks, keep_images
        self.size = segmenter.model.img_size
        self.half = segmenter.settings.half_spectrum
        self.tile_width = segmenter.tile_width
        if not self.tile_width:
            raise ValueError("a recording is segmented in time tiles: give a tile width")
        self.margin = segmenter.rendering.context_frames(sr)  # frames rendering looks across
        self.progress: Progress | None = None
        self.floors: list[np.ndarray] = []  # per channel, for the rendering's energy_db
        # The gated rendering reads samples, not the BSD STFT: its planes need not be held.
        keep_planes = segmenter.rendering.kind != "gated"
        weight_rows = 1 if boxes is None else self.size
        self.frames = HeldFrames(channels, self.size, weight_rows, keep_planes)
        self.trackers = [RegionTracker(sr, c + 1) for c in range(channels)]
        self.png_masks: list[list[np.ndarray]] = [[] for _ in range(channels)]
        self.png_images: list[list[np.ndarray]] = [[] for _ in range(channels)]

    def jobs(self) -> list[tuple[int, int, int, bool]]:
        """:func:`tile_jobs` of the recording's tile grid and, with time flip, of its mirror
        run reversed: in the order the model sees them."""
        tw, segmenter = self.tile_width, self.segmenter
        grids = tile_grids(self.n_frames, tw, segmenter.overlap, segmenter.time_flip)
        return tile_jobs(grids, self.channels, self.boxes, tw, self.half, self.size)

    def run(
        self,
        stream: FrameStream,
        write: Callable[[np.ndarray], None],
        chunk_frames: int,
        subtype: str,
    ) -> tuple[list[list[float]], int]:
        """Segment, render and ``write`` the whole recording (``(channels, n)`` blocks,
        ``chunk_frames`` frames at a time); returns each channel's [raw energy, energy of
        denoised minus raw] and how many samples reached 16-bit full scale."""
        self.stream, self.write, self.subtype = stream, write, subtype
        self.energies = [[0.0, 0.0] for _ in range(self.channels)]
        self.clipped = 0
        rendered = 0  # hops written: 0 ... rendered - 1
        with ThreadPoolExecutor(1) as executor:
            background = executor if self.segmenter.background_model else None
            pending = None  # the batch in the model: its jobs, prompts and maps to collect
            for batch in self.batches():
                if pending and batch[0][0] >= pending[0][-1][0] + self.tile_width:
                    # A gap: render up to this batch before reading past the one in the model.
                    self._blend(*pending)
                    pending = None
                    rendered = self._render_final(rendered, batch[0][0], chunk_frames)
                crops, prompts = self._model_inputs(batch)
                if pending is not None:
                    self._blend(*pending)
                pending = (batch, prompts, self._maps(batch, crops, prompts, background))
                # Frames before this batch's first tile are final: render them a block at a
                # time (while the model runs, with a background model).
                rendered = self._render_final(rendered, batch[0][0], chunk_frames)
            if pending is not None:
                self._blend(*pending)
        self._render_final(rendered, self.n_frames + 1 + self.margin, chunk_frames, last=True)
        return self.energies, self.clipped

    def batches(self) -> list[list[tuple[int, int, int, bool]]]:
        """:meth:`jobs` in batches of ``batch_size``, cut short where a job starts more than
        ``batch_size`` tiles after its batch's first (sparse box prompts), so a batch never
        holds more than that many tiles' frames."""
        size, reach = self.segmenter.batch_size, self.segmenter.batch_size * self.tile_width
        batches: list[list[tuple[int, int, int, bool]]] = []
        for job in self.jobs():
            if not batches or len(batches[-1]) == size or job[0] - batches[-1][0][0] > reach:
                batches.append([])
            batches[-1].append(job)
        return batches

    def _render_final(
        self, rendered: int, final: int, chunk_frames: int, last: bool = False
    ) -> int:
        """Render, a block of ``chunk_frames`` at a time, the hops whose frames (with the
        margin's context) lie before frame ``final``, all of them when ``last``; forget
        what no later step needs. Returns the hops rendered so far."""
        stop = min(final - self.margin, self.n_frames + 1)
        while stop - rendered >= chunk_frames or (last and rendered < stop):
            rendered = self._render(rendered, min(stop, rendered + chunk_frames))
            self._release(min(final, rendered - 1 - self.margin))
        return rendered

    def _extend(self, stop: int) -> None:
        """Hold frames up to ``stop`` (planes, images, empty sums)."""
        if stop <= self.frames.held:
            return
        planes = self.stream.planes(self.frames.held, stop)
        gains = self.gains
        images = [bsd.planes_to_half_image(p, gain) for p, gain in zip(planes, gains, strict=True)]
        self.frames.append(planes, images)

    def _model_inputs(self, chunk: list[tuple[int, int, int, bool]]) -> tuple[list, list]:
        """The crops and box prompts of a batch of tiles (its frames read, transformed)."""
        tw = self.tile_width
        self._extend(min(self.n_frames, max(job[0] for job in chunk) + tw))
        crops, prompts = [], []
        for start, c, b, _ in chunk:
            at = start - self.frames.first
            crop = self.frames.images(c)[:, at : at + tw].copy()  # the frames' buffer may move
            if crop.shape[1] < tw:
                crop = np.pad(crop, ((0, 0), (0, tw - crop.shape[1])))
            crop = crop if self.half else bsd.two_sided(crop)
            crops.append(crop)
            if b < 0:
                prompts.append(full_box(self.size, self.size))
            else:
                prompts.append(tile_box(self.boxes[b].pixels, start, crop.shape, self.half,
                                        self.size))  # fmt: skip
        return crops, prompts

    def _maps(
        self, chunk: list, crops: list, prompts: list, background: ThreadPoolExecutor | None
    ) -> Callable[[], list[np.ndarray]]:
        """What returns the model's maps of a batch (run in ``background`` when given)."""
        segmenter, skip = self.segmenter, 0.0 if self.boxes else self.segmenter.skip_contrast
        args = (segmenter.model, crops, prompts, segmenter.device, segmenter.amp,
                segmenter.settings.reference_preprocess, skip, [j[3] for j in chunk])  # fmt: skip
        if background is not None:
            return background.submit(tile_maps, *args).result
        maps = tile_maps(*args)
        return lambda: maps

    def _blend(
        self, chunk: list[tuple[int, int, int, bool]], prompts: list, maps: Callable[[], list]
    ) -> None:
        """Blend a batch's maps into the held frames' sums."""
        tw = self.tile_width
        for (start, c, b, _), prompt, tile_map in zip(chunk, prompts, maps(), strict=True):
            width = min(tw, self.n_frames - start)
            region = None if b < 0 else prompt_region(prompt, self.size, tw, width)
            at = start - self.frames.first
            blend_tile(self.frames.sums(c), self.frames.weights(c), tile_map, at, tw, width,
                       region)  # fmt: skip

    def _render(self, first_hop: int, stop_hop: int) -> int:
        """Write hops ``first_hop ... stop_hop - 1`` (64 samples each; hop ``n_frames`` is
        the last frame's second half, then the samples past the last frame); returns
        ``stop_hop``."""
        f0 = max(0, first_hop - 1 - self.margin)
        f1 = min(self.n_frames, stop_hop + self.margin)
        self._extend(f1)
        g0, g1 = max(0, first_hop - 1), min(self.n_frames, stop_hop)
        s0 = first_hop * HOP_LENGTH
        s1 = self.n_samples if stop_hop > self.n_frames else stop_hop * HOP_LENGTH
        raw = self.stream.samples(s0, s1)
        out = np.zeros_like(raw)
        kept_stop = min(stop_hop, self.n_frames)  # the frames whose masks this block adds
        for c in range(self.channels):
            if self.segmenter.rendering.kind == "gated":
                hops = self._gated(c, f0, f1, (s0, s1))
                probability, _ = self._probability(c, first_hop, kept_stop)
                kept = slice(None)
            else:
                probability, gate = self._probability(c, f0, f1)
                gains = self.segmenter.rendering.gains(probability, self.sr)
                if gate is not None:
                    gains *= gate
                gains = gains[:, g0 - f0 : g1 - f0]
                weights = 2.0 * cv2.transpose(gains) if self.half else bsd.kept_bin_counts(gains)
                planes = self.frames.planes(c)[:, g0 - self.frames.first : g1 - self.frames.first]
                signal = 0.5 * istft_planes(planes, weights=weights)
                hops = signal[(first_hop - g0) * HOP_LENGTH :][: s1 - s0]
                kept = slice(first_hop - f0, kept_stop - f0)
            out[c, : len(hops)] = hops
            mask = probability[:, kept] >= self.segmenter.threshold
            if mask.shape[1]:
                half = slice(None) if self.half else slice(CENTER_ROW, None)  # bins 0 ... 512
                self.trackers[c].add(first_hop, mask[half], probability[half, kept])
                if self.keep_masks:
                    self.png_masks[c].append(bsd.two_sided(mask) if self.half else mask)
                if self.keep_images:
                    at = first_hop - self.frames.first
                    image = self.frames.images(c)[:, at : at + stop_hop - first_hop]
                    self.png_images[c].append(bsd.two_sided(image))
            self.energies[c][0] += float(np.sum(np.square(raw[c], dtype=np.float64)))
            self.energies[c][1] += float(np.sum(np.square(out[c] - raw[c], dtype=np.float64)))
        if self.subtype == "PCM_16":
            self.clipped += int(np.count_nonzero(np.abs(out) >= PCM16_FULL_SCALE))
        self.write(out)
        if self.progress is not None:  # whole seconds of audio written
            self.progress.update(s1 // self.sr - s0 // self.sr)
        return stop_hop

    def _probability(
        self, channel: int, f0: int, f1: int, columns: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """A channel's blended probabilities of held frames ``f0 ... f1 - 1`` (or of those
        ``columns`` of them, absolute frames) at all rows (bins 0 ... 512 for a
        half-spectrum model), zero outside the box prompts; and where the boxes are (None
        without)."""
        first = self.frames.first
        at = slice(f0 - first, f1 - first) if columns is None else columns - first
        sums, weight = self.frames.sums(channel)[:, at], self.frames.weights(channel)[:, at]
        rows = N_BINS if self.half else N_FFT
        if sums.shape[1] == 0:
            return np.zeros((rows, 0), np.float32), None
        blended = np.divide(sums, weight, out=np.zeros_like(sums), where=weight > 0)
        # Linear along rows only: the columns stay as they are.
        probability = cv2.resize(blended, (sums.shape[1], rows), interpolation=cv2.INTER_LINEAR)
        if self.boxes is None:
            return probability, None
        gate = box_gate(self.boxes, channel, f0, f1, self.half, columns)
        probability[~gate] = 0.0
        return probability, gate

    def _gated(self, channel: int, f0: int, f1: int, keep: tuple[int, int]) -> np.ndarray:
        """Samples ``keep`` of a channel under the gated rendering (:mod:`utils.audio.gated`),
        from the probabilities of held frames ``f0 ... f1 - 1`` (its context)."""
        half = slice(None) if self.half else slice(CENTER_ROW, None)  # bins 0 ... 512
        rendering = self.segmenter.rendering
        settings = rendering.gate
        columns = source_frames(settings, self.sr, keep, self.n_samples)
        if columns[0] < f0 or columns[-1] >= f1:
            raise ValueError(f"frames {f0} ... {f1 - 1} do not cover the gated rendering's")
        probability, gate = self._probability(channel, f0, f1, columns)
        if self.floors:
            image = self.frames.images(channel)[:, columns - self.frames.first]
            probability[half] *= loud_bins(image, self.floors[channel], rendering.energy_cue_db)
        region = None if gate is None else gate[half]
        first_sample = f0 * HOP_LENGTH
        stop = keep[1] + self.margin * HOP_LENGTH
        samples = self.stream.samples(first_sample, stop)[channel]
        gains = block_gains(samples, first_sample, probability[half], self.sr, settings, keep,
                            self.n_samples, region)  # fmt: skip
        return gains.rendered()

    def _release(self, before_frame: int) -> None:
        """Forget the frames before ``before_frame`` (and their samples)."""
        self.frames.release(before_frame)
        self.stream.release(self.frames.first * HOP_LENGTH)
