"""Distributed evaluation of a split during training: loss and mask scores."""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from utils.common import distributed
from utils.common.progress import Progress
from utils.data.dataset import BSDSegmentation, collate_skipping_none
from utils.model.factory import is_baseline
from utils.scoring.metrics import confusion_counts, grouped_two_class_scores, scores_from_counts
from utils.train.embedding_cache import Embedder
from utils.train.engine import model_logits
from utils.train.losses import training_loss


def source_images(dataset) -> list:
    """The source image of each item: a :class:`BSDSegmentation`'s ``items`` know it (one
    image, several time tiles); for any other dataset every item is its own image."""
    items = getattr(dataset, "items", None)
    if isinstance(items, list) and len(items) == len(dataset):
        return [name for name, _ in items]
    return list(range(len(dataset)))


def whole_image_iou(
    per_item: torch.Tensor, names: list, scored: torch.Tensor | None = None
) -> float:
    """Mean over source images of the foreground IoU of their items' pooled counts.

    Args:
        per_item: ``(N, 3)`` true positives, false positives, false negatives per item.
        names: the source image of each of the N items (several for time tiles).
        scored: ``(N,)`` bool, the items that were evaluated (default: all). Items that
            were not (unreadable) are left out, and so is an image none of whose items
            was: all-zero counts would otherwise score a perfect 1. 0.0 when no item was.
    """
    if scored is None:
        scored = torch.ones(len(names), dtype=torch.bool)
    pooled: dict[str, torch.Tensor] = {}
    for name, counts, kept in zip(names, per_item, scored.tolist(), strict=True):
        if kept:
            pooled[name] = pooled.get(name, 0) + counts
    if not pooled:
        return 0.0
    stacked = torch.stack(list(pooled.values())).numpy()
    counts = {"tp": stacked[:, 0], "fp": stacked[:, 1], "fn": stacked[:, 2]}
    return float(scores_from_counts(counts)["iou"].mean())


def item_counts(
    pred: torch.Tensor, truth: torch.Tensor, valid_columns: torch.Tensor | None
) -> dict[str, np.ndarray]:
    """:func:`confusion_counts` of each ``(H, W)`` item over its first ``valid_columns``
    columns (all without): the silence that pads a narrow image is not scored."""
    width = pred.shape[-1]
    if valid_columns is None or bool((valid_columns >= width).all()):
        return confusion_counts(pred, truth)
    per_item = [
        confusion_counts(p[:, :w], t[:, :w])
        for p, t, w in zip(pred, truth, valid_columns.tolist(), strict=True)
    ]
    return {k: np.concatenate([c[k] for c in per_item]) for k in per_item[0]}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: BSDSegmentation,
    ctx: distributed.DistContext,
    *,
    batch_size: int,
    amp: str,
    embedder: Embedder | None,
    num_workers: int = 0,
    desc: str = "eval",
    loss_fn: nn.Module | None = None,
) -> dict:
    """Loss and mask scores on a whole split, each sample counted exactly once.

    Every rank takes its own share (no padding), and sums are reduced across
    ranks. Foreground IoU/Dice/F1 are per-image means; ``paper_iou``/``paper_dice``
    are the ViTVS/BudSAM two-class scores, pooled over fixed groups of consecutive items
    (:func:`grouped_two_class_scores`), so they depend on neither the number of
    processes nor the batch size. A soft target
    (``--mask_resize area``) counts as foreground where it is >= 0.5.

    With time tiles an item is one tile, and a tile without foreground scores 1 or
    0 by whether a single pixel is predicted. ``whole_fg_iou`` scores each whole
    spectrogram instead (the counts of its tiles pooled, at the input resolution),
    averaged over spectrograms: what a full-size evaluation measures.
    """
    loss_fn = loss_fn or training_loss("dice_bce")
    model.eval()
    shard = Subset(dataset, distributed.shard_indices(len(dataset), ctx.rank, ctx.world_size))
    loader = DataLoader(
        shard,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_skipping_none,
        worker_init_fn=distributed.ignore_stop_signals,
        pin_memory=ctx.device.type == "cuda",
    )
    # loss sum, images, fg iou, fg dice, fg f1, skipped
    sums = torch.zeros(6, dtype=torch.float64)
    # tp, fp, fn, tn of each item, and whether it was scored (1) or could not be read (0)
    per_item = torch.zeros(len(dataset), 5, dtype=torch.float64)
    progress = Progress(len(loader), desc, ctx.is_main)
    for batch in loader:
        sums[5] += batch["skipped"]
        if "mask" not in batch:
            continue
        logits = model_logits(model, batch, ctx.device, amp, embedder).float()
        target = batch["mask"].to(ctx.device)
        n = target.shape[0]
        sums[0] += loss_fn(logits, target).item() * n
        sums[1] += n
        pred, truth = (logits[:, 0] > 0).cpu(), (target[:, 0] >= 0.5).cpu()
        counts = item_counts(pred, truth, batch.get("valid_columns"))
        scores = scores_from_counts(counts)
        per_item[batch["index"]] = torch.from_numpy(
            np.stack([*(counts[k] for k in ("tp", "fp", "fn", "tn")), np.ones(n)], axis=1)
        )
        sums[2] += scores["iou"].sum()
        sums[3] += scores["dice"].sum()
        sums[4] += scores["f1"].sum()
        progress.update()
    progress.close()
    sums = distributed.all_reduce_sum(sums.to(ctx.device)).cpu()
    per_item = distributed.all_reduce_sum(per_item.to(ctx.device)).cpu()
    images = max(sums[1].item(), 1)
    scored = per_item[:, 4] > 0
    paper = grouped_two_class_scores(
        dict(zip(("tp", "fp", "fn", "tn"), per_item[scored, :4].numpy().T, strict=True)),
        torch.nonzero(scored)[:, 0].numpy(),
    )
    return {
        "loss": sums[0].item() / images,
        "fg_iou": sums[2].item() / images,
        "fg_dice": sums[3].item() / images,
        "fg_f1": sums[4].item() / images,
        "paper_iou": paper["iou"] if scored.any() else 0.0,
        "paper_dice": paper["dice"] if scored.any() else 0.0,
        "whole_fg_iou": whole_image_iou(per_item[:, :3], source_images(dataset), scored),
        "n_images": int(sums[1].item()),
        "skipped": int(sums[5].item()),
    }


def evaluate_both_prompts(
    model: nn.Module,
    dataset: BSDSegmentation,
    ctx: distributed.DistContext,
    args: argparse.Namespace,
    embedder: Embedder | None,
    prefix: str,
) -> dict:
    """:func:`evaluate` under the whole-image box and the ground-truth box, as
    ``{prefix}_{full|gt_box}_{score}`` entries; the images are decoded by
    ``--num_workers`` loader workers. A baseline takes no prompt: it is evaluated once,
    and both entries hold those scores."""
    results = {}
    prompts = ("full",) if is_baseline(args.model_type) else ("full", "gt_box")
    for prompt in prompts:
        dataset.prompt = prompt
        scores = evaluate(
            model, dataset, ctx, batch_size=args.eval_batch_size, amp=args.amp,
            embedder=embedder, num_workers=args.num_workers, desc=f"{prefix} ({prompt} box)",
            loss_fn=training_loss(args.loss, args.dice),
        )  # fmt: skip
        for entry_prompt in ("full", "gt_box") if len(prompts) == 1 else (prompt,):
            results.update({f"{prefix}_{entry_prompt}_{k}": v for k, v in scores.items()})
    return results
