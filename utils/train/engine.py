"""One training epoch for one process of a DDP run."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from utils.common import distributed
from utils.common.amp import autocast
from utils.common.progress import Progress
from utils.train.checkpointer import TrainState
from utils.train.ema import WeightEMA
from utils.train.embedding_cache import Embedder
from utils.train.losses import DiceBCELoss
from utils.train.step_log import StepLog


def cosine_lr(base_lr: float, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0."""

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    return lr_at


def lr_schedule(
    args: argparse.Namespace, n_train: int, world_size: int
) -> Callable[[int], float] | None:
    """The learning rate of each optimizer step for ``--lr_schedule cosine`` (5 % warm-up over
    the run's steps), or None for a constant rate."""
    if args.lr_schedule != "cosine":
        return None
    per_step = args.batch_size * args.grad_acc_steps
    steps = math.ceil(n_train / world_size) // per_step
    if args.max_steps_per_epoch:
        steps = min(steps, args.max_steps_per_epoch)
    total = steps * args.num_epochs
    return cosine_lr(args.lr, total, max(1, total // 20))


def model_logits(
    model: nn.Module,
    batch: dict,
    device: torch.device,
    amp: str,
    embedder: Embedder | None,
) -> torch.Tensor:
    """Full-size mask logits ``(B, 1, S, S)`` for a batch, from images or cached embeddings.

    With an ``embedder`` the batch's ``embedding`` (read ahead by the loader's workers,
    see :attr:`BSDSegmentation.embeddings`) is used; a batch without one gets its
    embeddings from the embedder.
    """
    boxes = batch["box"].to(device, non_blocking=True)
    with autocast(device, amp):
        if embedder is None:
            return model(batch["image"].to(device, non_blocking=True), boxes)
        embeddings = batch.get("embedding")
        if embeddings is None:
            embeddings = embedder(batch["index"].tolist(), device, amp)
        return model(None, boxes, embeddings=embeddings.to(device, non_blocking=True))


class NonFiniteLossError(RuntimeError):
    """The loss or its gradients were NaN or infinite on too many optimizer steps in a row."""


@dataclass
class Trainer:
    """What an optimizer step needs: the model as trained (DDP-wrapped or not), its
    optimizer and gradient scaler, and how to step.

    Gradient accumulation: on the first ``grad_acc_steps - 1`` micro-batches the
    forward and backward run inside ``no_sync`` (no all-reduce) and gradients add
    up; the loss is divided by ``grad_acc_steps``; the optimizer steps and the
    gradients are zeroed once per ``grad_acc_steps`` micro-batches. ``lr_at`` sets the
    learning rate of each step; ``ema`` is updated after each optimizer step; ``step_log``
    (rank 0's, None on the others) gets each optimizer step's loss and learning rate.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ctx: distributed.DistContext
    loss_fn: nn.Module = field(default_factory=DiceBCELoss)
    amp: str = "none"
    grad_acc_steps: int = 1
    embedder: Embedder | None = None
    lr_at: Callable[[int], float] | None = None
    ema: WeightEMA | None = None
    max_nonfinite_steps: int = 3
    log_interval: int = 10
    clip_grad: float | None = None
    step_log: StepLog | None = None

    @property
    def unwrapped(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return getattr(self.model, "module", self.model)


def train_one_epoch(
    trainer: Trainer,
    loader: DataLoader,
    state: TrainState,
    stop: distributed.StopRequest | None = None,
) -> dict:
    """Train until the loader ends or a stop is requested on any rank (checked after each
    optimizer step); returns ``{"train_loss", "samples_per_s", "stopped"}``
    (``samples_per_s``: the items of all ranks trained on per second of this call).

    Trailing micro-batches that do not fill a whole step are ignored (the caller hands
    in whole steps only). ``state.step`` counts optimizer steps (the schedule's
    position), those dropped for a non-finite loss included (they are reported by
    number); a step the fp16 gradient scaler skips, a routine part of fp16 training,
    advances neither it nor the EMA. ``state.step_in_epoch`` counts the data steps.
    ``train_loss`` covers the whole epoch, the part before a resume included.

    Faults, decided alike on every rank so that DDP's collectives stay matched: a
    micro-batch is dropped on all ranks when any rank could load none of its items;
    an optimizer step is skipped (gradients dropped, weights unchanged, reported)
    when the loss was not finite on any rank, or (without a gradient scaler) a
    gradient was not, and after ``max_nonfinite_steps`` such steps in a row
    :class:`NonFiniteLossError` stops training.

    Host synchronisation: one per optimizer step (the all-reduced non-finite flag, with
    the step's loss for the progress line and the step log), and one small all-reduce per
    micro-batch only in a process group (whether every rank has items).
    """
    t, ctx, optimizer, scaler = trainer, trainer.ctx, trainer.optimizer, trainer.scaler
    t.model.train()
    n_steps = len(loader) // t.grad_acc_steps
    progress = Progress(n_steps, f"epoch {state.epoch}", ctx.is_main, t.log_interval)
    # finite losses' sum and count, on the device so that no micro-batch waits for them
    loss_totals = torch.zeros(2, dtype=torch.float64, device=ctx.device)
    nonfinite_in_step = torch.zeros((), dtype=torch.bool, device=ctx.device)
    step_loss = torch.zeros((), dtype=torch.float64, device=ctx.device)  # summed micro-batches
    skipped, micro, nonfinite_in_a_row, samples = 0, 0, 0, 0
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    stopped = False
    for batch in loader:
        skipped += batch["skipped"]
        if distributed.any_rank("mask" not in batch, ctx.device):
            continue
        micro += 1
        samples += len(batch["mask"])
        sync_now = micro % t.grad_acc_steps == 0
        no_sync = getattr(t.model, "no_sync", None)
        context = no_sync() if (no_sync is not None and not sync_now) else nullcontext()
        with context:
            logits = model_logits(t.model, batch, ctx.device, t.amp, t.embedder)
            loss = t.loss_fn(logits.float(), batch["mask"].to(ctx.device, non_blocking=True))
            scaler.scale(loss / t.grad_acc_steps).backward()
        loss = loss.detach().double()
        finite = torch.isfinite(loss)
        loss_totals += torch.stack([torch.where(finite, loss, 0.0), finite.double()])
        nonfinite_in_step |= ~finite
        step_loss += loss
        if not sync_now:
            continue
        # Gradients are all-reduced by now, so every rank sees the same ones. With a
        # gradient scaler (fp16) infinite gradients are its business: it skips the step.
        if not scaler.is_enabled():
            nonfinite_in_step |= ~_gradients_finite(optimizer)
        # The step's one host sync: any rank's non-finite flag, and the step's mean loss.
        status = distributed.all_reduce_sum(torch.stack([nonfinite_in_step.double(), step_loss]))
        nonfinite_ranks, loss_value = status.tolist()
        loss_value /= ctx.world_size * t.grad_acc_steps
        if nonfinite_ranks > 0:
            optimizer.zero_grad(set_to_none=True)
            state.skipped_steps += 1
            nonfinite_in_a_row += 1
            _log_step(t, state, loss_value, "nonfinite")
            _report_nonfinite(ctx, state.step + 1, nonfinite_in_a_row, t.max_nonfinite_steps)
            state.step += 1
        else:
            nonfinite_in_a_row = 0
            applied = _optimizer_step(optimizer, scaler, t.lr_at, state.step, t.clip_grad)
            _log_step(t, state, loss_value, None if applied else "fp16_scaler")
            if applied:
                if t.ema is not None:
                    t.ema.update(t.unwrapped)
                state.step += 1
        nonfinite_in_step.zero_()
        step_loss.zero_()
        state.step_in_epoch += 1
        progress.update(loss=loss_value)
        if stop is not None and stop.agreed(ctx):
            stopped = True
            break
    progress.close()
    seconds = max(time.perf_counter() - start, 1e-9)
    counts = torch.tensor([skipped, samples], dtype=torch.float64, device=ctx.device)
    loss_sum, loss_count, skipped, samples = distributed.all_reduce_sum(
        torch.cat([loss_totals, counts])
    ).tolist()
    state.skipped_items += int(skipped)  # every rank's, so every rank agrees
    # With the part of the epoch run before a resume: every rank holds the same totals.
    state.epoch_loss_sum += loss_sum
    state.epoch_loss_count += int(loss_count)
    train_loss = state.epoch_loss_sum / max(state.epoch_loss_count, 1)
    return {"train_loss": train_loss, "samples_per_s": samples / seconds, "stopped": stopped}


def _log_step(t: Trainer, state: TrainState, loss: float, skipped: str | None) -> None:
    """Hand the optimizer step being taken (``state.step + 1``) to the step log, if any,
    with the learning rate it is (or would have been) taken at."""
    if t.step_log is None:
        return
    lr = t.lr_at(state.step) if t.lr_at is not None else t.optimizer.param_groups[0]["lr"]
    t.step_log.step(state.epoch, state.step + 1, loss, lr, skipped)


def _gradients_finite(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """A bool tensor on the gradients' device: whether every gradient the optimizer would
    apply is finite (no host sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
    checks = [torch.isfinite(g).all() for g in grads if g is not None]
    return torch.stack(checks).all() if checks else torch.tensor(True)


def _optimizer_step(
    optimizer,
    scaler,
    lr_at: Callable[[int], float] | None,
    step: int,
    clip_grad: float | None = None,
) -> bool:
    """One optimizer step at the scheduled learning rate (gradients clipped to the global
    norm ``clip_grad`` if given), then zeroed gradients. False when the fp16 gradient
    scaler skipped it (infinite gradients: it lowers its scale)."""
    if lr_at is not None:  # a function of the step alone, so a resumed run agrees
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
    if clip_grad is not None:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return scale is None or scaler.get_scale() >= scale


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
