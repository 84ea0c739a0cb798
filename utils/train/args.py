"""Training's command line: the reference's spellings, presets, and the checks that
reject impossible settings and unusable files before any process starts."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from functools import partial
from pathlib import Path
from typing import NoReturn

import torch

from utils.audio.conventions import N_FFT
from utils.audio.render import parse_rendering
from utils.common import distributed
from utils.common.cli import OneSpellingHelpFormatter
from utils.data.bsd_layout import split_dir
from utils.data.preprocess import MASK_RESIZES
from utils.data.recordings import UserSounds
from utils.data.scan import scan_split
from utils.data.synthetic import generate_dataset, is_generated, is_synthetic_set
from utils.model.budsam import PIXEL_NORMS
from utils.model.factory import (
    ALL_MODEL_TYPES,
    BASELINE_PARTS,
    LOSSES,
    check_weights,
    default_loss,
    encoder_trained,
    is_baseline,
    model_input_size,
)
from utils.train import run_log
from utils.train.checkpointer import check_resume
from utils.train.losses import DICE_REDUCTIONS
from utils.train.presets import PRESETS
from utils.train.step_log import tensorboard_problem

TRAIN_PARTS = ("image_encoder", "mask_decoder")


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2), without the
    usage block: the line says what is wrong; ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.splitlines())}\n")


def get_args_parser() -> argparse.ArgumentParser:
    """The reference's argument spellings, each with a double-dash twin."""
    p = OneLineErrorParser(
        description="Fine-tune SAM to segment clean bird sound in BSD spectrograms (DDP).",
        formatter_class=OneSpellingHelpFormatter,
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="a set of defaults")
    p.add_argument("-i", "--tr_path", default="data/BSD", help="BSD root holding the splits")
    p.add_argument("-task_name", "--task_name", default="BudSAM-ViT-B")
    p.add_argument("-model_type", "--model_type", default="vit_b", choices=ALL_MODEL_TYPES,
                   help="a SAM (vit_*), or a baseline: custom_cnn, unet, deeplabv3")  # fmt: skip
    p.add_argument("-checkpoint", "--checkpoint", default=None, help="SAM or BudSAM weights")
    p.add_argument("-work_dir", "--work_dir", default="work_dir")
    p.add_argument("-num_epochs", "--num_epochs", type=int, default=100)
    p.add_argument("-batch_size", "--batch_size", type=int, default=4, help="per process")
    p.add_argument("-num_workers", "--num_workers", type=int, default=4, help="loader workers")
    p.add_argument("-lr", "--lr", type=float, default=5e-5)
    p.add_argument("-weight_decay", "--weight_decay", type=float, default=4e-4)
    p.add_argument(
        "--lr_schedule", choices=("constant", "cosine"), default="constant",
        help="cosine: 5%% linear warm-up, then cosine decay to 0 over the run",
    )  # fmt: skip
    p.add_argument("-bbox_shift", "--bbox_shift", type=int, default=20, help="box jitter at 1024")
    p.add_argument("--full_box_prob", type=float, default=0.5, help="P(whole-image box)")
    p.add_argument("--time_flip_prob", type=float, default=0.0, help="P(item reversed in time)")
    p.add_argument("--spectral_gain_db", type=float, default=0.0, help="gain per frequency, +-DB")
    p.add_argument(
        "--train_parts", default="mask_decoder", help="comma list of " + ",".join(TRAIN_PARTS)
    )
    p.add_argument("--ref_preprocess", action="store_true", help="the reference's resizing path")
    for flag, what in (("--bird_dir", "clean bird calls"), ("--noise_dir", "noise of your site")):
        p.add_argument(
            flag, default=None,
            help=f"a folder of your {what}, mixed into half of the built-in synthetic "
            "training recordings (with --preset cpu_demo; see docs/evaluation.md, 'Adapting "
            "BudSAM to a site')",
        )  # fmt: skip
    p.add_argument(
        "--pixel_norm", choices=("auto", *PIXEL_NORMS), default="auto",
        help="sam: SAM's pixel mean/std normalisation, which its pretrained encoder expects; "
        "none: [0, 1] grey as the reference feeds it; auto: sam when the image encoder is "
        "frozen (it cannot adapt), none when it is trained (the reference's behaviour)",
    )  # fmt: skip
    for switch, meaning in (
        ("--keep_in_memory", "keep preprocessed items (small sets)"),
        ("--half_spectrum", "use only bins 0-512 (the image mirrors them)"),
    ):
        p.add_argument(switch, action=argparse.BooleanOptionalAction, default=False, help=meaning)
    p.add_argument("--tile_width", type=int, help="cut images into time tiles of this many frames")
    told = "recorded in the checkpoint, for budsam_infer.py and budsam_eval.py on recordings "
    told += "unless told: "
    p.add_argument("--recording_overlap", type=float, help=f"{told}tile overlap (default: 0.25)")
    p.add_argument("--recording_time_flip", action=argparse.BooleanOptionalAction,
                   help=told + "--time_flip (default: off)")  # fmt: skip
    p.add_argument("--recording_render", help=told + "the rendering, as a spec such as "
                   "gated,floor=-20,margin=200:30,far=-50,alpha=2,gamma=0.5,hops=2")  # fmt: skip
    p.add_argument(
        "--mask_resize", choices=MASK_RESIZES, default="nearest",
        help="target masks at the input size: nearest ({0,1}, the reference) or area "
        "(soft: each pixel's foreground fraction)",
    )  # fmt: skip
    p.add_argument(
        "--input_size", type=int, default=None,
        help="the baselines' square input side (custom_cnn 512, unet and deeplabv3 256); "
        "SAM's is fixed",
    )  # fmt: skip
    p.add_argument(
        "--loss", choices=("auto", *LOSSES), default="auto",
        help="dice_bce: Dice + BCE (the reference); bce: BCE alone (the custom CNN's paper); "
        "auto: bce for custom_cnn, dice_bce otherwise",
    )  # fmt: skip
    p.add_argument(
        "--dice", choices=DICE_REDUCTIONS, default="sample",
        help="Dice term per sample (the reference), pooled over the batch, or per sample "
        "over the samples with foreground only (see utils/train/losses.py)",
    )  # fmt: skip
    p.add_argument(
        "--ema_decay", type=float, default=0.0,
        help="if > 0: keep an exponential moving average of the trained weights with this "
        "decay per step; validation, 'best' and the test use the averaged weights",
    )  # fmt: skip
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="none")
    p.add_argument(
        "--tf32", action=argparse.BooleanOptionalAction, default=False,
        help="let CUDA matrix products and convolutions in fp32 use TF32 (Ampere and later)",
    )  # fmt: skip
    p.add_argument(
        "--clip_grad", type=float, default=None,
        help="clip the gradients' global norm to this value before each optimizer step",
    )  # fmt: skip
    p.add_argument(
        "--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument(
        "--resume", default=None, help="a checkpoint path, or 'auto' for this task's latest"
    )
    p.add_argument(
        "--val_prompt", choices=("full", "gt_box"), default="full", help="selects 'best'"
    )
    p.add_argument(
        "--val_metric", choices=("fg_iou", "whole_fg_iou"), default="fg_iou",
        help="selects 'best': foreground IoU per item (per tile with --tile_width), or per "
        "whole spectrogram (its tiles pooled)",
    )  # fmt: skip
    p.add_argument("--eval_batch_size", type=int, default=None)
    p.add_argument("--log_interval", type=int, default=10, help="steps between plain log lines")
    p.add_argument(
        "--tensorboard", action="store_true",
        help="also write TensorBoard scalars into <run folder>/tensorboard (needs the optional "
        "package: pip install tensorboard); steps.jsonl is written in any case",
    )  # fmt: skip
    p.add_argument("--max_nonfinite_steps", type=int, default=3,
                   help="stop after this many steps in a row with a NaN/inf loss")  # fmt: skip
    p.add_argument("--max_steps_per_epoch", type=int, default=None, help="cap, for smoke tests")
    # distributed
    p.add_argument("--world_size", type=int, default=1, help="processes in total, all nodes")
    p.add_argument("--node_rank", type=int, default=0)
    p.add_argument("--nproc_per_node", type=int, default=None, help="default: world_size, or GPUs")
    p.add_argument("--init_method", default="tcp://127.0.0.1:29517")
    p.add_argument("--bucket_cap_mb", type=int, default=25, help="DDP gradient bucket size")
    p.add_argument("--grad_acc_steps", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--dist_timeout", type=float, default=1800.0, help="seconds")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = get_args_parser()
    preset_name = parser.parse_known_args(argv)[0].preset
    preset = dict(PRESETS.get(preset_name) or {})
    synthetic = preset.pop("synthetic", None)
    parser.set_defaults(**preset)
    args = parser.parse_args(argv)
    args.synthetic = synthetic
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject impossible settings and unusable files with one clear line each, before
    any process starts or anything is written."""
    at_least = {name: 1 for name in (
        "batch_size", "grad_acc_steps", "num_epochs", "world_size", "max_nonfinite_steps",
        "eval_batch_size", "tile_width", "max_steps_per_epoch", "nproc_per_node",  # or None
    )} | {"num_workers": 0, "bbox_shift": 0}  # fmt: skip
    for name, low in at_least.items():
        value = getattr(args, name)
        if value is not None and value < low:
            parser.error(f"--{name} must be >= {low}, got {value}")
    if not args.task_name or Path(args.task_name).name != args.task_name:
        parser.error(f"-task_name must be a plain folder name, got {args.task_name!r}")
    parts = [part.strip() for part in args.train_parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(TRAIN_PARTS))
    if unknown or not parts:
        parser.error(f"--train_parts: unknown {unknown}; choose from {','.join(TRAIN_PARTS)}")
    args.train_parts = parts
    check_user_sounds(parser, args)
    if args.pixel_norm == "auto":
        args.pixel_norm = "none" if "image_encoder" in parts else "sam"
    if is_baseline(args.model_type):  # trained whole, on [0, 1] grey images, no prompt
        args.train_parts, args.pixel_norm = list(BASELINE_PARTS), "none"
    try:
        args.input_size = model_input_size(args.model_type, args.input_size)
    except ValueError as err:
        parser.error(f"--input_size: {err}")
    if args.loss == "auto":
        args.loss = default_loss(args.model_type)
    if args.model_type == "deeplabv3" and args.batch_size < 2:
        parser.error("deeplabv3 needs --batch_size >= 2 (its pooling branch's batch norm)")
    if not (args.lr > 0 and math.isfinite(args.lr)) or not args.weight_decay >= 0:
        parser.error(f"-lr must be > 0 and -weight_decay >= 0, got {args.lr}, {args.weight_decay}")
    if not 0.0 <= args.full_box_prob <= 1.0:
        parser.error("--full_box_prob must be within [0, 1]")
    if not 0.0 <= args.time_flip_prob <= 1.0:
        parser.error(f"--time_flip_prob must be within [0, 1], got {args.time_flip_prob}")
    if args.spectral_gain_db < 0:
        parser.error(f"--spectral_gain_db must be >= 0, got {args.spectral_gain_db}")
    augmented = args.time_flip_prob or args.spectral_gain_db
    if augmented and not encoder_trained(args.model_type, args.train_parts):
        parser.error(
            "--time_flip_prob and --spectral_gain_db need the image encoder trained "
            "(cached embeddings are not augmented)"
        )
    if args.clip_grad is not None and not args.clip_grad > 0:
        parser.error(f"--clip_grad must be > 0, got {args.clip_grad}")
    if args.recording_overlap is not None and not 0.0 <= args.recording_overlap < 1.0:
        parser.error(f"--recording_overlap must be within [0, 1), got {args.recording_overlap}")
    if args.recording_render is not None:
        try:
            parse_rendering(args.recording_render)
        except ValueError as err:
            parser.error(f"--recording_render: {err}")
    if not 0.0 <= args.ema_decay < 1.0:
        parser.error(f"--ema_decay must be within [0, 1), got {args.ema_decay}")
    if args.tensorboard and (problem := tensorboard_problem()) is not None:
        parser.error(problem)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    if args.nproc_per_node is None:
        gpus = torch.cuda.device_count() if args.device == "cuda" else 0
        if gpus and args.world_size > gpus and not distributed.launched_by_torchrun():
            parser.error(
                f"--world_size {args.world_size} but this node has {gpus} GPU(s): for a "
                f"run over several nodes give --nproc_per_node {gpus} and start each node "
                f"with its --node_rank; on one node, use --world_size {gpus}"
            )
        args.nproc_per_node = min(args.world_size, gpus) if gpus else args.world_size
    args.eval_batch_size = args.eval_batch_size or args.batch_size
    file_checks = (
        ("-work_dir", run_log.check_work_dir, args.work_dir),
        (
            "-checkpoint",
            partial(check_weights, args.model_type, size=args.input_size),
            args.checkpoint,
        ),
        ("--resume", partial(check_resume, args), None if args.resume == "auto" else args.resume),
    )  # --resume auto is found, and checked, by resolve_resume
    for flag, check, path in file_checks:
        if path is None:
            continue
        try:
            check(path)
        except ValueError as err:
            parser.error(f"{flag}: {err}")


def check_user_sounds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--bird_dir``/``--noise_dir`` need a preset's synthetic set; the set that mixes them
    in gets its own folder beside the preset's (named by the folders' paths)."""
    folders = [folder for folder in (args.bird_dir, args.noise_dir) if folder is not None]
    if not folders:
        return
    if args.synthetic is None:
        parser.error(
            "--bird_dir/--noise_dir mix your recordings into the built-in synthetic "
            "training set: use them with --preset cpu_demo"
        )
    for folder in folders:
        if not Path(folder).is_dir():
            parser.error(f"{folder}: no such folder (--bird_dir/--noise_dir)")
    if args.tr_path == PRESETS[args.preset]["tr_path"]:
        paths = json.dumps([args.bird_dir and str(Path(args.bird_dir).resolve()),
                            args.noise_dir and str(Path(args.noise_dir).resolve())])  # fmt: skip
        args.tr_path = f"{args.tr_path}_site-{hashlib.sha1(paths.encode()).hexdigest()[:8]}"


def check_data(args: argparse.Namespace) -> None:
    """Fail early, before any process starts, if a split is missing or holds no usable pair.

    Raises:
        ValueError: naming the folder and the problem.
    """
    for split in ("train", "valid", "test"):
        scan_split(split_dir(args.tr_path, split), image_height(args))


def image_height(args: argparse.Namespace) -> int | None:
    """The image height training needs: a BSD spectrogram's with ``--half_spectrum``
    (the model sees rows 511 on), any otherwise."""
    return N_FFT if args.half_spectrum else None


def prepare_synthetic_data(args: argparse.Namespace) -> None:
    """Write the preset's synthetic set (with the user's sounds, if given) on first use;
    kept on later runs, and replaced when it was made with other settings in the preset's
    own folder (a set elsewhere, ``-i``, is never replaced).

    Raises:
        ValueError: naming the folder, when it holds files that are not a synthetic set,
            or a folder of user sounds holds no usable recording.
    """
    if args.synthetic is None:
        return
    spec = dict(args.synthetic)
    seed = spec.pop("seed")
    sounds = UserSounds.from_folders(args.bird_dir, args.noise_dir)
    sounds.warn_skipped()
    if is_generated(args.tr_path, spec, seed, sounds):
        return
    folder = Path(args.tr_path)
    preset_folder = PRESETS[args.preset]["tr_path"]
    owned = args.tr_path == preset_folder or args.tr_path.startswith(f"{preset_folder}_site-")
    # The preset's own set, made by an earlier version or with other files: replaced.
    ours = owned and is_synthetic_set(folder)
    if not ours and folder.is_dir() and any(folder.iterdir()):  # never written over
        raise ValueError(
            f"{folder}: already holds other files, and --preset {args.preset} writes its "
            "synthetic data set there; choose another -i, or empty the folder"
        )
    action = "replacing the synthetic set made with other settings in" if ours else "generating"
    print(f"{action} {folder} (first use of these settings)", flush=True)
    generate_dataset(folder, spec, seed=seed, overwrite=ours, sounds=sounds)
