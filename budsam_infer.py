"""Denoise bird recordings with a trained BudSAM model: a folder in, masks and audio out.

    # a BSD split (Images/, optional Masks/, Raw_audios/, ...), scored where references exist
    python budsam_infer.py -i data/synthetic/test -o results/test \\
        -checkpoint work_dir/quickstart-<id>/budsam_model_best.pth
    # your own recordings (wav/flac/ogg/mp3, any length, bit depth and number of channels)
    python budsam_infer.py -i my_recordings/ -o denoised/ -checkpoint CKPT
    # only what lies between 0.5-3 s and 2-9 kHz, or inside each selection of Raven tables
    python budsam_infer.py -i song.wav -o out/ -checkpoint CKPT --box 0.5 3 2000 9000
    python budsam_infer.py -i my_recordings/ -o out/ -checkpoint CKPT --selections tables/
    # continue a run that was stopped, or split a large archive over processes or nodes
    python budsam_infer.py -i my_recordings/ -o denoised/ -checkpoint CKPT --resume
    torchrun --nproc_per_node 4 budsam_infer.py -i archive/ -o denoised/ -checkpoint CKPT

Writes ``denoised/NAME.wav`` whenever the audio is known, ``masks/NAME.png`` (at the
spectrogram's own size; for recordings only up to ``--png_max_seconds``),
``selections/NAME.selections.txt`` for recordings (the bird-sound regions as a Raven
selection table), ``overlays/NAME.png`` with ``--save_overlays``, ``metrics.csv`` (one
row per spectrogram) and ``summary.json``. Recordings are streamed: memory does not
grow with their length. A file that cannot be read is reported, skipped and counted;
the run goes on. A recording's channels are segmented one by one (masks ``NAME``,
``NAME_left``/``NAME_right``, or ``NAME_ch1``... for more than two) and its denoised
file keeps them all. Problems that leave a file usable (its recording is missing or
does not fit the image, its mask holds values other than 0 and 255, its audio is
silent) are warnings, listed in ``summary.json``. Bad arguments, checkpoints and output
folders stop the run before any work, with one line naming the file and the problem.

Each file's outputs are complete once its record (``records/NAME.json``) exists, so a
killed run loses nothing written and ``--resume`` redoes only the rest. Several
processes (torchrun, or one per ``--node_rank`` with ``--world_size`` and
``--init_method``) share the files, balanced by duration; rank 0 writes the merged
``metrics.csv`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from utils.audio.gated import HOPS
from utils.audio.render import KINDS
from utils.common import distributed
from utils.common.cli import OneSpellingHelpFormatter
from utils.common.cpu import cpu_threads, keep_freed_memory
from utils.common.memory import peak_resident_mb
from utils.data.inputs import discover, source_frames
from utils.inference.folder_run import FolderOptions, denoise_all, prepare_output
from utils.inference.options import SegmentOptions
from utils.inference.segmenter import (
    DEFAULT_OVERLAP,
    RECORDING_RENDERING,
    RECORDING_SKIP_CONTRAST,
    RECORDING_TILE_WIDTH,
    load_model,
    positive_int,
)
from utils.inference.streaming import DEFAULT_CHUNK_SECONDS, DEFAULT_PNG_MAX_SECONDS
from utils.model.factory import ALL_MODEL_TYPES
from utils.scoring import reports


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Denoise bird recordings or BSD spectrograms with a BudSAM model.",
        formatter_class=OneSpellingHelpFormatter,
    )
    p.add_argument("-i", "--input", required=True, help="a BSD split or root, a folder of "
                   "spectrogram PNGs, or a folder (or file) of recordings")  # fmt: skip
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-checkpoint", "--checkpoint", required=True,
                   help="a BudSAM checkpoint or an official SAM checkpoint")  # fmt: skip
    p.add_argument("-model_type", "--model_type", default=None, choices=ALL_MODEL_TYPES,
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
                   "set); soft scales each bin by its probability; gated scales each bin of a "
                   "finer STFT by its probability times a noise gate; auto: "
                   f"{RECORDING_RENDERING.spec} for recordings (or what the checkpoint's "
                   "training preset records), binary otherwise")  # fmt: skip
    p.add_argument("--floor_db", type=float, default=None,
                   help="least gain of any bin, e.g. -20 (attenuate rather than cut); gated: "
                   "near what the mask keeps")  # fmt: skip
    p.add_argument("--far_floor_db", type=float, default=None,
                   help="gated: least gain of bins far from what the mask keeps")  # fmt: skip
    p.add_argument("--gate_alpha", type=float, default=None,
                   help="gated: how much the noise gate over-estimates the noise (higher: "
                   "quieter, and more of faint calls lost)")  # fmt: skip
    p.add_argument("--gate_gamma", type=float, default=None,
                   help="gated: the exponent of the probability in the gain, in (0, 1] (lower: "
                   "the bins the model is unsure of keep more of their sound)")  # fmt: skip
    p.add_argument("--gate_smooth_hz", type=float, default=None,
                   help="gated: average the noise gate over this much above and below each "
                   "bin (fewer bins flickering on and off)")  # fmt: skip
    p.add_argument("--gate_smooth_ms", type=float, default=None,
                   help="gated: average the gate over this much before and after")  # fmt: skip
    p.add_argument("--gate_chorus_share", type=float, default=None,
                   help="gated: a frequency the mask keeps in over this share of the frames "
                   "within 5 s is gated against its mean power (insects); 1: off")  # fmt: skip
    p.add_argument("--gate_hops", type=int, default=None, choices=HOPS,
                   help="gated: finer-STFT frames over each sample (2: about half the "
                   "rendering's time)")  # fmt: skip
    p.add_argument("--energy_db", type=float, default=None,
                   help="gated: pass only the bins at least this far above their frequency's "
                   "floor (its lower median over the recording) in the spectrogram image, e.g. "
                   "7.5")  # fmt: skip
    p.add_argument("--margin_hz", type=float, default=None,
                   help="also keep this much above and below what the mask keeps")  # fmt: skip
    p.add_argument("--margin_ms", type=float, default=None,
                   help="also keep this much before and after what the mask keeps")  # fmt: skip
    p.add_argument("--tile_width", type=positive_int, default=None,
                   help="frames per time tile (default: the checkpoint's; otherwise whole "
                   f"spectrograms, and {RECORDING_TILE_WIDTH} for recordings)")  # fmt: skip
    p.add_argument("--overlap", type=float, default=None,
                   help="fraction of a tile shared with the next (default: what the "
                   "checkpoint's training preset records for recordings, else "
                   f"{DEFAULT_OVERLAP})")  # fmt: skip
    p.add_argument("--time_flip", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the model on the tiles of the time-reversed input and "
                   "blend their maps in (twice the model's work; default: what the checkpoint's "
                   "training preset records for recordings, off otherwise)")  # fmt: skip
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
        help="spectrogram images: read and write files on a background thread while the model "
        "runs on the other threads (faster where reading and writing cost about as much as "
        "the model: vit_tiny on whole images); recordings: run the model on a background "
        "thread while the recording is read, transformed, rendered and written (always on "
        "a GPU). Needs 2 or more threads",
    )
    p.add_argument("--selections", default=None,
                   help="a Raven selection table, or a folder of them matched by recording "
                   "name: one box prompt per selection, in place of --box")  # fmt: skip
    p.add_argument("--png_max_seconds", type=float, default=DEFAULT_PNG_MAX_SECONDS,
                   help="write mask PNGs (and overlays) of recordings up to this long; longer "
                   "ones get their selection table only (0: never)")  # fmt: skip
    p.add_argument("--chunk_seconds", type=float, default=DEFAULT_CHUNK_SECONDS,
                   help="recordings are rendered and written this much at a time")  # fmt: skip
    p.add_argument("--skip_contrast", type=float, default=RECORDING_SKIP_CONTRAST,
                   help="recordings at the normalised level: tiles where nothing stands out "
                   "more than this above the background skip the model (0: none do)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in the same -o: files done are kept, "
                   "the others done again")  # fmt: skip
    p.add_argument("--world_size", type=positive_int, default=1,
                   help="processes in all, one per --node_rank (or torchrun's)")  # fmt: skip
    p.add_argument("--node_rank", type=int, default=0, help="this process's rank")
    p.add_argument("--init_method", default="tcp://127.0.0.1:29518",
                   help="where the processes meet (rank 0's address)")  # fmt: skip
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
    if args.box is not None and args.selections is not None:
        parser.error("--box and --selections are two different prompts; give one")
    if args.selections is not None and args.prompt == "gt_box":
        parser.error("--selections and --prompt gt_box are two different prompts; give one")
    if args.resume and args.overwrite:
        parser.error("--resume keeps what a run wrote, --overwrite replaces it; give one")
    if not args.chunk_seconds > 0:
        parser.error(f"--chunk_seconds must be above 0, got {args.chunk_seconds}")
    if not 0 <= args.node_rank < args.world_size:
        parser.error(f"--node_rank must be in [0, --world_size), got {args.node_rank}")
    try:
        SegmentOptions.from_args(args)  # the box, rendering and overlap
    except ValueError as err:
        parser.error(str(err))
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


# Ranks wait for each other only at the end, after their last file: allow for hours of
# imbalance (one rank's last file may be a day-long recording).
RANK_WAIT_SECONDS = 24 * 3600.0
# Settings a resumed run must share with the run it continues (they decide the outputs).
RUN_SETTINGS = ("model_type", "split", "prompt", "box", "selections", "sr", "keep_rate", "level",
                "render", "floor_db", "far_floor_db", "gate_alpha", "gate_gamma", "gate_hops",
                "gate_smooth_hz", "gate_smooth_ms", "gate_chorus_share",
                "energy_db", "margin_hz", "margin_ms", "tile_width", "overlap", "time_flip",
                "threshold", "amp", "seed", "save_overlays", "png_max_seconds",
                "skip_contrast")  # fmt: skip


def run_settings(args: argparse.Namespace, rendering: str) -> dict:
    """What decides a run's outputs: input, checkpoint, :data:`RUN_SETTINGS`, rendering spec."""
    settings = {name: getattr(args, name) for name in RUN_SETTINGS}
    settings["rendering"] = rendering
    settings["input"] = str(Path(args.input).resolve())
    settings["checkpoint"] = str(Path(args.checkpoint).resolve())
    return settings


def denoise_folder(args: argparse.Namespace, io_thread: bool) -> int:
    """The work of :func:`main` on this process's share of the files; returns its exit
    code. Rank 0 writes the merged results."""
    ctx = distributed.init_distributed(0, args.world_size, args.node_rank, 1, args.init_method,
                                       args.device, timeout_s=RANK_WAIT_SECONDS)  # fmt: skip
    try:
        return denoise_share(args, io_thread, ctx)
    finally:
        distributed.cleanup()


def denoise_share(args: argparse.Namespace, io_thread: bool, ctx: distributed.DistContext) -> int:
    out = Path(args.output)
    error = None
    try:
        found = discover(args.input, args.split)
        if args.prompt == "gt_box" and not found.has_masks:
            raise ValueError(f"{found.root}: --prompt gt_box needs ground-truth masks (Masks/)")
        if args.selections is not None and found.layout != "recordings":
            raise ValueError(f"{found.root}: --selections prompts recordings, this is a "
                             f"{found.layout}")  # fmt: skip
        if args.selections is not None and not Path(args.selections).exists():
            raise ValueError(f"{args.selections}: no such selection table or folder")
        is_recordings = found.layout == "recordings"
        start = time.perf_counter()
        model, settings = load_model(args.checkpoint, args.model_type, ctx.device)
        load_seconds = time.perf_counter() - start
        segment_options = SegmentOptions.from_args(args)
        if ctx.is_main:
            folders = ("masks", "denoised") + (("overlays",) if args.save_overlays else ())
            folders += ("selections",) if is_recordings else ()
            rendering = segment_options.rendering_for(is_recordings, settings).spec
            prepare_output(out, args.overwrite, args.resume, run_settings(args, rendering), folders)
    except ValueError as err:
        error = str(err)
    errors = [e for e in distributed.all_gather(error) if e]
    if errors:
        if ctx.is_main:
            print(f"error: {errors[0]}", file=sys.stderr)
        return 2
    segmenter = segment_options.segmenter(model, settings, is_recordings, ctx.device)
    segmenter.background_model |= io_thread
    ctx.log(f"{found.root}: {found.layout}, {len(found.sources)} files; model "
            f"{settings.model_type} (loaded in {load_seconds:.1f} s); prompt "
            f"{'selections' if args.selections else segmenter.prompt}"
            + (f"; {ctx.world_size} processes" if ctx.distributed else ""))  # fmt: skip
    if segmenter.prompt == "gt_box":
        ctx.log("note: --prompt gt_box builds each box from the GROUND-TRUTH mask (the paper's "
                "protocol); its scores are not those of a model without ground truth")  # fmt: skip
    if ctx.is_main:
        for problem in found.problems:
            print(f"warning: {problem}", file=sys.stderr)
    load = segment_options.load_options(settings, is_recordings)
    sample_rate, normalize = load.sample_rate, load.normalize_level
    if is_recordings:
        ctx.log(recording_rate_note(settings.sample_rate, args.keep_rate))
    options = FolderOptions(
        overlays=args.save_overlays, io_thread=io_thread, load=load,
        chunk_seconds=args.chunk_seconds, png_max_seconds=args.png_max_seconds,
        selections=None if args.selections is None else Path(args.selections),
    )  # fmt: skip
    level = "normalised" if normalize else "as the data set (|STFT| clipped at 1)"
    ctx.log(f"spectrogram level: {level}; rendering: {segmenter.rendering.spec}; tile "
            f"overlap {segmenter.overlap:g}")  # fmt: skip

    weights = [source_frames(source, sample_rate) for source in found.sources]
    share = distributed.shard_by_weight(weights, ctx.rank, ctx.world_size)
    start = time.perf_counter()
    done = denoise_all([found.sources[i] for i in share], segmenter, out, options)
    seconds = time.perf_counter() - start
    peak_mb = peak_resident_mb()
    shares = distributed.all_gather((done, seconds, peak_mb))
    if not ctx.is_main:
        return 0
    by_name = {record["name"]: record for records, _, _ in shares for record in records}
    ordered = [by_name[source.name] for source in found.sources]
    rows = [row for record in ordered for row in record["rows"]]
    skipped = [reason for record in ordered for reason in record["skipped"]]
    notes = found.problems + [warning for record in ordered for warning in record["warnings"]]
    summary = {
        "input": str(found.root),
        "layout": found.layout,
        "checkpoint": str(args.checkpoint),
        "model_type": settings.model_type,
        "prompt": "selections" if args.selections else segmenter.prompt,
        "uses_ground_truth": segmenter.prompt == "gt_box",
        "box": args.box,
        "selections": args.selections,
        "tile_width": segmenter.tile_width,
        "overlap": segmenter.overlap,
        "time_flip": segmenter.time_flip,
        "half_spectrum": settings.half_spectrum,
        "training_sample_rate": settings.sample_rate,
        "recordings_resampled_to": sample_rate,
        "level": "normalized" if normalize else "bsd",
        "rendering": segmenter.rendering.spec,
        "threshold": args.threshold,
        "threads": args.threads,
        "io_thread": io_thread,
        "device": str(ctx.device),
        "processes": ctx.world_size,
        "resumed": args.resume,
        "files": len(found.sources),
        "skipped": len(skipped),
        "skipped_reasons": skipped,
        "warnings": notes,
        "model_load_seconds": load_seconds,
        "peak_memory_mb": max(peak for _, _, peak in shares),
        **reports.summarize(rows, max(seconds for _, seconds, _ in shares)),
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
    print(f"results in {out}/ (metrics.csv, summary.json, denoised/, masks/"
          + (", selections/)" if summary["layout"] == "recordings" else ")"))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
