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
from pathlib import Path

import numpy as np
import torch

from utils.audio.render import BSD_RENDERING, KINDS, Rendering
from utils.common.cpu import cpu_threads, keep_freed_memory
from utils.data.inputs import (
    LoadOptions,
    discover,
)
from utils.inference.folder_run import denoise_all, prepare_output
from utils.inference.segmenter import (
    DEFAULT_OVERLAP,
    RECORDING_RENDERING,
    RECORDING_TILE_WIDTH,
    BandPrompt,
    Segmenter,
    load_model,
    positive_int,
)
from utils.model.sam import MODEL_TYPES
from utils.scoring import reports


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
    p.add_argument("--level", choices=("auto", "normalize", "bsd"), default="auto",
                   help="normalize: make each spectrogram at a level that does not depend on "
                   "the recorder's gain; bsd: as the data set (|STFT| clipped at 1); auto: "
                   "normalize for recordings, bsd for BSD images")  # fmt: skip
    p.add_argument("--render", choices=("auto", *KINDS), default="auto",
                   help="how the mask becomes audio: binary keeps or drops each bin (the data "
                   "set); soft scales each bin by its probability; auto: "
                   f"{RECORDING_RENDERING.spec} for recordings, binary otherwise")  # fmt: skip
    p.add_argument("--floor_db", type=float, default=None,
                   help="least gain of any bin, e.g. -20 (attenuate rather than cut)")  # fmt: skip
    p.add_argument("--margin_hz", type=float, default=None,
                   help="also keep this much above and below what the mask keeps")  # fmt: skip
    p.add_argument("--margin_ms", type=float, default=None,
                   help="also keep this much before and after what the mask keeps")  # fmt: skip
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
    try:
        choose_rendering(args, for_recordings=True)
    except ValueError as err:
        parser.error(str(err))
    if not 0 <= args.overlap < 1:
        parser.error(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.io_thread and (args.threads or os.cpu_count() or 1) < 2:
        parser.error("--io_thread needs 2 or more --threads (1 for it, the rest for the model)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    return args


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
        rendering=choose_rendering(args, is_recordings and args.prompt != "gt_box"),
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
    normalize = args.level == "normalize" or (args.level == "auto" and is_recordings)
    options = LoadOptions(sample_rate, normalize)
    level = "normalised" if normalize else "as the data set (|STFT| clipped at 1)"
    print(f"spectrogram level: {level}; rendering: {segmenter.rendering.spec}")

    rows, skipped, notes, compute_seconds = denoise_all(
        found, segmenter, out, args.save_overlays, io_thread, options
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
        "level": "normalized" if normalize else "bsd",
        "rendering": segmenter.rendering.spec,
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


def choose_rendering(args: argparse.Namespace, for_recordings: bool) -> Rendering:
    """The rendering the flags ask for: ``auto`` parts from :data:`RECORDING_RENDERING` for
    recordings, and from the data set's binary mask otherwise (BSD images, the paper's
    ground-truth box)."""
    base = RECORDING_RENDERING if for_recordings else BSD_RENDERING
    return Rendering(
        kind=base.kind if args.render == "auto" else args.render,
        floor_db=base.floor_db if args.floor_db is None else args.floor_db,
        margin_hz=base.margin_hz if args.margin_hz is None else args.margin_hz,
        margin_ms=base.margin_ms if args.margin_ms is None else args.margin_ms,
        threshold=args.threshold,
    )


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
