"""Denoising a folder: reading files ahead, segmenting their views in full batches, and
writing each file's masks, overlays and denoised audio as soon as it is done."""

from __future__ import annotations

import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from utils.audio import io as audio_io
from utils.common.progress import Progress
from utils.data.image_io import write_png
from utils.data.inputs import (
    AS_STORED,
    RECORDING,
    Discovery,
    LoadOptions,
    Source,
    View,
    load_or_skip,
)
from utils.data.visualize import overlay
from utils.inference.segmenter import Segmenter
from utils.scoring import reports

OUTPUT_DIRS = ("masks", "denoised", "overlays")
RESULT_FILES = ("metrics.csv", "summary.json")


def prepare_output(out: Path, overwrite: bool, save_overlays: bool) -> None:
    """Create the output folders, writable; refuse one that holds results unless
    ``overwrite`` (nothing in it is touched then)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    found = [name for name in RESULT_FILES if (out / name).exists()]
    found += [f"{d}/" for d in OUTPUT_DIRS if (out / d).is_dir() and any((out / d).iterdir())]
    if found and not overwrite:
        raise ValueError(
            f"{out}: already holds results ({', '.join(found)}); pass --overwrite or choose "
            "another -o"
        )
    reports.make_output_folder(out)
    for name in OUTPUT_DIRS[:2] + (("overlays",) if save_overlays else ()):
        reports.make_output_folder(out / name)


def write_source_outputs(
    out: Path,
    source: Source,
    views: list[View],
    probabilities: list[np.ndarray],
    segmenter: Segmenter,
    overlays: bool,
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Write the masks, overlays and denoised audio of one source (rendered as
    ``segmenter.rendering`` says); return the masks and the denoised views.

    A recording's channels go back into one file of its channel count and sample rate.
    """
    rendered = [segmenter.render(view, p) for view, p in zip(views, probabilities, strict=True)]
    masks = [mask for mask, _, _ in rendered]
    denoised = [audio for _, audio, _ in rendered]
    for view, mask in zip(views, masks, strict=True):
        write_png(out / "masks" / f"{view.name}.png", mask)
        if overlays:
            rgb = np.round(overlay(view.image, mask) * 255).astype(np.uint8)
            write_png(out / "overlays" / f"{view.name}.png", rgb)
    if source.kind == RECORDING:
        stacked = np.stack([d for d in denoised if d is not None])
        write_denoised(out / "denoised" / f"{source.name}.wav", stacked, views[0].sr)
    else:
        for view, signal in zip(views, denoised, strict=True):
            if signal is not None:
                write_denoised(out / "denoised" / f"{view.name}.wav", signal, view.sr)
    return masks, denoised


def write_denoised(path: Path, y: np.ndarray, sr: int) -> None:
    """16-bit WAV like the dataset's, or 32-bit float when 16 bits would clip."""
    audio_io.write_audio(path, y, sr, subtype="PCM_16" if np.max(np.abs(y)) < 1.0 else "FLOAT")


def load_usable(
    source: Source, segmenter: Segmenter, skipped: list, notes: list, options: LoadOptions
) -> list[View]:
    """The views of ``source`` (made as ``options`` say) if it can be read and prompted;
    else record why not. A recording left at another rate than the model's training rate
    is a warning."""
    views = load_or_skip(source, skipped, notes, options)
    trained_sr = segmenter.settings.sample_rate
    if source.kind == RECORDING and views and trained_sr and views[0].sr != trained_sr:
        notes.append(
            f"{source.path}: recorded at {views[0].sr} Hz and segmented at that rate, but the "
            f"model was trained at {trained_sr} Hz: its calls lie on other image rows"
        )
        print(f"warning: {notes[-1]}", file=sys.stderr)
    reasons = [r for r in map(segmenter.cannot_segment, views) if r]
    for reason in reasons:
        skipped.append(reason)
        print(f"warning: skipped: {reason}", file=sys.stderr)
    return [] if reasons else views


def denoise_all(
    found: Discovery,
    segmenter: Segmenter,
    out: Path,
    overlays: bool,
    io_thread: bool = False,
    options: LoadOptions = AS_STORED,
) -> tuple[list[dict], list[str], list[str], float]:
    """Segment and denoise every source (read as ``options`` say), writing its outputs as
    soon as it is done.

    Sources are gathered until their tiles fill a batch, so the encoder runs on
    full batches even for short files. With ``io_thread``, reading files (and their
    spectrograms) and writing outputs run on one background thread, in order, while
    this one runs the model: the next batch is read while this one is segmented.
    Returns the metric rows, the skipped files (with reasons), the warnings and the
    processing seconds (from reading the first file to writing the last outputs;
    loading the model excluded).
    """
    rows: list[dict] = []
    skipped: list[str] = []
    notes: list[str] = []
    pending: list[tuple[Source, list[View]]] = []
    progress = Progress(len(found.sources), "denoise", interval=max(1, len(found.sources) // 20))
    background = ThreadPoolExecutor(max_workers=1) if io_thread else None

    def run(job, *job_args) -> Future:
        """``job(*job_args)`` on the background thread, or now when there is none."""
        if background is not None:
            return background.submit(job, *job_args)
        done: Future = Future()
        done.set_result(job(*job_args))
        return done

    def write_batch(batch: list[tuple[Source, list[View]]], maps: list[np.ndarray]) -> None:
        maps = iter(maps)
        for source, source_views in batch:
            source_maps = [next(maps) for _ in source_views]
            masks, denoised = write_source_outputs(
                out, source, source_views, source_maps, segmenter, overlays
            )
            rows.extend(map(reports.view_row, source_views, masks, denoised))
        progress.update(len(batch))

    def flush() -> Future:
        views = [view for _, source_views in pending for view in source_views]
        writing = run(write_batch, list(pending), segmenter.probabilities(views))
        pending.clear()
        return writing

    start = time.perf_counter()
    sources = iter(found.sources)
    reading: deque[tuple[Source, Future]] = deque()
    writing: list[Future] = []
    try:
        while True:
            # Read ahead up to a batch of files (one each when not in the background).
            while len(reading) < (segmenter.batch_size if background else 1):
                source = next(sources, None)
                if source is None:
                    break
                loading = run(load_usable, source, segmenter, skipped, notes, options)
                reading.append((source, loading))
            if not reading:
                break
            source, loading = reading.popleft()
            views = loading.result()
            if not views:
                run(progress.update)  # in order with the other updates
                continue
            pending.append((source, views))
            tiles = sum(segmenter.count_tiles(v) for _, vs in pending for v in vs)
            if tiles >= segmenter.batch_size:
                writing.append(flush())
        if pending:
            writing.append(flush())
        for done in writing:
            done.result()  # re-raises a writing error here
    finally:
        if background is not None:
            background.shutdown(wait=True, cancel_futures=True)
    progress.close()
    return rows, skipped, notes, time.perf_counter() - start
