"""A training run's checkpoints: ``latest``, ``best``, resuming, and the RNG state.

A checkpoint is a dict of plain types and tensors (it loads with
``torch.load(..., weights_only=True)``): ``model`` (the unwrapped state dict, with
SAM's own keys), ``optimizer``, ``scaler``, the progress of :class:`TrainState`,
``args`` and ``rng``. Files are written atomically by
:func:`utils.common.checkpoint_io.save_checkpoint`; rank 0 alone writes them.
"""

from __future__ import annotations

import json
import math
from argparse import Namespace
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from utils.common import distributed
from utils.common.checkpoint_io import load_checkpoint, save_checkpoint
from utils.common.distributed import DistContext
from utils.model.factory import state_problem
from utils.train import run_log
from utils.train.ema import WeightEMA


def rng_state() -> dict:
    """This process's random generators: the CPU's and its current CUDA device's."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (the CUDA state onto the current device)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def restore_rng(saved: list[dict], rank: int, seed: int) -> None:
    """Restore rank ``rank``'s generators from every rank's saved states; a rank the
    checkpoint has no state for (the world grew) is seeded ``seed + rank`` instead."""
    if rank < len(saved):
        set_rng_state(saved[rank])
    else:
        torch.manual_seed(seed + rank)


def mid_epoch_change(resumed: dict, world_size: int, args: Namespace) -> str | None:
    """Why ``resumed`` cannot continue mid-epoch with these settings, or None: the samples
    an epoch already used depend on the number of processes, the batch size and the
    accumulation, so changing them would repeat or skip data."""
    if resumed["step_in_epoch"] == 0:
        return None
    recorded = resumed.get("args", {})
    now = {"world_size": world_size, "batch_size": args.batch_size,
           "grad_acc_steps": args.grad_acc_steps}  # fmt: skip
    then = {"world_size": resumed.get("world_size", recorded.get("world_size")),
            "batch_size": recorded.get("batch_size"),
            "grad_acc_steps": recorded.get("grad_acc_steps")}  # fmt: skip
    changed = [f"{name} {then[name]} -> {now[name]}" for name in now if then[name] != now[name]]
    if not changed:
        return None
    return (
        f"stopped mid-epoch (step {resumed['step_in_epoch']} of epoch {resumed['epoch']}); "
        f"resuming with changed {', '.join(changed)} would repeat or skip data: resume "
        "with the same settings (they may change from the next epoch on)"
    )


# What restore_state reads: a checkpoint without them cannot continue a run.
RESUME_KEYS = ("model", "optimizer", "scaler", "epoch", "step", "step_in_epoch", "best_metric",
               "history", "rng")  # fmt: skip


def resume_problem(checkpoint: dict, needs_ema: bool) -> str | None:
    """Why ``checkpoint`` cannot continue a training run (``needs_ema``: one with a weight
    EMA), or None."""
    absent = [key for key in RESUME_KEYS if key not in checkpoint]
    if absent or not isinstance(checkpoint["model"], dict):
        return (
            f"not a BudSAM training checkpoint (no {', '.join(absent) or 'model'}); "
            "to start from its weights, pass it as -checkpoint instead"
        )
    if needs_ema and "ema" not in checkpoint:
        return "the checkpoint holds no weight EMA (trained without --ema_decay)"
    return None


@dataclass
class TrainState:
    """What a run has done so far; saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (or the next one, once an epoch ends)
    step: int = 0  # optimizer steps taken in the whole run
    step_in_epoch: int = 0  # optimizer steps taken in the epoch in progress
    best_metric: float = -math.inf
    skipped_items: int = 0  # item reads that failed, all ranks and epochs
    skipped_steps: int = 0  # optimizer steps dropped for a non-finite loss
    epoch_loss_sum: float = 0.0  # the epoch in progress: training loss summed over batches
    epoch_loss_count: int = 0  # ... and the batches, all ranks
    history: list[dict] = field(default_factory=list)

    def next_epoch(self) -> None:
        """Move to the start of the next epoch."""
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.epoch_loss_sum, self.epoch_loss_count = 0.0, 0


def checkpoint_state(
    model: nn.Module,
    optimizer,
    scaler,
    state: TrainState,
    args: Namespace,
    ema: WeightEMA | None = None,
    *,
    world_size: int = 1,
    rng: list[dict] | None = None,
) -> dict:
    """Everything a resumed run needs, as plain types and tensors (``weights_only`` loads):
    ``rng`` holds every rank's generator states, ``world_size`` the number of processes
    that actually ran (under torchrun ``--world_size`` is not used)."""
    extra = {} if ema is None else {"ema": ema.state_dict()}
    return {
        **extra,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "step_in_epoch": state.step_in_epoch,
        "best_metric": state.best_metric,
        "skipped_items": state.skipped_items,
        "skipped_steps": state.skipped_steps,
        "epoch_loss_sum": state.epoch_loss_sum,
        "epoch_loss_count": state.epoch_loss_count,
        "history": json.dumps(state.history),
        "args": {
            k: (v if isinstance(v, (int, float, str, bool, type(None))) else json.dumps(v))
            for k, v in vars(args).items()
        },
        "world_size": world_size,
        "rng": rng if rng is not None else [rng_state()],
    }


def restore_state(
    resumed: dict,
    model: nn.Module,
    optimizer,
    scaler,
    ema: WeightEMA | None = None,
) -> TrainState:
    """Load weights, optimizer, scaler (and EMA) states; return the training progress.
    The random generators are restored per rank by :func:`restore_rng`.

    Raises:
        ValueError: when the checkpoint cannot continue a run (see :func:`resume_problem`).
    """
    problem = resume_problem(resumed, needs_ema=ema is not None)
    if problem is not None:
        raise ValueError(problem)
    model.load_state_dict(resumed["model"])
    if ema is not None:
        ema.load_state_dict(resumed["ema"])
    optimizer.load_state_dict(resumed["optimizer"])
    scaler.load_state_dict(resumed["scaler"])
    return TrainState(
        epoch=resumed["epoch"],
        step=resumed["step"],
        step_in_epoch=resumed["step_in_epoch"],
        best_metric=resumed["best_metric"],
        skipped_items=resumed.get("skipped_items", 0),
        skipped_steps=resumed.get("skipped_steps", 0),
        epoch_loss_sum=resumed.get("epoch_loss_sum", 0.0),
        epoch_loss_count=resumed.get("epoch_loss_count", 0),
        history=json.loads(resumed["history"]),
    )


def check_resume(args: Namespace, path: str | Path) -> None:
    """A ``--resume`` checkpoint must be a BudSAM training checkpoint this run can continue:
    the training state, weights of a ``-model_type`` SAM, the same ``--train_parts``
    (the optimizer state is per trained tensor) and ``--pixel_norm``, and an EMA if
    ``--ema_decay`` asks for one.

    Raises:
        ValueError: naming the file and the problem.
    """
    checkpoint = load_checkpoint(path, mmap=True)
    problem = resume_problem(checkpoint, needs_ema=args.ema_decay > 0)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    recorded = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
    mismatch = state_problem(checkpoint["model"], args.model_type, args.input_size)
    if mismatch:
        trained = (
            f"; it was trained as {recorded['model_type']}" if "model_type" in recorded else ""
        )
        raise ValueError(f"{path}: does not hold a {args.model_type} model ({mismatch}{trained})")
    parts = recorded.get("train_parts")
    if isinstance(parts, str) and json.loads(parts) != args.train_parts:
        raise ValueError(
            f"{path}: trained with --train_parts {','.join(json.loads(parts))}, not "
            f"{','.join(args.train_parts)} (its optimizer state would not fit)"
        )
    pixel_norm = recorded.get("pixel_norm", "none")  # none before --pixel_norm existed
    if pixel_norm != args.pixel_norm:
        raise ValueError(
            f"{path}: trained with --pixel_norm {pixel_norm}, not {args.pixel_norm} (its "
            "weights learned from images normalised that way)"
        )


def resolve_resume(args: Namespace) -> Path | None:
    """The checkpoint to resume from: ``--resume PATH`` (checked with the arguments), or
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


def open_run_dir(ctx: DistContext, args: Namespace) -> tuple[Path, dict | None]:
    """The run folder (rank 0 creates it; a resumed run keeps its own) and the resumed
    checkpoint, if any."""
    # Rank 0 decides (``--resume auto`` looks at the run folders) and tells the others;
    # every rank then reads the file, which must be on a filesystem all nodes share.
    decided: tuple[Path | None, str | None] = (None, None)
    if ctx.is_main:
        try:
            decided = (resolve_resume(args), None)
        except ValueError as err:  # every rank must stop on it, not wait for rank 0
            decided = (None, str(err))
    resume_path, problem = distributed.broadcast_object(decided)
    if problem is not None:
        raise ValueError(problem)
    resumed = load_checkpoint(resume_path, mmap=True) if resume_path is not None else None
    run_dir = None
    if ctx.is_main:
        if resumed is not None:
            run_dir = resume_path.parent
        else:
            run_dir = run_log.new_run_dir(args.work_dir, args.task_name)
        run_log.save_run_config(run_dir, vars(args))
    run_dir = Path(distributed.broadcast_object(str(run_dir) if ctx.is_main else None))
    if resumed is not None and ctx.is_main:
        print(f"resuming from {resume_path}: epoch {resumed['epoch']}, step {resumed['step']}",
              flush=True)  # fmt: skip
    return run_dir, resumed


class Checkpointer:
    """Owns a run's checkpoints: restores a resumed run, writes ``latest`` and ``best``
    (rank 0 only), and hands the best weights back for the test.

    The weights that are validated, kept as ``best`` and tested are the EMA's when the
    run keeps one (:meth:`evaluated_weights`).
    """

    def __init__(
        self,
        run_dir: Path,
        ctx: DistContext,
        args: Namespace,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        ema: WeightEMA | None = None,
    ) -> None:
        self.run_dir, self.ctx, self.args = run_dir, ctx, args
        self.model, self.optimizer, self.scaler, self.ema = model, optimizer, scaler, ema
        self._best_weights: dict[str, torch.Tensor] | None = None

    @property
    def latest(self) -> Path:
        return self.run_dir / run_log.LATEST

    def restore(self, resumed: dict | None) -> TrainState:
        """The resumed run's progress (weights, optimizer, RNG and EMA loaded), or a new one."""
        if resumed is None:
            return TrainState()
        change = mid_epoch_change(resumed, self.ctx.world_size, self.args)
        if change is not None:
            raise ValueError(change)
        state = restore_state(resumed, self.model, self.optimizer, self.scaler, self.ema)
        saved = resumed["rng"] if isinstance(resumed["rng"], list) else [resumed["rng"]]
        restore_rng(saved, self.ctx.rank, self.args.seed)
        return state

    def evaluated_weights(self):
        """A context in which the model holds the weights that are evaluated."""
        return self.ema.applied(self.model) if self.ema is not None else nullcontext(self.model)

    def _save(self, name: str, state: TrainState) -> None:
        """Write checkpoint ``name`` (rank 0); every rank calls it, to give its RNG state."""
        rng = distributed.all_gather(rng_state())
        if self.ctx.is_main:
            checkpoint = checkpoint_state(
                self.model, self.optimizer, self.scaler, state, self.args, self.ema,
                world_size=self.ctx.world_size, rng=rng,
            )  # fmt: skip
            save_checkpoint(checkpoint, self.run_dir / name)

    def save_latest(self, state: TrainState) -> Path:
        self._save(run_log.LATEST, state)
        return self.latest

    def end_epoch(self, state: TrainState, improved: bool) -> None:
        """After an epoch's validation: ``best`` first when it improved, then ``latest``,
        so that a ``latest`` recording a new ``best_metric`` never exists without the
        ``best`` file it describes."""
        if improved:
            self._save_best(state)
        self.save_latest(state)

    def _save_best(self, state: TrainState) -> None:
        """Write ``best`` with the evaluated weights, and keep them in memory (every rank
        holds the same weights, so no rank needs to read rank 0's file)."""
        with self.evaluated_weights():
            self._save(run_log.BEST, state)
            self._best_weights = {
                k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
            }

    def load_best(self) -> None:
        """Put the best weights into the model: the copy kept in memory, or for a resumed
        run that improved on nothing since, the ``best`` file."""
        weights = self._best_weights
        if weights is None:
            distributed.barrier()
            weights = load_checkpoint(self.run_dir / run_log.BEST)["model"]
        self.model.load_state_dict(weights)
