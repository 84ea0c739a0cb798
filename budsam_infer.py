"""Denoise bird recordings with a trained BudSAM model: a folder in, masks and audio out.

    # a BSD split (Images/, optional Masks/, Raw_audios/, ...), scored where references exist
    python budsam_infer.py -i data/synthetic/test -o results/test \\
        -checkpoint work_dir/quickstart-<id>/budsam_model_best.pth
    # your own recordings (wav/flac/ogg/mp3, any length, bit depth and number of channels)
    python budsam_infer.py -i my_recordings/ -o denoised/ -checkpoint CKPT
    # only what lies between 0.5-3 s and 2-9 kHz
    python budsam_infer.py -i song.wav -o out/ -checkpoint CKPT --box 0.5 3 2000 9000

Writes ``masks/NAME.png`` (at the spectrogram's own size), ``denoised/NAME.wav``
whenever the audio is known, ``overlays/NAME.png`` with ``--save_overlays``,
``metrics.csv`` (one row per spectrogram) and ``summary.json``. A file that cannot
be read is reported, skipped and counted; the run goes on. A recording's channels are
segmented one by one (masks ``NAME``, ``NAME_left``/``NAME_right``, or ``NAME_ch1``...
for more than two) and its denoised file keeps them all. Problems that leave a file
usable (its recording is missing or does not fit the image, its mask holds values
other than 0 and 255, its audio is silent) are warnings, listed in ``summary.json``.
Bad arguments, checkpoints and output folders stop the run before any work, with one
line naming the file and the problem.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from utils.audio import io as audio_io
from utils.common.cpu import cpu_threads, keep_freed_memory
from utils.common.progress import Progress
from utils.data.image_io import write_png
from utils.data.inputs import RECORDING, Discovery, Source, View, discover, load_or_skip
from utils.data.visualize import overlay
from utils.inference.segmenter import (
    DEFAULT_OVERLAP,
    RECORDING_TILE_WIDTH,
    BandPrompt,
    Segmenter,
    denoise,
    load_model,
    positive_int,
)
from utils.model.sam import MODEL_TYPES
from utils.scoring import reports

OUTPUT_DIRS = ("masks", "denoised", "overlays")
RESULT_FILES = ("metrics.csv", "summary.json")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Denoise bird recordings or BSD spectrograms with a BudSAM model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("-i", "--input", required=True, help="a BSD split or root, a folder of "
                   "spectrogram PNGs, or a folder (or file) of recordings")  # fmt: skip
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-checkpoint", "--checkpoint", required=True,
                   help="a BudSAM checkpoint or an official SAM checkpoint")  # fmt: skip
    p.add_argument("-model_type", "--model_type", default=None, choices=MODEL_TYPES,
                   help="read from a BudSAM checkpoint; needed by official SAM files")  # fmt: skip
    p.add_argument("--split", default="test", help="the split to read when -i is a BSD root")
    p.add_argument("--prompt", choices=("full", "gt_box"), default="full",
                   help="full: the whole spectrogram (no ground truth); gt_box: the paper's "
                   "box around the ground-truth mask (needs Masks/)")  # fmt: skip
    p.add_argument("--box", nargs=4, type=float, metavar=("T0", "T1", "F0", "F1"), default=None,
                   help="prompt every file with this time span (s) and band (Hz); the mask "
                   "is kept inside it")  # fmt: skip
    p.add_argument("--sr", type=positive_int, default=None,
                   help="sample rate for --box on spectrograms without audio")  # fmt: skip
    p.add_argument("--keep_rate", action="store_true",
                   help="segment recordings at their own sample rate (default: resampled to "
                   "the rate the checkpoint was trained at, which it records)")  # fmt: skip
    p.add_argument("--tile_width", type=positive_int, default=None,
                   help="frames per time tile (default: the checkpoint's; otherwise whole "
                   f"spectrograms, and {RECORDING_TILE_WIDTH} for recordings)")  # fmt: skip
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                   help="fraction of a tile shared with the next")  # fmt: skip
    p.add_argument("--threshold", type=float, default=0.5, help="mask probability threshold")
    p.add_argument("--batch_size", type=positive_int, default=8, help="tiles per model call")
    p.add_argument("--device", choices=("cuda", "cpu"),
                   default="cuda" if torch.cuda.is_available() else "cpu")  # fmt: skip
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="none")
    p.add_argument("--save_overlays", action="store_true", help="also write overlays/NAME.png")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an output folder that already holds results")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the gt_box jitter")
    p.add_argument(
        "--io_thread",
        action="store_true",
        help="read and write files on a background thread while the model runs on the other "
        "threads (faster where reading and writing cost about as much as the model: vit_tiny "
        "on whole images; needs 2 or more threads)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch, NumPy's BLAS and OpenCV (default: all cores)",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.box is not None and args.prompt == "gt_box":
        parser.error("--box and --prompt gt_box are two different prompts; give one")
    if args.box is not None:
        t0, t1, f0, f1 = args.box
        if not (0 <= t0 < t1 and 0 <= f0 < f1):
            parser.error(f"--box needs 0 <= T0 < T1 and 0 <= F0 < F1, got {t0} {t1} {f0} {f1}")
    if not 0 <= args.overlap < 1:
        parser.error(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.io_thread and (args.threads or os.cpu_count() or 1) < 2:
        parser.error("--io_thread needs 2 or more --threads (1 for it, the rest for the model)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    return args


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
    out: Path, source: Source, views: list[View], masks: list[np.ndarray], overlays: bool
) -> list[np.ndarray | None]:
    """Write the masks, overlays and denoised audio of one source; return the denoised views.

    A recording's channels go back into one file of its channel count and sample rate.
    """
    denoised = [denoise(view, mask) for view, mask in zip(views, masks, strict=True)]
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
    return denoised


def write_denoised(path: Path, y: np.ndarray, sr: int) -> None:
    """16-bit WAV like the dataset's, or 32-bit float when 16 bits would clip."""
    audio_io.write_audio(path, y, sr, subtype="PCM_16" if np.max(np.abs(y)) < 1.0 else "FLOAT")


def load_usable(
    source: Source, segmenter: Segmenter, skipped: list, notes: list, sample_rate: int | None
) -> list[View]:
    """The views of ``source`` (recordings resampled to ``sample_rate`` if given) if it
    can be read and prompted; else record why not. A recording left at another rate than
    the model's training rate is a warning."""
    views = load_or_skip(source, skipped, notes, sample_rate)
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
    sample_rate: int | None = None,
) -> tuple[list[dict], list[str], list[str], float]:
    """Segment and denoise every source, writing its outputs as soon as it is done;
    recordings are resampled to ``sample_rate`` when it is given.

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

    def write_batch(batch: list[tuple[Source, list[View]]], masks: list[np.ndarray]) -> None:
        masks = iter(masks)
        for source, source_views in batch:
            source_masks = [next(masks) for _ in source_views]
            denoised = write_source_outputs(out, source, source_views, source_masks, overlays)
            rows.extend(map(reports.view_row, source_views, source_masks, denoised))
        progress.update(len(batch))

    def flush() -> Future:
        masks = segmenter.masks([view for _, source_views in pending for view in source_views])
        writing = run(write_batch, list(pending), masks)
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
                loading = run(load_usable, source, segmenter, skipped, notes, sample_rate)
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


def main(argv: list[str] | None = None) -> int:
    """Denoise ``-i`` into ``-o`` within ``--threads`` (default: all cores).

    With ``--io_thread`` files are read and written on a background thread while the
    model runs on the other threads, NumPy's BLAS and OpenCV (spectrograms, resizing)
    on one each, so that the total stays within the cap.
    """
    args = parse_args(argv)
    keep_freed_memory()
    threads = args.threads or os.cpu_count() or 1
    caps = cpu_threads(1, model_threads=threads - 1) if args.io_thread else cpu_threads(threads)
    with caps:
        return denoise_folder(args, args.io_thread)


def denoise_folder(args: argparse.Namespace, io_thread: bool) -> int:
    """The work of :func:`main`; returns its exit code."""
    out = Path(args.output)
    try:
        found = discover(args.input, args.split)
        if args.prompt == "gt_box" and not found.has_masks:
            raise ValueError(f"{found.root}: --prompt gt_box needs ground-truth masks (Masks/)")
        prepare_output(out, args.overwrite, args.save_overlays)
        device = torch.device(args.device)
        start = time.perf_counter()
        model, settings = load_model(args.checkpoint, args.model_type, device)
        load_seconds = time.perf_counter() - start
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    is_recordings = found.layout == "recordings"
    band = None if args.box is None else BandPrompt(tuple(args.box[:2]), tuple(args.box[2:]))
    segmenter = Segmenter(
        model, settings, prompt="box" if band else args.prompt, band=band, default_sr=args.sr,
        tile_width=args.tile_width or settings.tile_width
        or (RECORDING_TILE_WIDTH if is_recordings else None),
        overlap=args.overlap, threshold=args.threshold, batch_size=args.batch_size,
        device=device, amp=args.amp, seed=args.seed,
    )  # fmt: skip
    print(f"{found.root}: {found.layout}, {len(found.sources)} files; model {settings.model_type} "
          f"(loaded in {load_seconds:.1f} s); prompt {segmenter.prompt}")  # fmt: skip
    if segmenter.prompt == "gt_box":
        print("note: --prompt gt_box builds each box from the GROUND-TRUTH mask (the paper's "
              "protocol); its scores are not those of a model without ground truth")  # fmt: skip
    for problem in found.problems:
        print(f"warning: {problem}", file=sys.stderr)
    sample_rate = None if args.keep_rate or not is_recordings else settings.sample_rate
    if is_recordings:
        print(recording_rate_note(settings.sample_rate, args.keep_rate))

    rows, skipped, notes, compute_seconds = denoise_all(
        found, segmenter, out, args.save_overlays, io_thread, sample_rate
    )
    notes = found.problems + notes
    summary = {
        "input": str(found.root),
        "layout": found.layout,
        "checkpoint": str(args.checkpoint),
        "model_type": settings.model_type,
        "prompt": segmenter.prompt,
        "uses_ground_truth": segmenter.prompt == "gt_box",
        "box": args.box,
        "tile_width": segmenter.tile_width,
        "overlap": args.overlap,
        "half_spectrum": settings.half_spectrum,
        "training_sample_rate": settings.sample_rate,
        "recordings_resampled_to": sample_rate,
        "threshold": args.threshold,
        "threads": args.threads,
        "io_thread": io_thread,
        "device": str(device),
        "files": len(found.sources),
        "skipped": len(skipped),
        "skipped_reasons": skipped,
        "warnings": notes,
        "model_load_seconds": load_seconds,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **reports.summarize(rows, compute_seconds),
    }
    reports.write_rows_csv(out / "metrics.csv", rows, reports.ROW_COLUMNS)
    reports.write_json(out / "summary.json", summary)
    print_summary(summary, out)
    return 0


def recording_rate_note(trained_sr: int | None, keep_rate: bool) -> str:
    """One line on the rate recordings are segmented at."""
    if trained_sr is None:
        return (
            "note: the checkpoint records no training sample rate (an official SAM file, or "
            "trained before BudSAM recorded it): recordings are segmented at their own rates"
        )
    if keep_rate:
        return (
            f"note: --keep_rate: recordings are segmented at their own rates (the model "
            f"was trained at {trained_sr} Hz; a file at another rate is warned about)"
        )
    return (
        f"note: recordings are resampled to {trained_sr} Hz, the model's training rate, and "
        "the denoised files are written at that rate (--keep_rate keeps their own)"
    )


def print_summary(summary: dict, out: Path) -> None:
    """A few lines: what was done, what was skipped, and the mean scores that exist."""
    print(f"{summary['n_views']} spectrograms denoised, {summary['skipped']} files skipped, "
          f"{len(summary['warnings'])} warnings (reasons in summary.json); "
          f"{summary['audio_seconds']:.1f} s of audio in {summary['compute_seconds']:.1f} s "
          f"({summary['audio_per_compute_second']:.1f} s of audio per second)")  # fmt: skip
    shown = [(k, summary[k]) for k in ("fg_iou", "paper_iou", "bsd_sdr", "si_sdr", "si_sdr_imp")]
    scores = ", ".join(f"{k} {v:.3f}" for k, v in shown if not np.isnan(v))
    if scores:
        print(f"mean {scores}")
    print(f"results in {out}/ (metrics.csv, summary.json, masks/, denoised/)")


if __name__ == "__main__":
    sys.exit(main())
