"""Denoising a folder: this process's share of its files, each written (with its record,
:mod:`utils.inference.records`) as soon as it is done.

Spectrogram images are read ahead and segmented in full batches; recordings are
streamed one at a time (:func:`utils.inference.streaming.denoise_recording`), and their
bird-sound regions written as Raven selection tables.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.audio import io as audio_io
from utils.common.progress import Progress
from utils.data.image_io import overlay, write_png
from utils.data.inputs import (
    AS_STORED,
    RECORDING,
    LoadOptions,
    Source,
    View,
    load_or_skip,
)
from utils.data.selection_table import (
    TABLE_SUFFIX,
    selections_for_recording,
    write_selection_table,
)
from utils.inference import records
from utils.inference.segmenter import Segmenter
from utils.inference.streaming import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_PNG_MAX_SECONDS,
    denoise_recording,
)
from utils.scoring import reports

OUTPUT_DIRS = ("masks", "denoised", "overlays", "selections")
RESULT_FILES = ("metrics.csv", "summary.json")


@dataclass(frozen=True)
class FolderOptions:
    """How a folder is denoised beyond the segmenter: overlays, the I/O thread (images),
    how views are made, and for recordings the streaming block, the longest recording
    that still gets mask PNGs, and Raven tables to prompt with (a file or a folder)."""

    overlays: bool = False
    io_thread: bool = False
    load: LoadOptions = AS_STORED
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    png_max_seconds: float = DEFAULT_PNG_MAX_SECONDS
    selections: Path | None = None


def prepare_output(
    out: Path, overwrite: bool, resume: bool, settings: dict, folders: tuple[str, ...]
) -> None:
    """Create the output folder and its ``folders`` (of :data:`OUTPUT_DIRS`), writable, and
    start the run's records (``resume``: continue them). A folder that holds results is
    refused unless ``overwrite`` or ``resume``.

    Raises:
        ValueError: naming the folder (or its ``run.json``), with what to do.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    found = [name for name in RESULT_FILES if (out / name).exists()]
    found += [f"{d}/" for d in OUTPUT_DIRS if (out / d).is_dir() and any((out / d).iterdir())]
    if found and not (overwrite or resume):
        hint = "--resume to continue it, " if (out / records.RUN_FILE).is_file() else ""
        raise ValueError(
            f"{out}: already holds results ({', '.join(found)}); pass {hint}--overwrite or "
            "choose another -o"
        )
    reports.make_output_folder(out)
    for name in folders:
        reports.make_output_folder(out / name)
    records.start_records(out, settings, resume)


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
    else record why not."""
    views = load_or_skip(source, skipped, notes, options)
    reasons = [r for r in map(segmenter.cannot_segment, views) if r]
    for reason in reasons:
        skipped.append(reason)
        print(f"warning: skipped: {reason}", file=sys.stderr)
    return [] if reasons else views


def new_record(source: Source) -> dict:
    return {"name": source.name, "rows": [], "skipped": [], "warnings": []}


def denoise_all(
    sources: list[Source], segmenter: Segmenter, out: Path, options: FolderOptions
) -> list[dict]:
    """Denoise ``sources`` into ``out`` and return their records, in order; a source that
    has a record already (a resumed run) is not done again, unless it was skipped."""
    done = {
        s.name: r for s in sources if (r := records.read_record(out, s.name)) and not r["skipped"]
    }
    todo = [source for source in sources if source.name not in done]
    if len(done):
        print(f"resuming: {len(done)} files done before, {len(todo)} to do")
    progress = Progress(len(todo), "denoise", interval=max(1, len(todo) // 20))
    recordings = [source for source in todo if source.kind == RECORDING]
    for source in recordings:
        done[source.name] = denoise_one_recording(source, segmenter, out, options)
        progress.update()
    images = [source for source in todo if source.kind != RECORDING]
    for record in denoise_images(images, segmenter, out, options, progress.update):
        done[record["name"]] = record
    progress.close()
    return [done[source.name] for source in sources]


def denoise_one_recording(
    source: Source, segmenter: Segmenter, out: Path, options: FolderOptions
) -> dict:
    """Stream one recording (see :func:`denoise_recording`), write its selection table and
    record, and return the record (a skipped file's says why)."""
    record = new_record(source)
    try:
        prompts = None
        if options.selections is not None:
            prompts = selections_for_recording(options.selections, source.path)
            if not prompts:
                raise ValueError(f"{source.path}: no selections for it in {options.selections}")
        result = denoise_recording(
            source, segmenter, out, options.load, chunk_seconds=options.chunk_seconds,
            png_max_seconds=options.png_max_seconds, overlays=options.overlays, selections=prompts,
        )  # fmt: skip
        write_selection_table(out / "selections" / f"{source.name}{TABLE_SUFFIX}",
                              result.selections)  # fmt: skip
        record["rows"], record["warnings"] = result.rows, result.warnings
    except ValueError as err:
        record["skipped"].append(str(err))
    except MemoryError:
        record["skipped"].append(f"{source.path}: ran out of memory (lower --chunk_seconds or "
                                 "--png_max_seconds)")  # fmt: skip
    except (RuntimeError, OSError) as err:  # a full disk, a device error: the others go on
        record["skipped"].append(f"{source.path}: {type(err).__name__}: {err}")
    for reason in record["skipped"]:
        print(f"warning: skipped: {reason}", file=sys.stderr)
    for warning in record["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    records.write_record(out, source.name, record)
    return record


def denoise_images(
    sources: list[Source],
    segmenter: Segmenter,
    out: Path,
    options: FolderOptions,
    on_done: Callable[[], None],
) -> list[dict]:
    """Segment and denoise spectrogram images, writing each one's outputs and record as
    soon as it is done; returns their records.

    Sources are gathered until their tiles fill a batch, so the encoder runs on
    full batches even for small images. With ``options.io_thread``, reading files (and
    their spectrograms) and writing outputs run on one background thread, in order,
    while this one runs the model: the next batch is read while this one is segmented.
    """
    done: list[dict] = []
    pending: list[tuple[dict, Source, list[View]]] = []
    background = ThreadPoolExecutor(max_workers=1) if options.io_thread else None

    def run(job, *job_args) -> Future:
        """``job(*job_args)`` on the background thread, or now when there is none."""
        if background is not None:
            return background.submit(job, *job_args)
        finished: Future = Future()
        finished.set_result(job(*job_args))
        return finished

    def load(source: Source) -> tuple[dict, Source, list[View]]:
        record = new_record(source)
        return record, source, load_usable(source, segmenter, record["skipped"], record["warnings"],
                                   options.load)  # fmt: skip

    def finish(record: dict) -> None:
        records.write_record(out, record["name"], record)
        done.append(record)
        on_done()

    def write_batch(batch: list[tuple[dict, Source, list[View]]], maps: list[np.ndarray]) -> None:
        maps = iter(maps)
        for record, source, source_views in batch:
            source_maps = [next(maps) for _ in source_views]
            masks, denoised = write_source_outputs(
                out, source, source_views, source_maps, segmenter, options.overlays
            )
            record["rows"] = list(map(reports.view_row, source_views, masks, denoised))
            finish(record)

    def flush() -> Future:
        views = [view for _, _, source_views in pending for view in source_views]
        writing = run(write_batch, list(pending), segmenter.probabilities(views))
        pending.clear()
        return writing

    queue = iter(sources)
    reading: deque[Future] = deque()
    writing: list[Future] = []
    try:
        while True:
            # Read ahead up to a batch of files (one each when not in the background).
            while len(reading) < (segmenter.batch_size if background else 1):
                source = next(queue, None)
                if source is None:
                    break
                reading.append(run(load, source))
            if not reading:
                break
            record, source, views = reading.popleft().result()
            if not views:
                run(finish, record)  # in order with the other records
                continue
            pending.append((record, source, views))
            tiles = sum(segmenter.count_tiles(v) for _, _, vs in pending for v in vs)
            if tiles >= segmenter.batch_size:
                writing.append(flush())
        if pending:
            writing.append(flush())
        for finished in writing:
            finished.result()  # re-raises a writing error here
    finally:
        if background is not None:
            background.shutdown(wait=True, cancel_futures=True)
    return done
