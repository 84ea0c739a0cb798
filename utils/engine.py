"""One training epoch and one evaluation pass, for one process of a DDP run."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from utils import distributed
from utils.dataset import BSDSegmentation, collate_skipping_none
from utils.embedding_cache import EmbeddingCache
from utils.losses import DiceBCELoss
from utils.metrics import confusion_counts, scores_from_counts, two_class_scores_from_counts
from utils.progress import Progress
from utils.train_state import TrainState

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cosine_lr(base_lr: float, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0."""

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    return lr_at


def autocast(device: torch.device, amp: str):
    """The autocast context for ``--amp bf16|fp16|none``."""
    return torch.autocast(device.type, dtype=AMP_DTYPES.get(amp), enabled=amp in AMP_DTYPES)


class Embedder:
    """Image embeddings for a batch: from the cache, or by running the frozen encoder.

    A cached file that is missing or damaged (deleted or corrupted mid-run) is
    recomputed from its image and stored again.
    """

    def __init__(self, model: nn.Module, cache: EmbeddingCache, dataset: BSDSegmentation) -> None:
        self.model, self.cache, self.dataset = model, cache, dataset

    @torch.no_grad()
    def encode(self, indices: list[int], device: torch.device, amp: str) -> torch.Tensor:
        """Run the encoder on the dataset items ``indices``: ``(N, C, h, w)`` float32."""
        images = np.stack([self.dataset.image_input(i) for i in indices])
        with autocast(device, amp):
            embeddings = self.model.encode(torch.from_numpy(images).to(device))
        return embeddings.float()

    def __call__(self, indices: list[int], device: torch.device, amp: str) -> torch.Tensor:
        keys = [self.dataset.item_key(i) for i in indices]
        loaded = [self.cache.load(key) for key in keys]
        missing = [i for i, emb in enumerate(loaded) if emb is None]
        if missing:
            fresh = self.encode([indices[i] for i in missing], device, amp).cpu()
            for i, embedding in zip(missing, fresh, strict=True):
                self.cache.save(keys[i], embedding)
                loaded[i] = embedding
        return torch.stack(loaded).to(device)

    def fill(self, ctx: distributed.DistContext, batch_size: int, amp: str, show: bool) -> int:
        """Compute every embedding missing from the cache, shared across ranks; returns count.

        An item whose image cannot be read is warned about and marked unusable in the
        dataset on every rank, so that training skips (and counts) it.
        """
        distributed.barrier()  # every rank lists the same files
        absent = [
            i for i in range(len(self.dataset))
            if not self.cache.path(self.dataset.item_key(i)).is_file()
        ]  # fmt: skip
        mine = [absent[i] for i in distributed.shard_indices(len(absent), ctx.rank, ctx.world_size)]
        progress = Progress(math.ceil(len(mine) / batch_size), "cache", show and bool(mine))
        unreadable: set[int] = set()
        for start in range(0, len(mine), batch_size):
            chunk = mine[start : start + batch_size]
            try:
                embeddings = self.encode(chunk, ctx.device, amp)
            except ValueError:  # an image that cannot be read: find it, encode the rest
                chunk = [i for i in chunk if self._readable(i, unreadable)]
                embeddings = self.encode(chunk, ctx.device, amp) if chunk else []
            for index, embedding in zip(chunk, embeddings, strict=True):
                self.cache.save(self.dataset.item_key(index), embedding)
            progress.update()
        progress.close()
        self.dataset.unusable |= distributed.gather_union(unreadable)
        return len(absent)

    def _readable(self, index: int, unreadable: set[int]) -> bool:
        """Whether the item's image reads; if not, warn and add it to ``unreadable``."""
        try:
            self.dataset.image_input(index)
        except ValueError as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
            unreadable.add(index)
            return False
        return True


def model_logits(
    model: nn.Module,
    batch: dict,
    device: torch.device,
    amp: str,
    embedder: Embedder | None,
) -> torch.Tensor:
    """Full-size mask logits ``(B, 1, S, S)`` for a batch, from images or cached embeddings."""
    boxes = batch["box"].to(device)
    with autocast(device, amp):
        if embedder is None:
            return model(batch["image"].to(device), boxes)
        return model(None, boxes, embeddings=embedder(batch["index"].tolist(), device, amp))


class NonFiniteLossError(RuntimeError):
    """The loss or its gradients were NaN or infinite on too many optimizer steps in a row."""


def train_one_epoch(
    ddp_model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    state: TrainState,
    ctx: distributed.DistContext,
    *,
    amp: str,
    grad_acc_steps: int,
    embedder: Embedder | None,
    should_stop: Callable[[], bool],
    log_interval: int = 10,
    lr_at: Callable[[int], float] | None = None,
    loss_fn: nn.Module | None = None,
    after_step: Callable[[], None] | None = None,
    max_nonfinite_steps: int = 3,
) -> dict:
    """Train until the loader ends or ``should_stop()`` (checked after each optimizer step).

    Gradient accumulation: on the first ``grad_acc_steps - 1`` micro-batches the
    forward and backward run inside ``no_sync`` (no all-reduce) and gradients add
    up; the loss is divided by ``grad_acc_steps``; the optimizer steps and the
    gradients are zeroed once per ``grad_acc_steps`` micro-batches. Trailing
    micro-batches that do not fill a whole step are ignored (the caller hands in
    whole steps only). ``loss_fn`` defaults to :class:`DiceBCELoss`; ``after_step``
    runs after every optimizer step (e.g. a weight-EMA update).

    Faults, decided alike on every rank so that DDP's collectives stay matched: a
    micro-batch is dropped on all ranks when any rank could load none of its items;
    an optimizer step is skipped (gradients dropped, weights unchanged, reported)
    when the loss was not finite on any rank, or (without a gradient scaler) a
    gradient was not, and after ``max_nonfinite_steps`` such
    steps in a row :class:`NonFiniteLossError` stops training.
    """
    loss_fn = loss_fn or DiceBCELoss()
    ddp_model.train()
    n_steps = len(loader) // grad_acc_steps
    progress = Progress(n_steps, f"epoch {state.epoch}", ctx.is_main, log_interval)
    loss_sum, loss_count, skipped = torch.zeros(3, dtype=torch.float64)
    micro, nonfinite_in_step, nonfinite_in_a_row = 0, False, 0
    optimizer.zero_grad(set_to_none=True)
    stopped = False
    for batch in loader:
        skipped += batch["skipped"]
        if distributed.any_rank("mask" not in batch, ctx.device):
            continue
        micro += 1
        sync_now = micro % grad_acc_steps == 0
        no_sync = getattr(ddp_model, "no_sync", None)
        context = no_sync() if (no_sync is not None and not sync_now) else nullcontext()
        with context:
            logits = model_logits(ddp_model, batch, ctx.device, amp, embedder)
            loss = loss_fn(logits.float(), batch["mask"].to(ctx.device))
            scaler.scale(loss / grad_acc_steps).backward()
        loss_value = loss.item()
        if math.isfinite(loss_value):
            loss_sum += loss_value
            loss_count += 1
        else:
            nonfinite_in_step = True
        if not sync_now:
            continue
        # Gradients are all-reduced by now, so every rank sees the same ones. With a
        # gradient scaler (fp16) infinite gradients are its business: it skips the step.
        if not scaler.is_enabled() and not _gradients_finite(optimizer):
            nonfinite_in_step = True
        if distributed.any_rank(nonfinite_in_step, ctx.device):
            optimizer.zero_grad(set_to_none=True)
            state.skipped_steps += 1
            nonfinite_in_a_row += 1
            _report_nonfinite(ctx, state.step + 1, nonfinite_in_a_row, max_nonfinite_steps)
        else:
            nonfinite_in_a_row = 0
            _optimizer_step(optimizer, scaler, lr_at, state.step)
            if after_step is not None:
                after_step()
        nonfinite_in_step = False
        state.step += 1
        state.step_in_epoch += 1
        progress.update(loss=loss_value)
        if should_stop():
            stopped = True
            break
    progress.close()
    totals = distributed.all_reduce_sum(torch.stack([loss_sum, loss_count, skipped]).to(ctx.device))
    state.skipped_items += int(totals[2].item())  # every rank's, so every rank agrees
    return {"train_loss": (totals[0] / totals[1].clamp(min=1)).item(), "stopped": stopped}


def _gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient the optimizer would apply is finite (one device sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
    checks = [torch.isfinite(g).all() for g in grads if g is not None]
    return bool(torch.stack(checks).all()) if checks else True


def _optimizer_step(optimizer, scaler, lr_at: Callable[[int], float] | None, step: int) -> None:
    """One optimizer step at the scheduled learning rate, then zeroed gradients."""
    if lr_at is not None:  # a function of the step alone, so a resumed run agrees
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def _report_nonfinite(ctx: distributed.DistContext, step: int, in_a_row: int, limit: int) -> None:
    """Warn about skipped step ``step`` (counted from 1); raise :class:`NonFiniteLossError`
    at the limit."""
    if in_a_row >= limit:
        raise NonFiniteLossError(
            f"training stopped: the loss or its gradients were NaN or infinite on {in_a_row} "
            f"optimizer steps in a row (steps {step - in_a_row + 1}-{step}); the weights were "
            "left as they were before them; try a lower -lr, --amp none, or check the data"
        )
    if ctx.is_main:
        print(
            f"warning: step {step}: the loss or its gradients are NaN or infinite; step skipped "
            f"({in_a_row} in a row, training stops at {limit})",
            flush=True,
        )


def source_images(dataset) -> list:
    """The source image of each item: a :class:`BSDSegmentation`'s ``items`` know it (one
    image, several time tiles); for any other dataset every item is its own image."""
    items = getattr(dataset, "items", None)
    if isinstance(items, list) and len(items) == len(dataset):
        return [name for name, _ in items]
    return list(range(len(dataset)))


def whole_image_iou(per_item: torch.Tensor, names: list) -> float:
    """Mean over source images of the foreground IoU of their items' pooled counts.

    Args:
        per_item: ``(N, 3)`` true positives, false positives, false negatives per item.
        names: the source image of each of the N items (several for time tiles).
    """
    pooled: dict[str, torch.Tensor] = {}
    for name, counts in zip(names, per_item, strict=True):
        pooled[name] = pooled.get(name, 0) + counts
    stacked = torch.stack(list(pooled.values())).numpy()
    counts = {"tp": stacked[:, 0], "fp": stacked[:, 1], "fn": stacked[:, 2]}
    return float(scores_from_counts(counts)["iou"].mean())


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
    are the ViTVS/BudSAM two-class scores averaged over batches. A soft target
    (``--mask_resize area``) counts as foreground where it is >= 0.5.

    With time tiles an item is one tile, and a tile without foreground scores 1 or
    0 by whether a single pixel is predicted. ``whole_fg_iou`` scores each whole
    spectrogram instead (the counts of its tiles pooled, at the input resolution),
    averaged over spectrograms: what a full-size evaluation measures.
    """
    loss_fn = loss_fn or DiceBCELoss()
    model.eval()
    shard = Subset(dataset, distributed.shard_indices(len(dataset), ctx.rank, ctx.world_size))
    loader = DataLoader(
        shard, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_skipping_none
    )
    # loss sum, images, fg iou, fg dice, fg f1, paper iou sum, paper dice sum, batches, skipped
    sums = torch.zeros(9, dtype=torch.float64)
    per_item = torch.zeros(len(dataset), 3, dtype=torch.float64)  # tp, fp, fn of each item
    progress = Progress(len(loader), desc, ctx.is_main)
    for batch in loader:
        sums[8] += batch["skipped"]
        if "mask" not in batch:
            continue
        logits = model_logits(model, batch, ctx.device, amp, embedder).float()
        target = batch["mask"].to(ctx.device)
        n = target.shape[0]
        sums[0] += loss_fn(logits, target).item() * n
        sums[1] += n
        pred, truth = (logits[:, 0] > 0).cpu(), (target[:, 0] >= 0.5).cpu()
        counts = confusion_counts(pred, truth)
        scores = scores_from_counts(counts)
        per_item[batch["index"]] = torch.from_numpy(
            np.stack([counts["tp"], counts["fp"], counts["fn"]], axis=1)
        )
        sums[2] += scores["iou"].sum()
        sums[3] += scores["dice"].sum()
        sums[4] += scores["f1"].sum()
        paper = two_class_scores_from_counts(counts)
        sums[5] += paper["iou"]
        sums[6] += paper["dice"]
        sums[7] += 1
        progress.update()
    progress.close()
    sums = distributed.all_reduce_sum(sums.to(ctx.device)).cpu()
    per_item = distributed.all_reduce_sum(per_item.to(ctx.device)).cpu()
    images, batches = max(sums[1].item(), 1), max(sums[7].item(), 1)
    return {
        "loss": sums[0].item() / images,
        "fg_iou": sums[2].item() / images,
        "fg_dice": sums[3].item() / images,
        "fg_f1": sums[4].item() / images,
        "paper_iou": sums[5].item() / batches,
        "paper_dice": sums[6].item() / batches,
        "whole_fg_iou": whole_image_iou(per_item, source_images(dataset)),
        "n_images": int(sums[1].item()),
        "skipped": int(sums[8].item()),
    }
