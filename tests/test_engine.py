"""utils.train.engine: what an optimizer step counts, and an epoch's loss across a resume."""

from __future__ import annotations

import sys

import pytest
import torch
from torch.utils.data import DataLoader

from tests import ddp_checks
from utils.common.distributed import DistContext
from utils.data.dataset import collate_skipping_none
from utils.train.checkpointer import TrainState
from utils.train.ema import WeightEMA
from utils.train.engine import Trainer, train_one_epoch

CPU = DistContext(0, 1, 0, torch.device("cpu"))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SkippingScaler:
    """An fp16 gradient scaler's contract, finding infinite gradients on given steps:
    those steps are not applied and the scale is halved."""

    def __init__(self, skip: set[int]) -> None:
        self.skip, self.calls, self._scale = skip, 0, 1024.0

    def is_enabled(self) -> bool:
        return True

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def get_scale(self) -> float:
        return self._scale

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.calls not in self.skip:
            optimizer.step()

    def update(self) -> None:
        if self.calls in self.skip:
            self._scale /= 2
        self.calls += 1


class StopAfter:
    """A stop request that every rank agrees on after ``steps`` optimizer steps."""

    def __init__(self, steps: int) -> None:
        self.steps, self.calls = steps, 0

    def agreed(self, ctx: DistContext) -> bool:
        self.calls += 1
        return self.calls >= self.steps


def _trainer(model, scaler=None, ema=None) -> Trainer:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    scaler = scaler or torch.amp.GradScaler("cpu", enabled=False)
    return Trainer(model, optimizer, scaler, CPU, ema=ema)


def _loader(items: list[dict]) -> DataLoader:
    return DataLoader(items, batch_size=1, collate_fn=collate_skipping_none)


def test_a_step_the_gradient_scaler_skips_advances_neither_the_schedule_nor_the_ema():
    model = ddp_checks.make_single_model()
    ema = WeightEMA(model, 0.9)
    state = TrainState()
    train_one_epoch(
        _trainer(model, SkippingScaler({1}), ema), _loader(ddp_checks.fake_items(4, 0)), state
    )
    assert state.step_in_epoch == 4  # the data of all four steps was used
    assert state.step == 3 and ema.updates == 3  # but only three updates were applied


def test_the_loss_of_a_resumed_epoch_covers_the_whole_epoch():
    items = ddp_checks.fake_items(4, seed=1)
    torch.manual_seed(0)
    whole = train_one_epoch(_trainer(ddp_checks.make_single_model()), _loader(items), TrainState())
    trainer, state = _trainer(ddp_checks.make_single_model()), TrainState()
    first = train_one_epoch(trainer, _loader(items), state, StopAfter(2))
    assert first["stopped"] and state.step_in_epoch == 2
    rest = train_one_epoch(trainer, _loader(items[2:]), state)  # what a resumed run does
    assert rest["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-6)
    state.next_epoch()
    assert (state.epoch, state.step_in_epoch, state.epoch_loss_count) == (1, 0, 0)


def test_clip_grad_bounds_the_gradient_norm_of_each_step():
    items = ddp_checks.fake_items(1, seed=2)
    moves = {}
    for clip in (None, 1e-3):
        model = ddp_checks.make_single_model()
        trainer = _trainer(model)
        trainer.clip_grad = clip
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        train_one_epoch(trainer, _loader(items), TrainState())
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        moves[clip] = (after - before).norm().item()
    assert moves[1e-3] <= 0.05 * 1e-3 * 1.01  # SGD: lr x the clipped norm (float32 round-off)
    assert moves[None] > 10 * moves[1e-3]


def test_training_changes_no_buffer_so_ddp_need_not_broadcast_them():
    model = ddp_checks.make_single_model()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    assert buffers  # the positional encoding's Gaussian matrix, at least
    train_one_epoch(_trainer(model), _loader(ddp_checks.fake_items(2, seed=3)), TrainState())
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())


def test_one_host_sync_per_optimizer_step(monkeypatch):
    """BudSAM's code reads a value back from the device (item, tolist, bool) once per
    optimizer step and once at the epoch's end, not on every micro-batch."""
    reads = []
    for name in ("item", "tolist", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("utils."):  # not the DataLoader drawing its seed
                reads.append(f"{caller}.{_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    model = ddp_checks.make_single_model()
    trainer = _trainer(model)
    trainer.grad_acc_steps = 3
    state = TrainState()
    train_one_epoch(trainer, _loader(ddp_checks.fake_items(6, 0)), state)
    monkeypatch.undo()
    assert state.step == 2
    assert len(reads) == state.step + 1, reads  # was 3 per micro-batch, 9 per step


class StoredEmbeddings:
    """An embedding store holding every item's embedding, counting the reads."""

    def __init__(self, model, items: list[dict]) -> None:
        with torch.no_grad():
            self.stored = {item["key"]: model.encode(item["image"][None])[0] for item in items}
        self.reads = 0

    def load(self, key: str) -> torch.Tensor:
        self.reads += 1
        return self.stored[key]


class NoEmbedder:
    """An embedder that must not be needed: the batches carry their embeddings."""

    def __call__(self, indices, device, amp):
        raise AssertionError("the step computed embeddings the loader should have read")


def test_cached_embeddings_come_with_the_batch(tmp_path):
    """Decoder-only training reads stored embeddings in the loader, not in the step."""
    from utils.data.dataset import BSDSegmentation
    from utils.data.synthetic import generate_dataset

    generate_dataset(tmp_path, {"train": 3, "valid": 0, "test": 0}, seed=0)
    model = ddp_checks.make_single_model()
    dataset = BSDSegmentation(tmp_path / "train", model.img_size, tile_width=1024)
    store = StoredEmbeddings(model, [dataset[i] for i in range(len(dataset))])
    dataset.embeddings = store
    model.set_trainable(["mask_decoder"])
    trainer = _trainer(model)
    trainer.embedder = NoEmbedder()
    state = TrainState()
    train_one_epoch(trainer, _loader(dataset), state)
    assert state.step == len(dataset) and store.reads == len(dataset)
