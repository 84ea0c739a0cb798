"""BudSAM training: fine-tune SAM on BSD spectrogram/mask pairs under DDP.

The quick start (CPU, built-in synthetic data, 2 gloo processes, about 11 minutes on 2 cores):

    python budsam_train_multi.py -task_name quickstart --preset cpu_demo

The paper's run (ViT-B, image encoder and mask decoder, 5 GPUs on one node):

    nohup python budsam_train_multi.py -i data/BSD -task_name BudSAM-ViT-B -model_type vit_b \\
        -checkpoint work_dir/SAM/sam_vit_b_01ec64.pth --train_parts image_encoder,mask_decoder \\
        --full_box_prob 0 --world_size 5 --node_rank 0 --init_method tcp://localhost:12345 \\
        --bucket_cap_mb 25 --grad_acc_steps 1 -batch_size 4 > logs/train.log 2>&1 &

The same under torchrun:

    torchrun --nproc_per_node 5 budsam_train_multi.py -i data/BSD -model_type vit_b ...

Every rank runs :func:`worker`; rank 0 alone writes the run folder and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import signal
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import NoReturn

import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from utils import distributed, run_log
from utils.allocator import keep_freed_memory
from utils.audio import N_FFT
from utils.bsd_layout import split_dir
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.dataset import MASK_RESIZES, BSDSegmentation, collate_skipping_none, scan_split
from utils.ema import WeightEMA
from utils.embedding_cache import EmbeddingCache, module_fingerprint
from utils.engine import Embedder, NonFiniteLossError, cosine_lr, evaluate, train_one_epoch
from utils.files import write_text
from utils.losses import DICE_REDUCTIONS, DiceBCELoss
from utils.model import (
    MODEL_TYPES,
    BudSAM,
    build_sam,
    input_size,
    require_weights,
    sam_state_dict,
    state_dict_mismatch,
)
from utils.synthetic import generate_dataset, is_generated
from utils.train_state import TrainState, checkpoint_state, restore_state, resume_problem

TRAIN_PARTS = ("image_encoder", "mask_decoder")
WORKER_GRACE_S = 10.0  # how long the other ranks get to stop once one has failed
PRESETS = {
    "cpu_demo": {
        "tr_path": "data/synthetic",
        "model_type": "vit_tiny_p16x8",
        "device": "cpu",
        "world_size": 2,
        "train_parts": "image_encoder,mask_decoder",
        "num_epochs": 7,
        "batch_size": 4,
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "weight_decay": 1e-4,
        "num_workers": 0,
        "keep_in_memory": True,
        "tile_width": 1024,
        "half_spectrum": True,
        "mask_resize": "area",
        "dice": "batch",
        "ema_decay": 0.99,
        "val_metric": "whole_fg_iou",
        "synthetic": {"train": 240, "valid": 40, "test": 100, "seed": 0},
    },
}


# ----------------------------------------------------------------------------- arguments


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2), without the
    usage block: the line says what is wrong; ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.splitlines())}\n")


def get_args_parser() -> argparse.ArgumentParser:
    """The reference's argument spellings, each with a double-dash twin."""
    p = OneLineErrorParser(
        description="Fine-tune SAM to segment clean bird sound in BSD spectrograms (DDP).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="a set of defaults")
    p.add_argument("-i", "--tr_path", default="data/BSD", help="BSD root holding the splits")
    p.add_argument("-task_name", "--task_name", default="BudSAM-ViT-B")
    p.add_argument("-model_type", "--model_type", default="vit_b", choices=MODEL_TYPES)
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
    p.add_argument(
        "--train_parts", default="mask_decoder", help="comma list of " + ",".join(TRAIN_PARTS)
    )
    p.add_argument("--ref_preprocess", action="store_true", help="the reference's resizing path")
    p.add_argument(
        "--keep_in_memory",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep preprocessed items (small sets)",
    )
    p.add_argument(
        "--tile_width",
        type=int,
        default=None,
        help="cut images into time tiles of this many frames",
    )
    p.add_argument(
        "--half_spectrum",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="use only bins 0-512 (the image mirrors them)",
    )
    p.add_argument(
        "--mask_resize", choices=MASK_RESIZES, default="nearest",
        help="target masks at the input size: nearest ({0,1}, the reference) or area "
        "(soft: each pixel's foreground fraction)",
    )  # fmt: skip
    p.add_argument(
        "--dice", choices=DICE_REDUCTIONS, default="sample",
        help="Dice term per sample (the reference), pooled over the batch, or per sample "
        "over the samples with foreground only (see utils/losses.py)",
    )  # fmt: skip
    p.add_argument(
        "--ema_decay", type=float, default=0.0,
        help="if > 0: keep an exponential moving average of the trained weights with this "
        "decay per step; validation, 'best' and the test use the averaged weights",
    )  # fmt: skip
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="none")
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
    if not (args.lr > 0 and math.isfinite(args.lr)) or not args.weight_decay >= 0:
        parser.error(f"-lr must be > 0 and -weight_decay >= 0, got {args.lr}, {args.weight_decay}")
    if not 0.0 <= args.full_box_prob <= 1.0:
        parser.error("--full_box_prob must be within [0, 1]")
    if not 0.0 <= args.ema_decay < 1.0:
        parser.error(f"--ema_decay must be within [0, 1), got {args.ema_decay}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    if args.nproc_per_node is None:
        gpus = torch.cuda.device_count() if args.device == "cuda" else 0
        args.nproc_per_node = min(args.world_size, gpus) if gpus else args.world_size
    args.eval_batch_size = args.eval_batch_size or args.batch_size
    file_checks = (
        ("-work_dir", run_log.check_work_dir, args.work_dir),
        ("-checkpoint", partial(sam_state_dict, model_type=args.model_type), args.checkpoint),
        ("--resume", partial(check_resume, args), None if args.resume == "auto" else args.resume),
    )  # --resume auto is found, and checked, by resolve_resume
    for flag, check, path in file_checks:
        if path is None:
            continue
        try:
            check(path)
        except ValueError as err:
            parser.error(f"{flag}: {err}")


def check_resume(args: argparse.Namespace, path: str | Path) -> None:
    """A ``--resume`` checkpoint must be a BudSAM training checkpoint this run can continue:
    the training state, weights of a ``-model_type`` SAM, the same ``--train_parts``
    (the optimizer state is per trained tensor), and an EMA if ``--ema_decay`` asks for one.

    Raises:
        ValueError: naming the file and the problem.
    """
    checkpoint = load_checkpoint(path, mmap=True)
    problem = resume_problem(checkpoint, needs_ema=args.ema_decay > 0)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    recorded = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
    mismatch = state_dict_mismatch(checkpoint["model"], args.model_type)
    if mismatch:
        trained = (
            f"; it was trained as {recorded['model_type']}" if "model_type" in recorded else ""
        )
        raise ValueError(f"{path}: does not hold a {args.model_type} SAM ({mismatch}{trained})")
    parts = recorded.get("train_parts")
    if isinstance(parts, str) and json.loads(parts) != args.train_parts:
        raise ValueError(
            f"{path}: trained with --train_parts {','.join(json.loads(parts))}, not "
            f"{','.join(args.train_parts)} (its optimizer state would not fit)"
        )


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
    """Write the preset's synthetic set on first use (kept on later runs)."""
    if args.synthetic is None:
        return
    spec = dict(args.synthetic)
    seed = spec.pop("seed")
    if is_generated(args.tr_path, spec, seed):
        return
    folder = Path(args.tr_path)
    if folder.is_dir() and any(folder.iterdir()):  # never written over (another set, or yours)
        raise ValueError(
            f"{folder}: already holds other files, and --preset {args.preset} writes its "
            "synthetic data set there; choose another -i, or empty the folder"
        )
    print(f"generating the synthetic data set in {folder} (first use)", flush=True)
    generate_dataset(folder, spec, seed=seed)


# ----------------------------------------------------------------------------- one process


def log(ctx: distributed.DistContext, message: str) -> None:
    if ctx.is_main:
        print(message, flush=True)


def build_model(args: argparse.Namespace, device: torch.device) -> BudSAM:
    model = BudSAM(build_sam(args.model_type, args.checkpoint, seed=args.seed))
    model.set_trainable(args.train_parts)
    return model.to(device)


def make_datasets(
    ctx: distributed.DistContext, args: argparse.Namespace, size: int, load_images: bool
) -> dict:
    common = {
        "bbox_shift": args.bbox_shift,
        "reference_preprocess": args.ref_preprocess,
        "load_images": load_images,
        "keep_in_memory": args.keep_in_memory,
        "tile_width": args.tile_width,
        "half_spectrum": args.half_spectrum,
        "mask_resize": args.mask_resize,
        "seed": args.seed,
    }
    datasets = {}
    for split in ("train", "valid", "test"):
        root = split_dir(args.tr_path, split)
        scan = scan_split(root, image_height(args))
        if scan.skipped:
            log(ctx, f"warning: {split}: skipping {scan.skipped} items\n{scan.report()}")
        prompt = "train" if split == "train" else "gt_box"
        datasets[split] = BSDSegmentation(
            root, size, prompt=prompt, full_box_prob=args.full_box_prob, scan=scan, **common
        )
    return datasets


def resolve_resume(args: argparse.Namespace) -> Path | None:
    """The checkpoint to resume from: ``--resume PATH`` (checked by :func:`check_args`), or
    for ``auto`` this task's newest ``latest``, checked here before anything is written.

    Raises:
        ValueError: naming the file, when ``auto`` finds one this run cannot continue.
    """
    if args.resume is None:
        return None
    if args.resume == "auto":
        run_dir = run_log.latest_run_dir(args.work_dir, args.task_name)
        if run_dir is None:
            print(
                f"--resume auto: no earlier {args.task_name} run in {args.work_dir}; starting anew"
            )
            return None
        check_resume(args, run_dir / run_log.LATEST)
        return run_dir / run_log.LATEST
    return Path(args.resume)


def evaluate_both_prompts(model, dataset, ctx, args, embedder, prefix: str) -> dict:
    results = {}
    for prompt in ("full", "gt_box"):
        dataset.prompt = prompt
        scores = evaluate(
            model, dataset, ctx, batch_size=args.eval_batch_size, amp=args.amp,
            embedder=embedder, desc=f"{prefix} ({prompt} box)", loss_fn=DiceBCELoss(args.dice),
        )  # fmt: skip
        results.update({f"{prefix}_{prompt}_{k}": v for k, v in scores.items()})
    return results


def worker(local_rank: int, args: argparse.Namespace) -> int:
    """Train on one process (one GPU, or one CPU process under gloo); returns its exit code.

    A foreseen failure (bad input, a loss that stays non-finite) is one line on
    stderr and exit code 2; anything else propagates with its traceback.
    """
    keep_freed_memory()
    ctx = distributed.init_distributed(
        local_rank, args.world_size, args.node_rank, args.nproc_per_node,
        args.init_method, args.device, args.dist_timeout,
    )  # fmt: skip
    if ctx.device.type == "cpu":
        # Processes sharing the cores: more threads each only makes them wait on each other.
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", args.nproc_per_node))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_procs))
    stop = distributed.StopRequest()
    try:
        _train(ctx, args, stop)
    except NonFiniteLossError as err:  # decided alike on every rank: rank 0 tells
        if ctx.is_main:
            print(f"error: {err}", file=sys.stderr, flush=True)
        code = 2
    except ValueError as err:
        rank = f" (rank {ctx.rank})" if ctx.distributed else ""
        print(f"error{rank}: {err}", file=sys.stderr, flush=True)
        code = 2
    else:
        code = 0
    # Not in a `finally`: after an unforeseen error this rank's connections stay open
    # until it has reported, so the ranks that fail because it is gone fail after it
    # and join_workers can tell which rank failed first.
    distributed.cleanup()
    return code


def spawned_worker(local_rank: int, args: argparse.Namespace) -> None:
    """:func:`worker` in a process of ``mp.spawn``, which sees only the exit status."""
    code = worker(local_rank, args)
    if code:
        sys.exit(code)


def open_run_dir(
    ctx: distributed.DistContext, args: argparse.Namespace
) -> tuple[Path, dict | None]:
    """The run folder (rank 0 creates it; a resumed run keeps its own) and the resumed state."""
    resume_path = resolve_resume(args)
    resumed = load_checkpoint(resume_path) if resume_path is not None else None
    run_dir = None
    if ctx.is_main:
        if resumed is not None:
            run_dir = resume_path.parent
        else:
            run_dir = run_log.new_run_dir(args.work_dir, args.task_name)
        run_log.save_run_config(run_dir, vars(args))
    run_dir = Path(distributed.broadcast_object(str(run_dir) if ctx.is_main else None))
    if resumed is not None:
        log(ctx, f"resuming from {resume_path}: epoch {resumed['epoch']}, step {resumed['step']}")
    return run_dir, resumed


def build_embedders(
    model: BudSAM, datasets: dict, ctx: distributed.DistContext, args: argparse.Namespace
) -> dict[str, Embedder | None]:
    """Cached-embedding sources per split when the encoder is frozen; None otherwise."""
    if "image_encoder" in args.train_parts:
        return dict.fromkeys(datasets)
    key = {
        "model_type": args.model_type,
        "encoder": module_fingerprint(model.image_encoder),
        "input_size": input_size(args.model_type),
        "preprocess": "reference" if args.ref_preprocess else "area",
        "tile_width": args.tile_width,
        "half_spectrum": args.half_spectrum,
    }
    embedders = {}
    for split, dataset in datasets.items():
        # One cache per data folder: file names repeat across splits and data sets.
        data = {"images": str(Path(dataset.root).resolve())}
        cache = EmbeddingCache(Path(args.work_dir) / "embedding_cache", {**key, **data})
        embedders[split] = Embedder(model, cache, dataset)
        added = embedders[split].fill(ctx, args.eval_batch_size, args.amp, ctx.is_main)
        reused = len(dataset) - added
        log(ctx, f"embedding cache {cache.folder}: {split}: {added} computed, {reused} reused")
    return embedders


def epoch_loader(
    train_set: BSDSegmentation, sampler: DistributedSampler, state: TrainState, args
) -> DataLoader:
    """This rank's batches for the epoch in progress: whole optimizer steps only, and
    without the steps a resumed run already took."""
    sampler.set_epoch(state.epoch)
    train_set.set_epoch(state.epoch)
    per_step = args.batch_size * args.grad_acc_steps
    indices = list(sampler)
    steps = len(indices) // per_step
    if args.max_steps_per_epoch:
        steps = min(steps, args.max_steps_per_epoch)
    indices = indices[state.step_in_epoch * per_step : steps * per_step]
    return DataLoader(
        Subset(train_set, indices),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        collate_fn=collate_skipping_none,
        worker_init_fn=distributed.ignore_stop_signals,
    )


def _train(
    ctx: distributed.DistContext, args: argparse.Namespace, stop: distributed.StopRequest
) -> None:
    torch.manual_seed(args.seed + ctx.rank)
    if distributed.launched_by_torchrun() and ctx.is_main:
        prepare_synthetic_data(args)
    distributed.barrier()
    run_dir, resumed = open_run_dir(ctx, args)
    log(ctx, f"run folder: {run_dir}")

    model = build_model(args, ctx.device)
    datasets = make_datasets(
        ctx, args, input_size(args.model_type), "image_encoder" in args.train_parts
    )
    embedders = build_embedders(model, datasets, ctx, args)
    trainable = [p for p in model.parameters() if p.requires_grad]
    total, trained = sum(p.numel() for p in model.parameters()), sum(p.numel() for p in trainable)
    log(ctx, f"parameters: {total:,} total, {trained:,} trained ({','.join(args.train_parts)})")
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    use_scaler = args.amp == "fp16" and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_scaler)
    ema = WeightEMA(model, args.ema_decay) if args.ema_decay > 0 else None
    state = (
        TrainState() if resumed is None else restore_state(resumed, model, optimizer, scaler, ema)
    )

    ddp_model = model
    if ctx.distributed:
        ddp_model = DistributedDataParallel(
            model,
            device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
            bucket_cap_mb=args.bucket_cap_mb,
            gradient_as_bucket_view=True,
        )
    sampler = DistributedSampler(
        datasets["train"], num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=args.seed
    )

    lr_at = None
    if args.lr_schedule == "cosine":
        per_step = args.batch_size * args.grad_acc_steps
        steps = math.ceil(len(datasets["train"]) / ctx.world_size) // per_step
        if args.max_steps_per_epoch:
            steps = min(steps, args.max_steps_per_epoch)
        total = steps * args.num_epochs
        lr_at = cosine_lr(args.lr, total, max(1, total // 20))

    def save(name: str) -> None:
        if ctx.is_main:
            checkpoint = checkpoint_state(model, optimizer, scaler, state, args, ema)
            save_checkpoint(checkpoint, run_dir / name)

    def evaluated_weights():
        """The weights that are validated, kept as 'best' and tested: the EMA's if any."""
        return ema.applied(model) if ema is not None else nullcontext(model)

    best_weights = None
    while state.epoch < args.num_epochs:
        epoch_start = time.perf_counter()
        result = train_one_epoch(
            ddp_model, epoch_loader(datasets["train"], sampler, state, args), optimizer, scaler,
            state, ctx, amp=args.amp, grad_acc_steps=args.grad_acc_steps,
            embedder=embedders["train"], should_stop=lambda: stop.agreed(ctx),
            log_interval=args.log_interval, lr_at=lr_at, loss_fn=DiceBCELoss(args.dice),
            max_nonfinite_steps=args.max_nonfinite_steps,
            after_step=None if ema is None else lambda: ema.update(model),
        )  # fmt: skip
        if result["stopped"]:
            save(run_log.LATEST)
            latest = run_dir / run_log.LATEST
            log(ctx, f"stopped by signal at step {state.step}; saved {latest}; --resume {latest}")
            return
        with evaluated_weights():
            scores = evaluate_both_prompts(
                model, datasets["valid"], ctx, args, embedders["valid"], "val"
            )
        record = {"epoch": state.epoch, "step": state.step, "train_loss": result["train_loss"]}
        record.update(scores, seconds=round(time.perf_counter() - epoch_start, 2))
        state.history.append(record)
        metric = scores[f"val_{args.val_prompt}_{args.val_metric}"]
        improved = metric > state.best_metric
        state.best_metric = max(metric, state.best_metric)
        state.epoch, state.step_in_epoch = state.epoch + 1, 0
        save(run_log.LATEST)
        if improved:
            with evaluated_weights():
                save(run_log.BEST)
                # Every rank holds the same weights: keep them, so no rank reads rank 0's file.
                best_weights = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
        if ctx.is_main:
            run_log.append_metrics(run_dir, record)
            run_log.plot_metrics(run_dir)
        log(ctx, epoch_summary(record, args.val_prompt, improved, args.val_metric))

    if best_weights is None:  # a resumed run that improved on nothing since: read the file
        distributed.barrier()
        best_weights = load_checkpoint(run_dir / run_log.BEST)["model"]
    model.load_state_dict(best_weights)
    test = evaluate_both_prompts(model, datasets["test"], ctx, args, embedders["test"], "test")
    if ctx.is_main:
        write_text(run_dir / "test_metrics.json", json.dumps(test, indent=2))
        print(format_test_table(test), flush=True)
    for split, dataset in datasets.items():
        scan = dataset.scan
        if scan.skipped:
            log(ctx, f"warning: {split}: skipped {scan.skipped} pairs ({scan.summary()})")
    if state.skipped_items:
        log(ctx, f"warning: {state.skipped_items} training item reads failed (all ranks and "
                 "epochs); skipped")  # fmt: skip
    if state.skipped_steps:
        log(ctx, f"warning: {state.skipped_steps} optimizer steps skipped for a non-finite loss")


def epoch_summary(record: dict, val_prompt: str, improved: bool, val_metric: str = "fg_iou") -> str:
    prefix = f"val_{val_prompt}_"
    return (
        f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
        f"val loss {record[prefix + 'loss']:.4f}, val fg IoU {record[prefix + 'fg_iou']:.4f}, "
        f"whole-image fg IoU {record[prefix + 'whole_fg_iou']:.4f} "
        f"({val_prompt} box; best by {val_metric}){' (best)' if improved else ''}, "
        f"{record['seconds']} s"
    )


def format_test_table(test: dict) -> str:
    """The test split's scores under both prompt protocols, as a small text table."""
    header = f"{'prompt':<28} {'fg IoU':>7} {'fg Dice':>8} {'paper IoU':>10} {'paper Dice':>11}"
    lines = ["test split (best checkpoint):", header]
    for prompt, label in (
        ("gt_box", "ground-truth box (paper)"),
        ("full", "full-image box (no GT)"),
    ):
        scores = [
            test[f"test_{prompt}_{k}"] for k in ("fg_iou", "fg_dice", "paper_iou", "paper_dice")
        ]
        lines.append(
            f"{label:<28} {scores[0]:>7.4f} {scores[1]:>8.4f} {scores[2]:>10.4f} {scores[3]:>11.4f}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- launch


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torchrun = distributed.launched_by_torchrun()
    try:
        require_weights(args.model_type, args.checkpoint)
        if not torchrun:  # under torchrun rank 0 writes the synthetic set, in _train
            prepare_synthetic_data(args)
            check_data(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if torchrun:
        return worker(int(os.environ["LOCAL_RANK"]), args)
    if args.nproc_per_node == 1:
        return worker(0, args)
    context = mp.spawn(spawned_worker, args=(args,), nprocs=args.nproc_per_node, join=False)

    def forward_signal(signum: int, frame: object) -> None:
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward_signal)
    signal.signal(signal.SIGINT, forward_signal)
    return join_workers(context, args.node_rank * args.nproc_per_node)


def join_workers(context: mp.ProcessContext, first_rank: int) -> int:
    """Wait for the spawned ranks; when one fails, stop the others within
    ``WORKER_GRACE_S`` (SIGTERM, then SIGKILL) and name the first failure last."""
    try:
        while not context.join(grace_period=WORKER_GRACE_S):
            pass
    except mp.ProcessRaisedException:  # an unforeseen error: keep its traceback
        foreseen = [i for i, p in enumerate(context.processes) if p.exitcode == 2]
        if foreseen:  # a rank stopped on bad input (its line is above); the rest followed
            print(f"error: rank {first_rank + foreseen[0]} stopped on the error above; "
                  "every rank was stopped", file=sys.stderr, flush=True)  # fmt: skip
            return 2
        failures = sorted(
            (path.stat().st_mtime_ns, first_rank + index, path.read_bytes())
            for index, path in enumerate(map(Path, context.error_files))
            if path.is_file() and path.stat().st_size
        )
        _, rank, trace = failures[0]  # the others failed because this rank was gone
        trace = pickle.loads(trace).strip()
        print(trace, file=sys.stderr)
        print(f"error: rank {rank} failed: {trace.splitlines()[-1]}; every rank was stopped",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    except mp.ProcessExitedException as err:  # the rank printed its reason itself
        print(f"error: rank {first_rank + err.error_index} stopped ({err}); "
              "every rank was stopped", file=sys.stderr, flush=True)  # fmt: skip
        return err.exit_code if err.exit_code and err.exit_code > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
