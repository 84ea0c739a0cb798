"""BudSAM training: fine-tune SAM on BSD spectrogram/mask pairs under DDP.

Check an install (tiny built-in data, 1 epoch, under 2 minutes; the run is then checked):

    python budsam_train_multi.py --preset smoke

The quick start (CPU, built-in synthetic data, 2 gloo processes, about 11 minutes on 2 cores):

    python budsam_train_multi.py -task_name quickstart --preset cpu_demo

The paper's run (ViT-B, image encoder and mask decoder, 5 GPUs on one node):

    nohup python budsam_train_multi.py -i data/BSD -task_name BudSAM-ViT-B -model_type vit_b \\
        -checkpoint work_dir/SAM/sam_vit_b_01ec64.pth --train_parts image_encoder,mask_decoder \\
        --full_box_prob 0 --world_size 5 --node_rank 0 --init_method tcp://localhost:12345 \\
        --bucket_cap_mb 25 --grad_acc_steps 1 -batch_size 4 > logs/train.log 2>&1 &

The same under torchrun:

    torchrun --nproc_per_node 5 budsam_train_multi.py -i data/BSD -model_type vit_b ...

Without torchrun, the ``--nproc_per_node`` processes of this node (default: all of
``--world_size``, or this node's GPUs) are started through PyTorch's elastic launcher
(``utils.train.launcher``); one process per node runs in the launching process itself.
Every rank runs :func:`train`; rank 0 alone writes the run folder and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from utils.common import distributed
from utils.common.cpu import keep_freed_memory
from utils.common.files import write_text
from utils.model.factory import build_for_training, encoder_trained, require_pretrained
from utils.train import run_log
from utils.train.args import check_data, parse_args, prepare_synthetic_data
from utils.train.checkpointer import Checkpointer, open_run_dir
from utils.train.data import epoch_loader, make_datasets, training_sample_rate
from utils.train.ema import WeightEMA
from utils.train.embedding_cache import build_embedders
from utils.train.engine import NonFiniteLossError, Trainer, lr_schedule, train_one_epoch
from utils.train.launcher import FORESEEN_EXIT_CODE, launch
from utils.train.losses import training_loss
from utils.train.smoke import smoke_problems, smoke_summary
from utils.train.step_log import StepLog, peak_memory, reset_peak_memory
from utils.train.validation import evaluate_both_prompts


def build_model(args: argparse.Namespace, device: torch.device) -> nn.Module:
    model = build_for_training(
        args.model_type, args.checkpoint, size=args.input_size, seed=args.seed,
        pixel_norm=args.pixel_norm, train_parts=args.train_parts,
    )  # fmt: skip
    return model.to(device)


def train(ctx: distributed.DistContext, args: argparse.Namespace, stop) -> None:
    """One rank's whole run: build, train epoch by epoch (validate, keep latest and best),
    then test the best weights. Rank 0 logs each step (``steps.jsonl``, TensorBoard) and
    closes its logs however the run ends."""
    with ExitStack() as closing:
        _train(ctx, args, stop, closing)


def _train(ctx: distributed.DistContext, args: argparse.Namespace, stop, closing) -> None:
    torch.manual_seed(args.seed + ctx.rank)
    if distributed.launched_by_torchrun() and ctx.is_main:
        prepare_synthetic_data(args)
    distributed.barrier()
    run_dir, resumed = open_run_dir(ctx, args)
    ctx.log(f"run folder: {run_dir}")
    args.sample_rate = training_sample_rate(ctx, args)  # recorded in the checkpoints

    model = build_model(args, ctx.device)
    datasets = make_datasets(
        ctx, args, args.input_size, encoder_trained(args.model_type, args.train_parts)
    )
    embedders = build_embedders(model, datasets, ctx, args)
    trainable = [p for p in model.parameters() if p.requires_grad]
    total, trained = sum(p.numel() for p in model.parameters()), sum(p.numel() for p in trainable)
    ctx.log(f"parameters: {total:,} total, {trained:,} trained ({','.join(args.train_parts)})")
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    use_scaler = args.amp == "fp16" and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_scaler)
    ema = WeightEMA(model, args.ema_decay) if args.ema_decay > 0 else None
    checkpointer = Checkpointer(run_dir, ctx, args, model, optimizer, scaler, ema)
    state = checkpointer.restore(resumed)
    step_log = None
    if ctx.is_main:  # appends to a resumed run's steps.jsonl (steps past the checkpoint dropped)
        step_log = closing.enter_context(StepLog(run_dir, state.step, args.tensorboard))

    ddp_model = model
    if ctx.distributed:
        ddp_model = DistributedDataParallel(
            model,
            device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
            bucket_cap_mb=args.bucket_cap_mb,
            gradient_as_bucket_view=True,
            broadcast_buffers=False,  # SAM's buffers never change in training (tested)
        )
    trainer = Trainer(
        ddp_model, optimizer, scaler, ctx, amp=args.amp,
        loss_fn=training_loss(args.loss, args.dice),
        grad_acc_steps=args.grad_acc_steps, embedder=embedders["train"],
        lr_at=lr_schedule(args, len(datasets["train"]), ctx.world_size), ema=ema,
        max_nonfinite_steps=args.max_nonfinite_steps, log_interval=args.log_interval,
        clip_grad=args.clip_grad, step_log=step_log,
    )  # fmt: skip
    sampler = DistributedSampler(
        datasets["train"], num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=args.seed
    )

    while state.epoch < args.num_epochs:
        epoch_start = time.perf_counter()
        reset_peak_memory(ctx.device)
        loader = epoch_loader(datasets["train"], sampler, state, args)
        result = train_one_epoch(trainer, loader, state, stop)
        if result["stopped"]:
            latest = checkpointer.save_latest(state)
            ctx.log(f"stopped by signal at step {state.step}; saved {latest}; --resume {latest}")
            return
        with checkpointer.evaluated_weights():
            scores = evaluate_both_prompts(
                model, datasets["valid"], ctx, args, embedders["valid"], "val"
            )
        record = {"epoch": state.epoch, "step": state.step, "train_loss": result["train_loss"],
                  "train_samples_per_s": round(result["samples_per_s"], 2)}  # fmt: skip
        record.update(scores, seconds=round(time.perf_counter() - epoch_start, 2))
        record.update(peak_memory(ctx.device))  # on CUDA: this epoch's, training and validation
        state.history.append(record)
        metric = scores[f"val_{args.val_prompt}_{args.val_metric}"]
        improved = metric > state.best_metric
        state.best_metric = max(metric, state.best_metric)
        state.next_epoch()
        checkpointer.end_epoch(state, improved)
        if ctx.is_main:
            run_log.append_metrics(run_dir, record)
            run_log.plot_metrics(run_dir)
            step_log.epoch(record)
        ctx.log(run_log.epoch_summary(record, args.val_prompt, improved, args.val_metric))

    checkpointer.load_best()
    test = evaluate_both_prompts(model, datasets["test"], ctx, args, embedders["test"], "test")
    if ctx.is_main:
        write_text(run_dir / "test_metrics.json", json.dumps(test, indent=2))
        print(run_log.format_test_table(test), flush=True)
    report_skipped(ctx, datasets, state)


def report_skipped(ctx: distributed.DistContext, datasets: dict, state) -> None:
    """The run's last lines: what was skipped for bad input or a non-finite loss."""
    for split, dataset in datasets.items():
        if dataset.scan.skipped:
            ctx.log(f"warning: {split}: skipped {dataset.scan.skipped} pairs "
                    f"({dataset.scan.summary()})")  # fmt: skip
    if state.skipped_items:
        ctx.log(f"warning: {state.skipped_items} training item reads failed (all ranks and "
                "epochs); skipped")  # fmt: skip
    if state.skipped_steps:
        ctx.log(f"warning: {state.skipped_steps} optimizer steps skipped for a non-finite loss")


def worker(args: argparse.Namespace, local_rank: int = 0) -> int:
    """Train on one process (one GPU, or one CPU process under gloo); returns its exit code.

    A foreseen failure (bad input, a loss that stays non-finite) is one line on
    stderr and exit code 2; anything else propagates with its traceback.
    """
    keep_freed_memory()
    if distributed.launched_by_torchrun():
        local_rank = int(os.environ["LOCAL_RANK"])
    try:
        ctx = distributed.init_distributed(
            local_rank, args.world_size, args.node_rank, args.nproc_per_node,
            args.init_method, args.device, args.dist_timeout,
        )  # fmt: skip
    except ValueError as err:  # no GPU for this rank
        print(f"error: {err}", file=sys.stderr, flush=True)
        return FORESEEN_EXIT_CODE
    if ctx.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    if ctx.device.type == "cpu":
        # Processes sharing the cores: more threads each only makes them wait on each other.
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", args.nproc_per_node))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_procs))
    stop = distributed.StopRequest()
    try:
        train(ctx, args, stop)
    except NonFiniteLossError as err:  # decided alike on every rank: rank 0 tells
        if ctx.is_main:
            print(f"error: {err}", file=sys.stderr, flush=True)
        code = FORESEEN_EXIT_CODE
    except ValueError as err:
        rank = f" (rank {ctx.rank})" if ctx.distributed else ""
        print(f"error{rank}: {err}", file=sys.stderr, flush=True)
        code = FORESEEN_EXIT_CODE
    else:
        code = 0
    # Not in a `finally`: after an unforeseen error this rank's connections stay open
    # until it has reported, so the ranks that fail because it is gone fail after it
    # and the launcher can tell which rank failed first.
    distributed.cleanup()
    return code


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    args = parse_args(argv)
    torchrun = distributed.launched_by_torchrun()
    try:
        require_pretrained(args.model_type, args.checkpoint)
        if not torchrun:  # under torchrun rank 0 writes the synthetic set, in train()
            prepare_synthetic_data(args)
            check_data(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return FORESEEN_EXIT_CODE
    if torchrun or args.nproc_per_node == 1:
        code = worker(args)
    else:
        try:
            code = launch(
                worker, (args,), world_size=args.world_size, nproc_per_node=args.nproc_per_node,
                node_rank=args.node_rank, init_method=args.init_method,
            )  # fmt: skip
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return FORESEEN_EXIT_CODE
    first_node = args.node_rank == 0 and int(os.environ.get("RANK", "0")) == 0
    if code == 0 and args.preset == "smoke" and first_node:
        code = check_smoke_run(args, started)
    return code


def check_smoke_run(args: argparse.Namespace, started: float) -> int:
    """``--preset smoke``: 0 and one line when the run it just made is sound, else 1."""
    run_dir = run_log.latest_run_dir(args.work_dir, args.task_name)
    if run_dir is None or (run_dir / run_log.LATEST).stat().st_mtime < started:
        problems = [f"no run folder of {args.task_name!r} was written under {args.work_dir}"]
    else:
        problems = smoke_problems(run_dir, args.model_type)
    if problems:
        print(f"smoke check failed: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print(f"smoke check passed in {time.time() - started:.0f} s: {smoke_summary(run_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
