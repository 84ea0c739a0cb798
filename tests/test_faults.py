"""Faults during training: non-finite losses, unloadable batches under DDP, a failing rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from tests import ddp_checks
from tests.conftest import REPO_ROOT
from tests.test_distributed import _free_init_method
from utils.common.checkpoint_io import load_checkpoint
from utils.common.distributed import DistContext
from utils.data.dataset import collate_skipping_none
from utils.data.synthetic import generate_dataset
from utils.train.checkpointer import TrainState
from utils.train.engine import NonFiniteLossError, Trainer, train_one_epoch

CPU = DistContext(0, 1, 0, torch.device("cpu"))


def _train(model, items, loss_fn, state: TrainState) -> dict:
    loader = DataLoader(items, batch_size=1, collate_fn=collate_skipping_none)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return train_one_epoch(Trainer(model, optimizer, scaler, CPU, loss_fn=loss_fn), loader, state)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class NaNGradientOnCalls(ddp_checks.NaNLossOnCalls):
    """A finite loss whose gradients are NaN on the given calls (d sqrt(x)/dx at 0 is inf)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.loss(logits, target)
        self.count += 1
        return loss + torch.sqrt((logits * 0).sum()) if self.count - 1 in self.calls else loss


@pytest.mark.parametrize("fault", [ddp_checks.NaNLossOnCalls, NaNGradientOnCalls])
def test_a_non_finite_loss_or_gradient_skips_its_step_and_leaves_the_weights(fault, capsys):
    items = ddp_checks.fake_items(3, seed=1)
    torch.manual_seed(0)
    clean = ddp_checks.make_single_model()
    _train(clean, [items[0], items[2]], ddp_checks.NaNLossOnCalls(set()), TrainState())
    torch.manual_seed(0)
    faulty, state = ddp_checks.make_single_model(), TrainState()
    result = _train(faulty, items, fault({1}), state)
    # The faulty step moved nothing: the weights are those of training on items 0 and 2.
    assert torch.allclose(_flat(faulty), _flat(clean), atol=1e-6)
    assert state.step == 3 and state.skipped_steps == 1
    assert torch.isfinite(torch.tensor(result["train_loss"]))
    assert (
        "step 2: the loss or its gradients are NaN or infinite; step skipped (1 in a row"
        in capsys.readouterr().out
    )


def test_a_loss_that_stays_non_finite_stops_training_with_a_clear_error():
    torch.manual_seed(0)
    model = ddp_checks.make_single_model()
    before, state = _flat(model), TrainState()
    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite on 3 optimizer steps in a row"):
        _train(
            model, ddp_checks.fake_items(5, seed=1), ddp_checks.NaNLossOnCalls(set(range(9))), state
        )
    assert torch.equal(_flat(model), before)
    assert state.skipped_steps == 3


def test_ddp_ranks_drop_and_skip_the_same_steps(tmp_path):
    """Rank 1 cannot load a batch, rank 0's loss is NaN on another: no hang, same weights."""
    mp.spawn(ddp_checks.run_faults, args=(2, str(tmp_path), _free_init_method()), nprocs=2)
    infos = [json.loads((tmp_path / f"faults_rank{r}.json").read_text()) for r in (0, 1)]
    # 5 batches: one dropped on both ranks (rank 1's is empty), 4 steps, one of them skipped.
    assert [(i["steps"], i["skipped_steps"]) for i in infos] == [(4, 1), (4, 1)]
    assert [i["skipped_items"] for i in infos] == [1, 1]  # rank 1's, known to both
    assert infos[0]["train_loss"] == infos[1]["train_loss"]
    weights = [torch.load(tmp_path / f"faults_rank{r}.pt") for r in (0, 1)]
    assert torch.equal(weights[0], weights[1])


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_bsd")
    generate_dataset(root, {"train": 4, "valid": 2, "test": 2}, seed=5, workers=1, progress=False)
    return root


def _command(script: str, root, work_dir, *extra: str) -> list[str]:
    return [
        sys.executable, "-u", script, "-i", str(root), "-task_name", "t", "-model_type",
        "vit_tiny", "--device", "cpu", "-work_dir", str(work_dir), "-batch_size", "1",
        "-num_workers", "0", "--seed", "1", "-num_epochs", "1", *extra,
    ]  # fmt: skip


def test_a_diverging_run_stops_with_one_line_and_keeps_no_bad_checkpoint(tiny_root, tmp_path):
    command = _command("budsam_train_multi.py", tiny_root, tmp_path, "-lr", "1e30")
    command += ["--max_nonfinite_steps", "2"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error")]
    assert line.startswith(
        "error: training stopped: the loss or its gradients were NaN or infinite on 2"
    )
    (run_dir,) = tmp_path.glob("t-*")
    assert not any(run_dir.glob("*.pth"))  # no epoch ended: no checkpoint of NaN weights


@pytest.mark.parametrize(
    "fault, code, last_line",
    [
        ("unforeseen", 1, "error: rank 1 failed: RuntimeError: injected fault on rank 1"),
        ("bad_input", 2, "error: rank 1 stopped"),
    ],
)
def test_one_failing_rank_stops_every_rank_soon_and_names_the_error(
    tiny_root, tmp_path, fault, code, last_line
):
    port = _free_init_method()
    command = _command("tests/fault_injection.py", tiny_root, tmp_path, "--world_size", "2")
    command += ["--init_method", port, "--dist_timeout", "600"]
    start = time.monotonic()
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "FAULT": fault},
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert done.returncode == code, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(last_line), last
    if fault == "bad_input":
        assert "Traceback" not in done.stderr
        assert "error (rank 1): injected bad input on rank 1" in done.stderr
    assert elapsed < 120  # well inside the 600 s collective timeout: no rank hung


def test_sigkill_during_a_save_leaves_a_checkpoint_that_loads(tmp_path):
    """A process killed while writing a checkpoint leaves the previous one intact."""
    path = tmp_path / "latest.pth"
    script = f"""
import torch
from utils.common.checkpoint_io import save_checkpoint
save_checkpoint({{"epoch": 1, "model": {{"w": torch.ones(3)}}}}, {str(path)!r})
big = {{"epoch": 2, "model": {{"w": torch.full((32_000_000,), 2.0)}}}}  # 128 MB
print("saving", flush=True)
while True:
    save_checkpoint(big, {str(path)!r})
"""
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "saving\n"
    partial = tmp_path / f".latest.{process.pid}.tmp.pth"  # utils.common.files.atomic_path's name
    deadline = time.monotonic() + 60
    while not partial.is_file() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.02)  # into the write
    process.kill()
    process.wait(timeout=30)
    assert partial.is_file()  # killed mid-save
    state = load_checkpoint(path)
    if state["epoch"] == 1:
        assert torch.equal(state["model"]["w"], torch.ones(3))
    else:  # a save that had finished before the kill
        assert state["epoch"] == 2 and bool((state["model"]["w"] == 2.0).all())
