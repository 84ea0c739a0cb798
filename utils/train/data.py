"""The data of a training run: the three splits' datasets, and each epoch's loader."""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from utils.common import distributed
from utils.data.bsd_layout import recording_sample_rates, split_dir
from utils.data.dataset import BSDSegmentation, collate_skipping_none
from utils.data.scan import scan_split
from utils.train.args import image_height
from utils.train.checkpointer import TrainState


def make_datasets(
    ctx: distributed.DistContext, args: argparse.Namespace, size: int, load_images: bool
) -> dict[str, BSDSegmentation]:
    """The ``train``, ``valid`` and ``test`` datasets at input size ``size``; each split's
    unusable pairs are listed (rank 0) and skipped. ``load_images`` False: the items
    carry no image (the embeddings come from the cache)."""
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
            ctx.log(f"warning: {split}: skipping {scan.skipped} items\n{scan.report()}")
        training = split == "train"
        datasets[split] = BSDSegmentation(
            root,
            size,
            prompt="train" if training else "gt_box",
            full_box_prob=args.full_box_prob,
            time_flip_prob=args.time_flip_prob if training else 0.0,
            spectral_gain_db=args.spectral_gain_db if training else 0.0,
            scan=scan,
            **common,
        )
    return datasets


def epoch_loader(
    train_set: BSDSegmentation,
    sampler: DistributedSampler,
    state: TrainState,
    args: argparse.Namespace,
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
        pin_memory=torch.cuda.is_available() and torch.cuda.is_initialized(),
    )


def training_sample_rate(ctx: distributed.DistContext, args: argparse.Namespace) -> int | None:
    """The most common sample rate of the training split's raw recordings (read by rank 0,
    the same on every rank), or None without recordings. Inference resamples recordings
    to it."""
    rates = recording_sample_rates(split_dir(args.tr_path, "train")) if ctx.is_main else None
    rates = distributed.broadcast_object(rates)
    ctx.log(f"training recordings' sample rates (Hz: files): {dict(rates) or 'none found'}")
    return rates.most_common(1)[0][0] if rates else None
