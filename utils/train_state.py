"""What a training run has done so far, and its round trip through a checkpoint."""

from __future__ import annotations

import json
import math
from argparse import Namespace
from dataclasses import dataclass, field

from torch import nn

from utils.checkpoint import rng_state, set_rng_state
from utils.ema import WeightEMA

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
    history: list[dict] = field(default_factory=list)


def checkpoint_state(
    model: nn.Module,
    optimizer,
    scaler,
    state: TrainState,
    args: Namespace,
    ema: WeightEMA | None = None,
) -> dict:
    """Everything a resumed run needs, as plain types and tensors (``weights_only`` loads)."""
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
        "history": json.dumps(state.history),
        "args": {
            k: (v if isinstance(v, (int, float, str, bool, type(None))) else json.dumps(v))
            for k, v in vars(args).items()
        },
        "rng": rng_state(),
    }


def restore_state(
    resumed: dict, model: nn.Module, optimizer, scaler, ema: WeightEMA | None = None
) -> TrainState:
    """Load weights, optimizer, scaler, RNG (and EMA) states; return the training progress.

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
    set_rng_state(resumed["rng"])
    return TrainState(
        epoch=resumed["epoch"],
        step=resumed["step"],
        step_in_epoch=resumed["step_in_epoch"],
        best_metric=resumed["best_metric"],
        skipped_items=resumed.get("skipped_items", 0),
        skipped_steps=resumed.get("skipped_steps", 0),
        history=json.loads(resumed["history"]),
    )
