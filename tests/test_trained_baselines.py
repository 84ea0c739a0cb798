"""The trained baselines in the harness: two-process DDP training, their checkpoints in
inference and evaluation, one-line errors, and any spectrogram width."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import budsam_eval
import budsam_infer
import budsam_train_multi as train
from tests.test_distributed import _free_init_method
from utils.common.checkpoint_io import load_checkpoint, save_checkpoint
from utils.data.synthetic import generate_dataset
from utils.inference.predict import predict_probabilities
from utils.inference.segmenter import load_model
from utils.model.baselines import BASELINE_TYPES, build_baseline
from utils.train import run_log
from utils.train.args import parse_args
from utils.train.presets import PRESETS

COUNTS = {"train": 4, "valid": 2, "test": 2}
SIZE = 64  # the smallest input every baseline takes (a multiple of 32), for speed


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("baseline_bsd")
    generate_dataset(root, COUNTS, seed=7, workers=1, progress=False)
    return root


def _train_args(data_root: Path, work_dir: Path, model_type: str, *extra: str) -> list[str]:
    return [
        "-i", str(data_root), "--task_name", model_type, "--model_type", model_type,
        "--device", "cpu", "--work_dir", str(work_dir), "--batch_size", "2",
        "--num_workers", "0", "--input_size", str(SIZE), "--tile_width", "256",
        "--half_spectrum", "--num_epochs", "1", "--max_steps_per_epoch", "2", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory) -> dict[str, Path]:
    """Each baseline's run folder after 2 optimizer steps under 2 gloo processes."""
    runs = {}
    for model_type in BASELINE_TYPES:
        work_dir = tmp_path_factory.mktemp(f"work_{model_type}")
        argv = _train_args(data_root, work_dir, model_type, "--world_size", "2",
                           "--init_method", _free_init_method())  # fmt: skip
        assert train.main(argv) == 0, model_type
        runs[model_type] = run_log.latest_run_dir(work_dir, model_type)
    return runs


@pytest.mark.parametrize("model_type", BASELINE_TYPES)
def test_each_baseline_trains_under_two_processes_and_records_its_settings(trained, model_type):
    run_dir = trained[model_type]
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert [step["step"] for step in steps] == [1, 2] and all(np.isfinite(s["loss"]) for s in steps)
    checkpoint = load_checkpoint(run_dir / run_log.BEST)
    recorded = checkpoint["args"]
    assert recorded["model_type"] == model_type and recorded["input_size"] == SIZE
    assert recorded["loss"] == ("bce" if model_type == "custom_cnn" else "dice_bce")
    assert set(checkpoint["model"]) == set(build_baseline(model_type, SIZE).state_dict())
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert 0.0 <= test["test_full_fg_iou"] <= 1.0  # no prompt: both entries are one evaluation
    assert test["test_full_fg_iou"] == test["test_gt_box_fg_iou"]


def test_a_baseline_resumes_from_its_own_checkpoint(data_root, trained, tmp_path):
    latest = trained["unet"] / run_log.LATEST
    argv = _train_args(data_root, tmp_path, "unet", "--num_epochs", "2", "--resume", str(latest))
    assert train.main(argv) == 0
    steps = (trained["unet"] / "steps.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in steps] == [1, 2, 3, 4]


@pytest.mark.parametrize("model_type", BASELINE_TYPES)
def test_a_baseline_checkpoint_denoises_like_a_budsam_one(data_root, trained, model_type, tmp_path):
    best = trained[model_type] / run_log.BEST
    out = tmp_path / "out"
    argv = ["-i", str(data_root / "test"), "-o", str(out), "--checkpoint", str(best),
            "--device", "cpu"]  # fmt: skip
    assert budsam_infer.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 0 and summary["files"] >= COUNTS["test"]
    assert len(list((out / "denoised").glob("*.wav"))) >= COUNTS["test"]
    assert len(list((out / "masks").glob("*.png"))) == summary["files"]


def test_evaluation_gives_each_baseline_one_row_without_a_prompt(data_root, trained, tmp_path):
    out = tmp_path / "eval"
    checkpoints = [str(trained[m] / run_log.BEST) for m in BASELINE_TYPES]
    argv = ["-i", str(data_root), "-o", str(out), "--device", "cpu", "--threads", "1",
            "--methods", "budsam", "-checkpoint", *checkpoints]  # fmt: skip
    assert budsam_eval.main(argv) == 0
    with open(out / "comparison.csv") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    for model_type in BASELINE_TYPES:
        (label,) = [label for label in rows if label.startswith(f"{model_type} ")]
        assert label.endswith("(no ground truth)") and "box" not in label
        assert 0.0 <= float(rows[label]["fg_iou"]) <= 1.0


def test_a_mismatched_baseline_checkpoint_is_one_line(trained, tmp_path, capsys):
    checkpoint = load_checkpoint(trained["unet"] / run_log.BEST)
    checkpoint["args"]["model_type"] = "custom_cnn"  # unet weights under another type
    wrong = tmp_path / "wrong.pth"
    save_checkpoint(checkpoint, wrong)
    with pytest.raises(ValueError) as raised:
        load_model(str(wrong))
    assert "\n" not in str(raised.value) and str(wrong) in str(raised.value)
    assert budsam_infer.main(["-i", str(tmp_path), "-o", str(tmp_path / "o"),
                              "--checkpoint", str(wrong), "--device", "cpu"]) == 2  # fmt: skip
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_imagenet_weights_of_the_wrong_network_stop_training_in_one_line(
    data_root, tmp_path, capsys
):
    resnet18 = tmp_path / "resnet18.pth"
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet18)
    with pytest.raises(SystemExit) as stopped:
        parse_args(_train_args(data_root, tmp_path, "custom_cnn", "--checkpoint", str(resnet18)))
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(resnet18) in err and "ResNet-34" in err


def test_baseline_arguments_are_checked_in_one_line(data_root, tmp_path, capsys):
    for extra, message in (
        (("--input_size", "100"), "multiple of 32"),
        (("--model_type", "deeplabv3", "--batch_size", "1"), "--batch_size >= 2"),
    ):
        with pytest.raises(SystemExit):
            parse_args(_train_args(data_root, tmp_path, "unet", *extra))
        assert message in capsys.readouterr().err
    args = parse_args(_train_args(data_root, tmp_path, "unet", "--train_parts", "mask_decoder"))
    assert args.train_parts == ["network"] and args.pixel_norm == "none"  # trained whole


@pytest.mark.parametrize("model_type", BASELINE_TYPES)
def test_probabilities_match_any_spectrogram_width(model_type):
    model = build_baseline(model_type, SIZE).eval()
    for width in (37, 255, 301, 1001):  # narrower than a tile, odd, several tiles
        image = np.random.default_rng(width).integers(0, 256, (1024, width), dtype=np.uint8)
        (probabilities,) = predict_probabilities(
            model, [image], tile_width=256, half_spectrum=True, device=torch.device("cpu")
        )
        assert probabilities.shape == (1024, width) and np.isfinite(probabilities).all()
        assert ((0.0 <= probabilities) & (probabilities <= 1.0)).all()


def test_each_baseline_has_a_preset_at_the_quick_start_budget():
    for model_type in BASELINE_TYPES:
        preset = PRESETS[f"{model_type}_demo"]
        assert preset["model_type"] == model_type and preset["tr_path"] == "data/synthetic"
        assert preset["synthetic"] == PRESETS["cpu_demo"]["synthetic"]
