"""budsam_train_multi.py end to end on a tiny synthetic set, in one CPU process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from segment_anything.modeling import Sam

import budsam_train_multi as train
from utils import run_log
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.embedding_cache import EmbeddingCache
from utils.model import build_sam
from utils.synthetic import generate_dataset

COUNTS = {"train": 6, "valid": 3, "test": 3}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_bsd")
    generate_dataset(root, COUNTS, seed=5, workers=1, progress=False)
    return root


def _args(data_root: Path, work_dir: Path, *extra: str) -> list[str]:
    return [
        "-i", str(data_root), "-task_name", "t", "-model_type", "vit_tiny", "--device", "cpu",
        "-work_dir", str(work_dir), "-batch_size", "2", "-num_workers", "0", "-lr", "1e-3",
        "--seed", "1", *extra,
    ]  # fmt: skip


def _only_run(work_dir: Path) -> Path:
    (run_dir,) = [p for p in work_dir.iterdir() if p.name.startswith("t-")]
    return run_dir


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_training_writes_a_self_describing_run_folder(data_root, tmp_path, capsys):
    assert train.main(_args(data_root, tmp_path, "-num_epochs", "2")) == 0
    run_dir = _only_run(tmp_path)
    for name in ("args.json", "command.txt", "metrics.jsonl", "metrics.csv", "loss.png",
                 "val_metrics.png", run_log.LATEST, run_log.BEST, "test_metrics.json"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    records = run_log.read_metrics(run_dir)
    assert [r["epoch"] for r in records] == [0, 1]
    for key in ("train_loss", "val_full_loss", "val_full_fg_iou", "val_gt_box_paper_iou"):
        assert key in records[0]
    assert records[-1]["val_full_n_images"] == COUNTS["valid"]
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert test["test_gt_box_n_images"] == test["test_full_n_images"] == COUNTS["test"]
    assert "ground-truth box (paper)" in capsys.readouterr().out
    latest = load_checkpoint(run_dir / run_log.LATEST)  # weights_only=True inside
    assert latest["epoch"] == 2 and latest["step"] == 2 * (COUNTS["train"] // 2)
    assert json.loads(latest["args"]["train_parts"]) == ["mask_decoder"]


def test_checkpoint_loads_into_the_official_sam_classes(data_root, tmp_path):
    train.main(_args(data_root, tmp_path, "-num_epochs", "1"))
    weights = _weights(_only_run(tmp_path) / run_log.BEST)
    sam: Sam = build_sam("vit_tiny", seed=99)
    sam.load_state_dict(weights, strict=True)  # SAM's own keys, nothing else
    assert all(
        k.split(".")[0] in ("image_encoder", "prompt_encoder", "mask_decoder") for k in weights
    )


def test_decoder_only_training_uses_and_reuses_the_embedding_cache(data_root, tmp_path, capsys):
    train.main(_args(data_root, tmp_path, "-num_epochs", "1"))
    first = capsys.readouterr().out
    assert "train: 6 computed, 0 reused" in first
    cache_files = list((tmp_path / "embedding_cache").rglob("*.pt"))
    assert len(cache_files) == sum(COUNTS.values())
    train.main(_args(data_root, tmp_path, "-num_epochs", "1"))
    assert "train: 0 computed, 6 reused" in capsys.readouterr().out


def test_resumed_run_matches_an_uninterrupted_one(data_root, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    extra = ("--train_parts", "image_encoder,mask_decoder")
    train.main(_args(data_root, straight, "-num_epochs", "2", *extra))
    train.main(_args(data_root, split, "-num_epochs", "1", *extra))
    train.main(_args(data_root, split, "-num_epochs", "2", "--resume", "auto", *extra))
    uninterrupted = _weights(_only_run(straight) / run_log.LATEST)
    resumed = _weights(_only_run(split) / run_log.LATEST)
    assert uninterrupted.keys() == resumed.keys()
    for key in uninterrupted:
        assert torch.equal(uninterrupted[key], resumed[key]), key
    records = run_log.read_metrics(_only_run(split))
    assert [r["epoch"] for r in records] == [0, 1]


def test_bad_arguments_fail_with_one_clear_line(data_root, tmp_path, capsys):
    for extra, message in (
        (("-batch_size", "0"), "--batch_size must be >= 1"),
        (("--grad_acc_steps", "0"), "--grad_acc_steps must be >= 1"),
        (("--train_parts", "prompt_encoder"), "--train_parts: unknown ['prompt_encoder']"),
    ):
        with pytest.raises(SystemExit):
            train.parse_args(_args(data_root, tmp_path, *extra))
        assert message in capsys.readouterr().err


def test_killed_save_never_replaces_a_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 1}, path)

    def dies_midway(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    kept = load_checkpoint(path)
    assert kept["epoch"] == 1 and torch.equal(kept["model"]["w"], torch.ones(3))


def test_embedding_cache_hit_miss_key_change_and_corruption(tmp_path):
    cache = EmbeddingCache(tmp_path, {"model_type": "vit_tiny", "encoder": "abc"})
    assert cache.load("x.png") is None  # miss
    embedding = torch.randn(128, 16, 16)
    cache.save("x.png", embedding)
    assert torch.allclose(cache.load("x.png"), embedding.half().float())  # hit
    other = EmbeddingCache(tmp_path, {"model_type": "vit_tiny", "encoder": "abd"})
    assert other.folder != cache.folder and other.load("x.png") is None  # new key, new folder
    data = cache.path("x.png").read_bytes()
    cache.path("x.png").write_bytes(data[: len(data) // 2])  # truncated
    assert cache.load("x.png") is None
    cache.save("x.png", embedding)
    raw = bytearray(cache.path("x.png").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the stored tensor data
    cache.path("x.png").write_bytes(bytes(raw))
    assert cache.load("x.png") is None
    assert cache.missing(["x.png"]) == ["x.png"]
