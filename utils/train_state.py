"""What a training run has done so far, and its round trip through a checkpoint."""

from __future__ import annotations

import json
import math
from argparse import Namespace
from dataclasses import dataclass, field

from torch import nn

from utils.checkpoint import rng_state, set_rng_state
from utils.ema import WeightEMA


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
        ValueError: when ``ema`` is given but the checkpoint holds no EMA state.
    """
    model.load_state_dict(resumed["model"])
    if ema is not None:
        if "ema" not in resumed:
            raise ValueError("the checkpoint holds no weight EMA (trained without --ema_decay)")
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
