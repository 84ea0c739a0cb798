"""Per-step training logs: steps.jsonl always, TensorBoard scalars with --tensorboard."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

import budsam_train_multi as train
from tests.test_training import COUNTS, _args, _only_run
from utils.data.synthetic import generate_dataset
from utils.train import run_log
from utils.train.engine import cosine_lr
from utils.train.step_log import STEPS_JSONL, TENSORBOARD_DIR, StepLog, read_steps

STEPS_PER_EPOCH = COUNTS["train"] // 2  # -batch_size 2 in _args, one process


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """test_training's tiny synthetic set (6 train, 3 valid, 3 test images)."""
    root = tmp_path_factory.mktemp("tiny_bsd_steps")
    generate_dataset(root, COUNTS, seed=5, workers=1, progress=False)
    return root


def _cosine(epochs: int):
    total = STEPS_PER_EPOCH * epochs
    return cosine_lr(1e-3, total, max(1, total // 20))  # lr_schedule's, -lr 1e-3 in _args


def test_steps_jsonl_has_one_line_per_optimizer_step_and_a_resume_continues_it(data_root, tmp_path):
    cosine = ("--lr_schedule", "cosine")
    assert train.main(_args(data_root, tmp_path, "-num_epochs", "2", *cosine)) == 0
    run_dir = _only_run(tmp_path)
    steps = read_steps(run_dir)
    assert [s["step"] for s in steps] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert [s["epoch"] for s in steps] == [0] * STEPS_PER_EPOCH + [1] * STEPS_PER_EPOCH
    assert all(math.isfinite(s["loss"]) and s["loss"] > 0 for s in steps)
    lr_at = _cosine(2)
    assert [s["lr"] for s in steps] == pytest.approx([lr_at(s["step"] - 1) for s in steps])
    lrs = [s["lr"] for s in steps]  # a one-step warm-up to -lr, then a cosine decay
    assert lrs[0] == lrs[1] == 1e-3 and lrs[1:] == sorted(lrs[1:], reverse=True)
    assert len(set(lrs[1:])) == len(lrs) - 1
    times = [s["time"] for s in steps]
    assert times == sorted(times) and not any("skipped" in s for s in steps)
    records = run_log.read_metrics(run_dir)  # the per-epoch file is kept, with throughput
    assert [r["step"] for r in records] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert all(r["train_samples_per_s"] > 0 and "gpu_max_mem_mb" not in r for r in records)
    # One more epoch, resumed: the file continues (earlier lines as they were).
    resume = ("-num_epochs", "3", "--resume", "auto", *cosine)
    assert train.main(_args(data_root, tmp_path, *resume)) == 0
    assert _only_run(tmp_path) == run_dir
    after = read_steps(run_dir)
    assert after[: len(steps)] == steps
    assert [s["step"] for s in after] == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert [s["epoch"] for s in after[len(steps) :]] == [2] * STEPS_PER_EPOCH
    lr_at = _cosine(3)  # the schedule of the longer run
    resumed = after[len(steps) :]
    assert [s["lr"] for s in resumed] == pytest.approx([lr_at(s["step"] - 1) for s in resumed])


def test_a_resumed_log_drops_the_steps_a_killed_run_logged_past_its_checkpoint(tmp_path):
    with StepLog(tmp_path) as log:
        for step in range(1, 6):
            log.step(0, step, 0.5, 1e-3)
        log.step(0, 6, float("nan"), 1e-3, "nonfinite")
    with open(tmp_path / STEPS_JSONL, "a") as handle:
        handle.write('{"epoch": 0, "step": 7, "lo')  # a line cut short by a kill
    logged = read_steps(tmp_path)  # the cut-short line left out
    assert [s["step"] for s in logged] == [1, 2, 3, 4, 5, 6]
    assert logged[-1]["loss"] is None and logged[-1]["skipped"] == "nonfinite"  # NaN: null
    with StepLog(tmp_path, last_step=3) as log:  # resumed from a checkpoint at step 3
        log.step(0, 4, 0.25, 2e-3)
    steps = read_steps(tmp_path)
    assert [(s["step"], s["loss"], s["lr"]) for s in steps] == [
        (1, 0.5, 1e-3), (2, 0.5, 1e-3), (3, 0.5, 1e-3), (4, 0.25, 2e-3),
    ]  # fmt: skip


def test_tensorboard_gets_step_and_epoch_scalars(data_root, tmp_path):
    pytest.importorskip("tensorboard", reason="--tensorboard needs the optional tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert train.main(_args(data_root, tmp_path, "-num_epochs", "2", "--tensorboard")) == 0
    run_dir = _only_run(tmp_path)
    assert list((run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    per_step, per_epoch = {"train/loss", "train/lr"}, {
        "train/epoch_loss", "perf/train_samples_per_s", "perf/epoch_seconds",
        "val_full/loss", "val_full/fg_iou", "val_full/whole_fg_iou", "val_gt_box/paper_iou",
    }  # fmt: skip
    assert per_step | per_epoch <= tags
    assert "perf/gpu_max_mem_mb" not in tags  # CPU run
    steps = read_steps(run_dir)
    for tag, key in (("train/loss", "loss"), ("train/lr", "lr")):
        points = events.Scalars(tag)
        assert [p.step for p in points] == [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]
        assert [p.value for p in points] == pytest.approx([s[key] for s in steps], rel=1e-6)
    records = run_log.read_metrics(run_dir)
    for tag in per_epoch:
        assert [p.step for p in events.Scalars(tag)] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    points = events.Scalars("val_full/loss")
    assert [p.value for p in points] == pytest.approx([r["val_full_loss"] for r in records])


def test_tensorboard_flag_without_the_package_is_one_line_before_training(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now fails
    work_dir = tmp_path / "work"
    with pytest.raises(SystemExit) as exit_info:
        train.main(_args(tmp_path / "no_data", work_dir, "--tensorboard"))
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--tensorboard needs the optional package 'tensorboard'" in line
    assert line.endswith("install it with: pip install tensorboard")
    assert not work_dir.exists()  # stopped at the arguments: no run folder, no data check


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_runs_log_their_peak_memory(data_root, tmp_path):
    pytest.importorskip("tensorboard", reason="--tensorboard needs the optional tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cuda = [a if a != "cpu" else "cuda" for a in _args(data_root, tmp_path, "--tensorboard")]
    assert train.main([*cuda, "-num_epochs", "1"]) == 0
    run_dir = _only_run(tmp_path)
    (record,) = run_log.read_metrics(run_dir)
    assert record["gpu_max_mem_mb"] > 0
    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    events.Reload()
    (point,) = events.Scalars("perf/gpu_max_mem_mb")
    assert point.value == pytest.approx(record["gpu_max_mem_mb"])
    assert json.loads((run_dir / "args.json").read_text())["tensorboard"] is True
