"""Code that runs inside the spawned gloo processes of tests/test_distributed.py.

Each function is one rank's work; it writes what it observed to a JSON/tensor file
that the test (in the parent process) reads and asserts on.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from utils.common import distributed
from utils.data.dataset import collate_skipping_none
from utils.model.budsam import BudSAM
from utils.model.sam import build_sam
from utils.train.checkpointer import TrainState
from utils.train.ema import WeightEMA
from utils.train.engine import Trainer, train_one_epoch
from utils.train.losses import DiceBCELoss
from utils.train.validation import evaluate

SIZE = 256


def fake_items(n: int, seed: int) -> list[dict]:
    """``n`` random image/mask/box items like BSDSegmentation's."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(n):
        mask = torch.zeros(1, SIZE, SIZE)
        top = int(torch.randint(0, 150, (1,), generator=generator))
        mask[:, top : top + 60, 40:200] = 1.0
        items.append(
            {
                "image": torch.rand(3, SIZE, SIZE, generator=generator),
                "mask": mask,
                "box": torch.tensor([30.0, top - 5.0, 210.0, top + 65.0]),
                "index": index,
                "name": f"item{index}.png",
            }
        )
    return items


def make_ddp(bucket_cap_mb: int) -> tuple[BudSAM, DistributedDataParallel]:
    model = make_single_model()
    return model, DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)


def run_steps(
    local_rank: int, world_size: int, out: str, init: str, mode: str, ema_decay: float = 0.0
) -> None:
    """Train a few steps on rank-specific data and save the resulting parameters (with
    ``ema_decay`` > 0, the weight EMA's instead).

    mode ``"acc"``: batch 1 with two accumulated micro-steps; ``"plain"``: batch 2.
    """
    torch.set_num_threads(1)
    ctx = distributed.init_distributed(local_rank, world_size, 0, world_size, init, "cpu", 120)
    try:
        torch.manual_seed(0)
        model, ddp = make_ddp(bucket_cap_mb=3)
        items = fake_items(4, seed=100 + ctx.rank)
        batch_size, grad_acc = (1, 2) if mode == "acc" else (2, 1)
        loader = DataLoader(items, batch_size=batch_size, collate_fn=collate_skipping_none)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        state = TrainState()
        ema = WeightEMA(model, ema_decay) if ema_decay > 0 else None
        trainer = Trainer(ddp, optimizer, scaler, ctx, grad_acc_steps=grad_acc, ema=ema)
        train_one_epoch(trainer, loader, state)
        weights = ema.shadow.values() if ema is not None else model.parameters()
        flat = torch.cat([p.detach().flatten() for p in weights])
        torch.save(flat, Path(out) / f"{mode}_rank{ctx.rank}.pt")
        info = {"steps": state.step, "bucket_bytes_cap": ddp.bucket_bytes_cap}
        (Path(out) / f"{mode}_rank{ctx.rank}.json").write_text(json.dumps(info))
    finally:
        distributed.cleanup()


def run_eval(local_rank: int, world_size: int, out: str, init: str, n_items: int) -> None:
    """Evaluate on an ``n_items`` split split across ranks; save the reduced scores."""
    torch.set_num_threads(1)
    ctx = distributed.init_distributed(local_rank, world_size, 0, world_size, init, "cpu", 120)
    try:
        model = BudSAM(build_sam("vit_tiny", seed=0))
        dataset = fake_items(n_items, seed=7)
        scores = evaluate(model, dataset, ctx, batch_size=2, amp="none", embedder=None)
        (Path(out) / f"eval_rank{ctx.rank}.json").write_text(json.dumps(scores))
    finally:
        distributed.cleanup()


def make_single_model() -> BudSAM:
    """The initial model every rank builds (vit_tiny, seed 0, encoder and decoder trained)."""
    model = BudSAM(build_sam("vit_tiny", seed=0))
    model.set_trainable(["image_encoder", "mask_decoder"])
    return model


class NaNLossOnCalls(torch.nn.Module):
    """DiceBCELoss, made NaN on the given 0-based calls (a fault to inject)."""

    def __init__(self, calls: set[int]) -> None:
        super().__init__()
        self.calls, self.count, self.loss = calls, 0, DiceBCELoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.loss(logits, target)
        self.count += 1
        return loss * float("nan") if self.count - 1 in self.calls else loss


def run_faults(local_rank: int, world_size: int, out: str, init: str) -> None:
    """Rank 1 cannot load one batch; rank 0's loss is NaN on another: both ranks must
    drop and skip the same steps and end with the same weights."""
    torch.set_num_threads(1)
    ctx = distributed.init_distributed(local_rank, world_size, 0, world_size, init, "cpu", 120)
    try:
        torch.manual_seed(0)
        model, ddp = make_ddp(bucket_cap_mb=3)
        items: list = fake_items(5, seed=100 + ctx.rank)
        if ctx.rank == 1:
            items[1] = None  # an unreadable item: rank 1's second batch is empty
        loader = DataLoader(items, batch_size=1, collate_fn=collate_skipping_none)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        state = TrainState()
        nan_calls = {2} if ctx.rank == 0 else set()
        trainer = Trainer(ddp, optimizer, scaler, ctx, loss_fn=NaNLossOnCalls(nan_calls))
        result = train_one_epoch(trainer, loader, state)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save(flat, Path(out) / f"faults_rank{ctx.rank}.pt")
        info = {
            "steps": state.step, "skipped_steps": state.skipped_steps,
            "skipped_items": state.skipped_items, "train_loss": result["train_loss"],
        }  # fmt: skip
        (Path(out) / f"faults_rank{ctx.rank}.json").write_text(json.dumps(info))
    finally:
        distributed.cleanup()
