"""budsam_train_multi.py end to end on a tiny synthetic set, in one CPU process."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
import torch
from segment_anything.modeling import Sam

import budsam_train_multi as train
from tests.conftest import REPO_ROOT
from tests.test_distributed import _free_init_method
from utils.audio.render import parse_rendering
from utils.common.checkpoint_io import load_checkpoint, save_checkpoint
from utils.data.synthetic import generate_dataset
from utils.inference.segmenter import RECORDING_RENDERING
from utils.model.sam import build_sam
from utils.train import run_log
from utils.train.embedding_cache import EmbeddingCache

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
    for name in ("args.json", "command.txt", "environment.jsonl", "metrics.jsonl", "metrics.csv",
                 "loss.png", "val_metrics.png", run_log.LATEST, run_log.BEST,
                 "test_metrics.json"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    records = run_log.read_metrics(run_dir)
    assert [r["epoch"] for r in records] == [0, 1]
    for key in ("train_loss", "val_full_loss", "val_full_fg_iou", "val_gt_box_paper_iou"):
        assert key in records[0]
    assert records[-1]["val_full_n_images"] == COUNTS["valid"]
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert test["test_gt_box_n_images"] == test["test_full_n_images"] == COUNTS["test"]
    assert "ground-truth box (paper)" in capsys.readouterr().out
    software = json.loads((run_dir / "environment.jsonl").read_text().splitlines()[0])
    assert software["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert software["python"] == sys.version.split()[0]
    latest = load_checkpoint(run_dir / run_log.LATEST)  # weights_only=True inside
    assert latest["epoch"] == 2 and latest["step"] == 2 * (COUNTS["train"] // 2)
    assert json.loads(latest["args"]["train_parts"]) == ["mask_decoder"]
    # The training recordings' most common rate, to which inference resamples recordings.
    rates = Counter(sf.info(p).samplerate for p in (data_root / "train" / "Raw_audios").iterdir())
    assert latest["args"]["sample_rate"] == rates.most_common(1)[0][0]


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
    _assert_same_weights(_only_run(straight) / run_log.LATEST, _only_run(split) / run_log.LATEST)
    records = run_log.read_metrics(_only_run(split))
    assert [r["epoch"] for r in records] == [0, 1]


def test_bad_arguments_fail_with_one_clear_line(data_root, tmp_path, capsys):
    for extra, message in (
        (("-batch_size", "0"), "--batch_size must be >= 1"),
        (("--grad_acc_steps", "0"), "--grad_acc_steps must be >= 1"),
        (("--train_parts", "prompt_encoder"), "--train_parts: unknown ['prompt_encoder']"),
        (("--ema_decay", "1"), "--ema_decay must be within [0, 1)"),
        (("--clip_grad", "0"), "--clip_grad must be > 0"),
    ):
        with pytest.raises(SystemExit):
            train.parse_args(_args(data_root, tmp_path, *extra))
        assert message in capsys.readouterr().err


def test_missing_data_or_checkpoint_is_one_clear_line(tmp_path, capsys):
    assert train.main(_args(tmp_path / "nowhere", tmp_path)) == 2
    assert "no train split found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(_args(tmp_path, tmp_path, "--resume", str(tmp_path / "gone.pth")))
    assert "gone.pth: checkpoint not found" in capsys.readouterr().err
    # An official model type without its weights: refused before any folder is made.
    vit_b = [a if a != "vit_tiny" else "vit_b" for a in _args(tmp_path, tmp_path / "work")]
    assert train.main(vit_b) == 2
    assert "error: vit_b needs pretrained SAM weights: pass -checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


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


def test_item_keys_with_dots_get_their_own_cache_files(tmp_path):
    """``rec.2021.png`` and ``rec.2022.png`` (and their tiles) never share a cache file."""
    cache = EmbeddingCache(tmp_path, {"model_type": "vit_tiny", "encoder": "abc"})
    stored = {key: torch.randn(8, 4, 4) for key in ("rec.2021", "rec.2022", "rec.2021@1024")}
    for key, embedding in stored.items():
        cache.save(key, embedding)
    assert len({cache.path(key) for key in stored}) == len(stored)
    for key, embedding in stored.items():
        assert torch.equal(cache.load(key), embedding.half().float()), key


FULL_MODEL = ("--train_parts", "image_encoder,mask_decoder", "--log_interval", "1")


def _run_until(command: list[str], marker: str, sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Run a command; on the first output line starting with ``marker``, send ``sig``."""
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = []
    for line in process.stdout:
        output.append(line)
        if marker and line.startswith(marker):
            process.send_signal(sig)
            marker = ""
    return process.wait(timeout=300), "".join(output)


def _assert_same_weights(expected: Path, got: Path) -> None:
    uninterrupted, resumed = _weights(expected), _weights(got)
    assert uninterrupted.keys() == resumed.keys()
    for key in uninterrupted:
        assert torch.equal(uninterrupted[key], resumed[key]), key


@pytest.fixture(scope="module")
def uninterrupted_runs(data_root, tmp_path_factory) -> dict[int, Path]:
    """The final checkpoint of an uninterrupted one-epoch run, per number of processes."""
    finals = {}
    for world in (1, 2):
        work_dir = tmp_path_factory.mktemp(f"straight{world}")
        command = [sys.executable, "-u", "budsam_train_multi.py", "--world_size", str(world)]
        command += _args(data_root, work_dir, "-num_epochs", "1", "-batch_size", "1", *FULL_MODEL)
        command += ["--init_method", _free_init_method()]
        code, output = _run_until(command, "")
        assert code == 0, output
        finals[world] = _only_run(work_dir) / run_log.LATEST
    return finals


@pytest.mark.parametrize("world", [1, 2], ids=["1proc", "2proc"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_latest_and_the_resumed_run_matches(
    data_root, tmp_path, uninterrupted_runs, world, sig
):
    """Stop mid-epoch (1 process or 2 gloo processes), resume, end with the
    uninterrupted run's weights."""
    command = [sys.executable, "-u", "budsam_train_multi.py", "--world_size", str(world)]
    command += _args(data_root, tmp_path, "-num_epochs", "1", "-batch_size", "1", *FULL_MODEL)
    command += ["--init_method", _free_init_method()]
    code, output = _run_until(command, "epoch 0 1/", sig)
    assert code == 0, output
    assert "stopped by signal" in output and "Traceback" not in output
    run_dir = _only_run(tmp_path)
    latest = load_checkpoint(run_dir / run_log.LATEST)
    assert latest["epoch"] == 0 and 1 <= latest["step"] < COUNTS["train"] // world
    assert not run_log.read_metrics(run_dir) and not (run_dir / "test_metrics.json").exists()
    code, output = _run_until(command + ["--resume", "auto"], "")
    assert code == 0, output
    _assert_same_weights(uninterrupted_runs[world], run_dir / run_log.LATEST)
    assert [r["epoch"] for r in run_log.read_metrics(run_dir)] == [0]


def test_a_signal_to_one_rank_alone_stops_the_run_cleanly(data_root, tmp_path):
    """``kill <pid of one rank>`` (not of the launcher): every rank stops and saves, and the
    launcher, which got no signal itself, ends with 0 instead of waiting."""
    command = [sys.executable, "-u", "budsam_train_multi.py", "--world_size", "2"]
    command += _args(data_root, tmp_path, "-num_epochs", "1", "-batch_size", "1", *FULL_MODEL)
    command += ["--init_method", _free_init_method()]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("epoch 0 1/"):
            ranks = subprocess.run(["pgrep", "-f", "spawn_main", "-P", str(process.pid)],
                                   capture_output=True, text=True).stdout.split()  # fmt: skip
            os.kill(int(ranks[0]), signal.SIGTERM)
    text = "".join(output)
    assert process.wait(timeout=120) == 0, text
    assert "stopped by signal" in text and "Traceback" not in text
    assert load_checkpoint(_only_run(tmp_path) / run_log.LATEST)["step"] >= 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_both_signals_request_a_stop(sig):
    from utils.common.distributed import DistContext, StopRequest

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = StopRequest()
        ctx = DistContext(0, 1, 0, torch.device("cpu"))
        assert not stop.agreed(ctx)
        signal.raise_signal(sig)
        assert stop.agreed(ctx) and stop.signal == sig
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_torchrun_launch(data_root, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", "29533", "budsam_train_multi.py"]
    command += _args(data_root, tmp_path, "-num_epochs", "1", "-batch_size", "1")
    code, output = _run_until(command, "")
    assert code == 0, output
    run_dir = _only_run(tmp_path)
    assert load_checkpoint(run_dir / run_log.LATEST)["step"] == 3  # 6 images / (2 ranks x 1)
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert test["test_full_n_images"] == COUNTS["test"]


def test_embedder_recomputes_a_deleted_or_damaged_cache_file(data_root, tmp_path):
    from utils.common import distributed
    from utils.data.dataset import BSDSegmentation
    from utils.model.budsam import BudSAM
    from utils.train.embedding_cache import Embedder

    model = BudSAM(build_sam("vit_tiny", seed=0)).eval()
    dataset = BSDSegmentation(data_root / "valid", 256, load_images=False)
    cache = EmbeddingCache(tmp_path, {"model_type": "vit_tiny", "encoder": "test"})
    embedder = Embedder(model, cache, dataset)
    ctx = distributed.DistContext(0, 1, 0, torch.device("cpu"))
    assert embedder.fill(ctx, batch_size=2, amp="none", show=False) == COUNTS["valid"]
    indices = list(range(len(dataset)))
    keys = [dataset.item_key(i) for i in indices]
    original = embedder(indices, ctx.device, "none")
    cache.path(keys[0]).unlink()  # deleted mid-run
    cache.path(keys[1]).write_bytes(b"garbage")  # damaged mid-run
    again = embedder(indices, ctx.device, "none")
    assert torch.allclose(again, original, atol=1e-2)
    assert cache.missing(keys) == []  # both stored again


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from utils.train.engine import cosine_lr

    lr_at = cosine_lr(1.0, total_steps=100, warmup_steps=10)
    assert lr_at(0) == pytest.approx(0.1) and lr_at(9) == pytest.approx(1.0)
    assert lr_at(10) == pytest.approx(1.0)
    assert lr_at(55) == pytest.approx(0.5)
    assert lr_at(100) == pytest.approx(0.0, abs=1e-12)
    assert all(lr_at(s) >= lr_at(s + 1) for s in range(10, 100))


def test_preset_sets_defaults_that_any_flag_overrides():
    demo = train.parse_args(["--preset", "cpu_demo"])
    assert (demo.model_type, demo.world_size, demo.device) == ("vit_tiny_p16x8", 2, "cpu")
    assert demo.half_spectrum and demo.tile_width == 1024 and demo.synthetic["train"] == 240
    assert demo.num_epochs == 7 and demo.ema_decay == 0.99
    assert (demo.dice, demo.mask_resize, demo.val_metric) == ("batch", "area", "whole_fg_iou")
    changed = train.parse_args(["--preset", "cpu_demo", "--no-half_spectrum", "-num_epochs", "1"])
    assert not changed.half_spectrum and changed.num_epochs == 1
    fast = train.parse_args(["--preset", "cpu_fast"])  # the quick start's data and recipe
    assert (fast.model_type, fast.tile_width, fast.num_epochs) == ("vit_tiny_fast", 2048, 20)
    assert (fast.tr_path, fast.synthetic, fast.lr) == (demo.tr_path, demo.synthetic, demo.lr)
    # How its checkpoint's recordings are run: the default rendering at half its work.
    assert fast.recording_overlap == 0.0 and demo.recording_overlap is None
    assert demo.recording_time_flip and fast.recording_time_flip is False  # twice the model
    fast_rendering = parse_rendering(fast.recording_render)
    # cpu_fast keeps the gate bin by bin, without the chorus share: it was not measured
    # with either.
    unsmoothed = dataclasses.replace(RECORDING_RENDERING, smooth_hz=0.0, smooth_ms=0.0)
    assert fast_rendering == dataclasses.replace(unsmoothed, hops=2, chorus_share=None)
    with pytest.raises(SystemExit):
        train.parse_args(["--preset", "cpu_fast", "--recording_render", "gated,hops=3"])
    plain = train.parse_args([])  # the paper's settings by default
    assert not plain.half_spectrum and plain.ema_decay == 0.0
    assert (plain.dice, plain.mask_resize, plain.val_metric) == ("sample", "nearest", "fg_iou")


def test_ema_batch_dice_and_soft_targets_train_and_resume_exactly(data_root, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    extra = ("--ema_decay", "0.9", "--dice", "batch", "--mask_resize", "area")
    train.main(_args(data_root, straight, "-num_epochs", "2", *extra))
    train.main(_args(data_root, split, "-num_epochs", "1", *extra))
    train.main(_args(data_root, split, "-num_epochs", "2", "--resume", "auto", *extra))
    latest = {
        name: load_checkpoint(_only_run(folder) / run_log.LATEST)
        for name, folder in (("straight", straight), ("split", split))
    }
    assert latest["straight"]["ema"]["updates"] == 2 * (COUNTS["train"] // 2)
    for key, value in latest["straight"]["model"].items():
        assert torch.equal(value, latest["split"]["model"][key]), key
    for key, value in latest["straight"]["ema"]["shadow"].items():
        assert torch.equal(value, latest["split"]["ema"]["shadow"][key]), key
    # 'best' holds the averaged weights, not the last ones.
    run_dir = _only_run(straight)
    best = load_checkpoint(run_dir / run_log.BEST)
    shadow = best["ema"]["shadow"]
    assert shadow and all(torch.equal(best["model"][k], v) for k, v in shadow.items())
    assert not all(torch.equal(best["model"][k], latest["straight"]["model"][k]) for k in shadow)
    args = json.loads((run_dir / "args.json").read_text())
    assert (args["ema_decay"], args["dice"], args["mask_resize"]) == (0.9, "batch", "area")


def test_resuming_with_ema_needs_a_checkpoint_that_has_one(data_root, tmp_path, capsys):
    train.main(_args(data_root, tmp_path, "-num_epochs", "1"))
    capsys.readouterr()
    resume = ("-num_epochs", "2", "--resume", "auto", "--ema_decay", "0.9")
    assert train.main(_args(data_root, tmp_path, *resume)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(
        "budsam_model_latest.pth: the checkpoint holds no weight EMA (trained without --ema_decay)"
    )


def test_whole_image_iou_pools_the_tiles_of_each_image():
    from utils.train.validation import whole_image_iou

    # Image a: two tiles, one empty and predicted with a stray pixel (tile IoU 0), one
    # with 9 of 10 pixels right; pooled: 9 / (9 + 1 + 1). Image b: one empty tile,
    # predicted empty (IoU 1).
    per_item = torch.tensor([[0.0, 1.0, 0.0], [9.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert whole_image_iou(per_item, ["a", "a", "b"]) == pytest.approx((9 / 11 + 1.0) / 2)
    assert whole_image_iou(per_item, ["a", "b", "c"]) == pytest.approx((0 + 0.9 + 1) / 3)


def test_whole_image_iou_leaves_out_items_that_could_not_be_read():
    """An unreadable item has all-zero counts, which alone would score a perfect 1."""
    from utils.train.validation import whole_image_iou

    per_item = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    scored = torch.tensor([True, True, False])
    assert whole_image_iou(per_item, ["a", "b", "c"], scored) == pytest.approx((0.5 + 1.0) / 2)
    assert whole_image_iou(per_item, ["a", "a", "c"], scored) == pytest.approx(0.5)
    assert whole_image_iou(per_item, ["a", "b", "c"], torch.zeros(3, dtype=torch.bool)) == 0.0


def test_data_loader_workers_ignore_stop_signals():
    """A signal to the whole process group must reach the trainer, not kill its workers."""
    from utils.common.distributed import ignore_stop_signals

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        ignore_stop_signals(worker_id=0)
        for sig in previous:
            assert signal.getsignal(sig) == signal.SIG_IGN
            signal.raise_signal(sig)  # would end this process if not ignored
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
