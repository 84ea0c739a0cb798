"""Bad input to budsam_train_multi.py: each case ends in one clear line naming the file
(exit code 2, no traceback) or in a counted, reported skip, and never touches what
earlier runs wrote."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import budsam_train_multi as train
from utils.common.checkpoint_io import save_checkpoint
from utils.data.bsd_layout import IMAGES_DIR, MASKS_DIR
from utils.data.dataset import BSDSegmentation, collate_skipping_none
from utils.data.image_io import write_png
from utils.data.scan import (
    NOT_GRAY8,
    SIZE_MISMATCH,
    TRUNCATED,
    UNREADABLE,
    WRONG_HEIGHT,
    scan_split,
)
from utils.model.sam import build_sam
from utils.train import run_log
from utils.train.checkpointer import RESUME_KEYS
from utils.train.losses import DICE_REDUCTIONS, DiceBCELoss

HEIGHT, WIDTH = 64, 48  # small images: the model resizes every input to 256 x 256


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)


def _box_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[10:40, 5:30] = True
    return mask


def _write_pair(split: Path, name: str, mask: np.ndarray | None = None) -> None:
    (split / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (split / MASKS_DIR).mkdir(parents=True, exist_ok=True)
    write_png(split / IMAGES_DIR / name, _image(len(name)))
    write_png(split / MASKS_DIR / name, _box_mask() if mask is None else mask)


def _add_bad_pairs(split: Path) -> dict[str, list[str]]:
    """One pair per kind of bad file scan_split can see; returns the expected problems."""
    _write_pair(split, "no_mask.png")
    (split / MASKS_DIR / "no_mask.png").unlink()
    _write_pair(split, "no_image.png")
    (split / IMAGES_DIR / "no_image.png").unlink()
    _write_pair(split, "truncated.png")
    png = (split / IMAGES_DIR / "truncated.png").read_bytes()
    (split / IMAGES_DIR / "truncated.png").write_bytes(png[: len(png) // 2])
    _write_pair(split, "empty.png")
    (split / MASKS_DIR / "empty.png").write_bytes(b"")
    _write_pair(split, "text.png")
    (split / IMAGES_DIR / "text.png").write_text("a spectrogram, honestly")
    _write_pair(split, "rgb.png")
    colour = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    write_png(split / IMAGES_DIR / "rgb.png", colour)
    _write_pair(split, "deep.png")
    cv2.imwrite(str(split / MASKS_DIR / "deep.png"), _box_mask().astype(np.uint16) * 65535)
    _write_pair(split, "sizes.png")
    write_png(split / MASKS_DIR / "sizes.png", np.zeros((HEIGHT, WIDTH + 1), dtype=bool))
    return {
        "images without a mask": ["no_mask.png"],
        "masks without an image": ["no_image.png"],
        UNREADABLE: ["empty.png", "text.png"],
        TRUNCATED: ["truncated.png"],
        NOT_GRAY8: ["deep.png", "rgb.png"],
        SIZE_MISMATCH: ["sizes.png"],
    }


def _damage_inside(path: Path) -> None:
    """Garble a PNG's compressed image data but keep its header and its end chunk, so that
    only decoding can tell."""
    png = bytearray(path.read_bytes())
    start, stop = 50, len(png) - 20  # after the IHDR chunk, before the last CRC and IEND
    png[start:stop] = bytes(b ^ 0xFF for b in png[start:stop])
    path.write_bytes(bytes(png))


@pytest.fixture()
def good_root(tmp_path) -> Path:
    """A BSD root of good pairs only: 4 training, 2 validation and 2 test pairs."""
    root = tmp_path / "bsd"
    for split, count in (("train", 4), ("valid", 2), ("test", 2)):
        for i in range(count):
            _write_pair(root / split, f"{split}_{i}.png")
    return root


def _args(data_root: Path, work_dir: Path, *extra: str) -> list[str]:
    return [
        "-i", str(data_root), "-task_name", "t", "-model_type", "vit_tiny", "--device", "cpu",
        "-work_dir", str(work_dir), "-num_workers", "0", "-num_epochs", "1", "--seed", "1",
        *extra,
    ]  # fmt: skip


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of the training CLI (an argument error exits 2)."""
    try:
        code = train.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code: int, err: str, *expected: str) -> None:
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def earlier_run(tmp_path) -> Path:
    """A work dir holding an earlier run of task ``t``: its arguments and checkpoints."""
    run_dir = tmp_path / "work" / "t-20240101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "args.json").write_text(json.dumps({"model_type": "vit_tiny"}))
    state = {"model": build_sam("vit_tiny", seed=3).state_dict(), "epoch": 1}
    save_checkpoint(state, run_dir / run_log.LATEST)
    save_checkpoint(state, run_dir / run_log.BEST)
    return run_dir


# ----------------------------------------------------------------------------- data


def test_scan_skips_each_kind_of_bad_file_and_names_it(tmp_path):
    _write_pair(tmp_path, "good.png")
    _write_pair(tmp_path, "gray_as_rgb.png")  # a colour file whose channels are equal is fine
    gray = np.repeat(_image(7)[..., None], 3, axis=2)
    write_png(tmp_path / IMAGES_DIR / "gray_as_rgb.png", gray)
    expected = _add_bad_pairs(tmp_path)
    scan = scan_split(tmp_path)
    assert scan.names == ["good.png", "gray_as_rgb.png"]
    assert scan.problems == expected
    assert scan.skipped == 8
    assert f"{tmp_path}: 2 {NOT_GRAY8}: deep.png, rgb.png" in scan.report().splitlines()
    assert "1 truncated PNGs" in scan.summary() and "\n" not in scan.summary()


def test_split_without_usable_pairs_says_why_in_one_line(tmp_path):
    (tmp_path / IMAGES_DIR).mkdir()
    with pytest.raises(ValueError) as empty:
        scan_split(tmp_path)
    assert (
        str(empty.value)
        == f"{tmp_path}: no usable image/mask pair found (Images/ holds no .png file)"
    )
    _add_bad_pairs(tmp_path)
    with pytest.raises(ValueError) as all_bad:
        scan_split(tmp_path)
    message = str(all_bad.value)
    assert message.startswith(f"{tmp_path}: no usable image/mask pair found (skipped ")
    assert "1 truncated PNGs" in message and "1 image/mask size mismatches" in message
    assert "\n" not in message


def test_mask_with_other_values_is_used_as_nonzero_foreground_with_a_warning(tmp_path):
    odd = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    odd[10:20, 5:15], odd[30:40, 5:15] = 1, 128  # a 0/1 mask and an anti-aliased edge
    _write_pair(tmp_path, "odd.png", odd)
    dataset = BSDSegmentation(tmp_path, 256, prompt="full")
    with pytest.warns(UserWarning, match=r"odd\.png: mask holds values other than 0 and 255"):
        item = dataset[0]
    expected = cv2.resize((odd > 0).astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST)
    assert torch.equal(item["mask"][0], torch.from_numpy(expected.astype(np.float32)))


def test_damage_inside_a_png_is_skipped_when_read_and_counted(tmp_path):
    for name in ("a.png", "b.png"):
        _write_pair(tmp_path, name)
    _damage_inside(tmp_path / IMAGES_DIR / "b.png")
    dataset = BSDSegmentation(tmp_path, 256)
    assert dataset.names == ["a.png", "b.png"]  # the header and the end look whole
    with pytest.warns(UserWarning, match=r"skipped: .*b\.png"):
        batch = collate_skipping_none([dataset[0], dataset[1]])
    assert batch["skipped"] == 1 and batch["name"] == ["a.png"]


@pytest.mark.parametrize("dice", DICE_REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_is_finite_for_all_empty_and_all_full_masks(dice, dtype):
    loss_fn = DiceBCELoss(dice)
    empty, full = torch.zeros(2, 1, 32, 32), torch.ones(2, 1, 32, 32)
    for target in (empty, full, torch.cat([empty[:1], full[:1]])):
        for logit in (-50.0, 0.0, 50.0):  # sure background, unsure, sure foreground
            logits = torch.full(target.shape, logit, dtype=dtype, requires_grad=True)
            loss = loss_fn(logits, target)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(logits.grad).all(), (target, logit)


def test_training_skips_bad_files_reports_them_and_keeps_earlier_runs(
    good_root, earlier_run, capsys, monkeypatch
):
    train_split = good_root / "train"
    _write_pair(train_split, "all_empty.png", np.zeros((HEIGHT, WIDTH), dtype=bool))
    _write_pair(train_split, "all_full.png", np.ones((HEIGHT, WIDTH), dtype=bool))
    odd = (_box_mask() * 1).astype(np.uint8)  # a 0/1 mask
    _write_pair(train_split, "zero_one.png", odd)
    _write_pair(train_split, "damaged.png")
    _damage_inside(train_split / IMAGES_DIR / "damaged.png")
    expected = _add_bad_pairs(train_split)
    before = _snapshot(earlier_run)

    class SameSecond(datetime):  # the new run starts in the earlier run's second
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 1, 1, 0, 0, 0)

    monkeypatch.setattr(run_log, "datetime", SameSecond)
    work_dir = earlier_run.parent
    argv = _args(good_root, work_dir, "--train_parts", "image_encoder,mask_decoder")
    argv += ["-batch_size", "8", "--full_box_prob", "0"]  # the 8 readable-looking pairs at once
    with pytest.warns(UserWarning) as warned:
        code, out, err = _run(argv, capsys)
    assert code == 0, err

    assert f"warning: train: skipping {sum(map(len, expected.values()))} items" in out
    for reason, names in expected.items():
        assert f"{train_split}: {len(names)} {reason}: {', '.join(names)}" in out
    assert "warning: 1 training item reads failed (all ranks and epochs); skipped" in out
    messages = [str(w.message) for w in warned]
    assert any(m.startswith("skipped: ") and "damaged.png" in m for m in messages)
    assert any("zero_one.png: mask holds values other than 0 and 255" in m for m in messages)

    new_run = work_dir / "t-20240101-000000_1"
    (record,) = run_log.read_metrics(new_run)
    assert np.isfinite(record["train_loss"]) and record["step"] == 1  # empty and full masks
    assert (new_run / run_log.BEST).is_file()
    assert _snapshot(earlier_run) == before  # the earlier run's folder is untouched


# ----------------------------------------------------------------------------- checkpoints


def _tiny_weights(model_type: str = "vit_tiny", seed: int = 0) -> dict[str, torch.Tensor]:
    return build_sam(model_type, seed=seed).state_dict()


def _training_checkpoint(model_type: str = "vit_tiny", **overrides) -> dict:
    """What a BudSAM run saves, with placeholder optimizer and RNG states."""
    state = {key: 0 for key in RESUME_KEYS}
    state.update(
        model=_tiny_weights(model_type),
        args={"model_type": model_type, "train_parts": json.dumps(["mask_decoder"])},
    )
    state.update(overrides)
    return state


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "missing":
        return path
    if kind == "text":
        path.write_text("model weights: see the README\n")
    elif kind == "truncated":
        save_checkpoint(_training_checkpoint(), path)
        path.write_bytes(path.read_bytes()[:4000])
    elif kind == "other_model_type":
        save_checkpoint(_training_checkpoint("vit_tiny_p16x8"), path)
    elif kind == "official_sam":
        torch.save(_tiny_weights(), path)
    elif kind == "other_train_parts":
        parts = json.dumps(["image_encoder", "mask_decoder"])
        save_checkpoint(_training_checkpoint(args={"train_parts": parts}), path)
    return path


@pytest.mark.parametrize(
    "flag, kind, problem",
    [
        ("-checkpoint", "missing", "checkpoint not found"),
        ("-checkpoint", "truncated", "cannot read checkpoint"),
        ("-checkpoint", "text", "cannot read checkpoint (UnpicklingError"),
        ("-checkpoint", "other_model_type", "not a vit_tiny SAM checkpoint (0 missing, 0 unex"),
        ("--resume", "truncated", "cannot read checkpoint"),
        ("--resume", "text", "cannot read checkpoint (UnpicklingError"),
        ("--resume", "other_model_type", "does not hold a vit_tiny model ("),
        ("--resume", "official_sam", "not a BudSAM training checkpoint (no model, optimizer"),
        ("--resume", "other_train_parts", "trained with --train_parts image_encoder,mask_deco"),
    ],
)
def test_bad_checkpoint_is_one_line_naming_it_and_writes_nothing(
    flag, kind, problem, good_root, earlier_run, tmp_path, capsys
):
    path = _bad_file(tmp_path, kind)
    work_dir = earlier_run.parent
    before = _snapshot(work_dir)
    code, _, err = _run(_args(good_root, work_dir, flag, str(path)), capsys)
    _assert_one_line_error(code, err, f"{flag}: {path}: {problem}")
    assert _snapshot(work_dir) == before


def test_resume_auto_refuses_a_broken_latest_before_writing(good_root, earlier_run):
    (earlier_run / run_log.LATEST).write_bytes(b"\x00" * 100)  # e.g. a full disk
    before = _snapshot(earlier_run)
    args = train.parse_args(_args(good_root, earlier_run.parent, "--resume", "auto"))
    ctx = train.distributed.DistContext(0, 1, 0, torch.device("cpu"))
    with pytest.raises(ValueError, match="cannot read checkpoint") as err:
        train.open_run_dir(ctx, args)
    assert str(err.value).startswith(str(earlier_run / run_log.LATEST))
    assert "\n" not in str(err.value)
    assert _snapshot(earlier_run) == before  # args.json and command.txt not rewritten


@pytest.mark.parametrize("layout", ["official_sam", "budsam", "ddp_prefixed"])
def test_initial_weights_load_from_any_sam_layout(layout, good_root, tmp_path):
    weights = _tiny_weights(seed=7)
    content = {
        "official_sam": weights,
        "budsam": _training_checkpoint(model=weights),
        "ddp_prefixed": {f"module.{key}": value for key, value in weights.items()},
    }[layout]
    path = tmp_path / "init.pth"
    torch.save(content, path)
    args = train.parse_args(_args(good_root, tmp_path, "-checkpoint", str(path)))
    model = train.build_model(args, torch.device("cpu"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "extra, problem",
    [
        (("-model_type", "vit_x"), "argument -model_type/--model_type: invalid choice: 'vit_x'"),
        (("-batch_size", "0"), "--batch_size must be >= 1, got 0"),
        (("--grad_acc_steps", "0"), "--grad_acc_steps must be >= 1, got 0"),
        (("--eval_batch_size", "0"), "--eval_batch_size must be >= 1, got 0"),
        (("-num_workers", "-1"), "--num_workers must be >= 0, got -1"),
        (("-task_name", "a/b"), "-task_name must be a plain folder name, got 'a/b'"),
    ],
)
def test_bad_argument_is_one_line(extra, problem, good_root, tmp_path, capsys):
    code, _, err = _run(_args(good_root, tmp_path, *extra), capsys)
    _assert_one_line_error(code, err, problem)
    assert list(tmp_path.iterdir()) == [good_root]  # nothing written


def test_data_root_without_images_is_one_line_naming_the_folder(good_root, tmp_path, capsys):
    for png in (good_root / "train" / IMAGES_DIR).glob("*.png"):
        png.unlink()
    code, _, err = _run(_args(good_root, tmp_path / "work"), capsys)
    folder = good_root / "train"
    _assert_one_line_error(code, err, f"{folder}: no usable image/mask pair found")
    assert not (tmp_path / "work").exists()


def test_work_dir_that_cannot_hold_folders_is_one_line(good_root, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    work_dir = blocker / "runs"
    code, _, err = _run(_args(good_root, work_dir), capsys)
    _assert_one_line_error(code, err, f"-work_dir: {work_dir}: cannot create run folders there")
    assert blocker.read_text() == "not a folder"


def test_work_dir_probe_reports_an_unwritable_folder(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(run_log.tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match=r"runs: cannot create run folders there \(.* is not "):
        run_log.check_work_dir(tmp_path / "runs")


def test_a_new_run_never_reuses_an_existing_folder(tmp_path, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 1, 1, 0, 0, 0)

    monkeypatch.setattr(run_log, "datetime", Frozen)
    made = [run_log.new_run_dir(tmp_path, "t") for _ in range(3)]
    names = [p.name for p in made]
    assert names == ["t-20240101-000000", "t-20240101-000000_1", "t-20240101-000000_2"]
    monkeypatch.setattr(Path, "exists", lambda self: False)  # a run started at the same time
    assert run_log.new_run_dir(tmp_path, "t").name == "t-20240101-000000_3"


def test_resume_auto_picks_this_tasks_run_not_a_longer_named_one(tmp_path):
    for name in ("t-20240101-000000", "t-big-20240102-000000", "t-20240101-000000_1"):
        (tmp_path / name).mkdir()
        save_checkpoint({"epoch": 0}, tmp_path / name / run_log.LATEST)
    assert run_log.latest_run_dir(tmp_path, "t").name == "t-20240101-000000_1"
    assert run_log.latest_run_dir(tmp_path, "t-big").name == "t-big-20240102-000000"


def test_an_image_that_cannot_be_encoded_for_the_cache_is_skipped_not_fatal(tmp_path):
    from utils.common.distributed import DistContext
    from utils.model.budsam import BudSAM
    from utils.train.embedding_cache import Embedder, EmbeddingCache

    for name in ("a.png", "b.png", "c.png"):
        _write_pair(tmp_path, name)
    _damage_inside(tmp_path / IMAGES_DIR / "b.png")
    dataset = BSDSegmentation(tmp_path, 256, load_images=False)
    cache = EmbeddingCache(tmp_path / "cache", {"model_type": "vit_tiny", "encoder": "test"})
    embedder = Embedder(BudSAM(build_sam("vit_tiny", seed=0)).eval(), cache, dataset)
    ctx = DistContext(0, 1, 0, torch.device("cpu"))
    with pytest.warns(UserWarning, match=r"skipped: .*b\.png"):
        embedder.fill(ctx, batch_size=3, amp="none", show=False)
    assert dataset.unusable == {1}
    assert cache.missing([dataset.item_key(i) for i in range(3)]) == [dataset.item_key(1)]
    batch = collate_skipping_none([dataset[i] for i in range(3)])
    assert batch["skipped"] == 1 and batch["name"] == ["a.png", "c.png"]


def test_splits_with_the_same_file_names_get_their_own_embeddings(tmp_path):
    from utils.common.distributed import DistContext
    from utils.model.budsam import BudSAM

    for split, seed in (("train", 1), ("valid", 2)):
        _write_pair(tmp_path / split, "a.png")
        write_png(tmp_path / split / IMAGES_DIR / "a.png", _image(seed))  # same name, new image
    datasets = {
        s: BSDSegmentation(tmp_path / s, 256, load_images=False) for s in ("train", "valid")
    }
    args = train.parse_args(["-i", str(tmp_path), "-model_type", "vit_tiny", "--device", "cpu",
                             "-work_dir", str(tmp_path / "work")])  # fmt: skip
    model = BudSAM(build_sam("vit_tiny", seed=0)).eval()
    embedders = train.build_embedders(
        model, datasets, DistContext(0, 1, 0, torch.device("cpu")), args
    )
    train_embedding = embedders["train"]([0], torch.device("cpu"), "none")
    valid_embedding = embedders["valid"]([0], torch.device("cpu"), "none")
    assert not torch.allclose(train_embedding, valid_embedding)
    assert torch.allclose(
        valid_embedding, embedders["valid"].encode([0], torch.device("cpu"), "none"), atol=1e-2
    )


@pytest.mark.parametrize(
    "options", [("--amp", "none", "bf16"), ("--pixel_norm", "none", "sam")], ids=["amp", "norm"]
)
def test_embeddings_computed_another_way_are_not_reused(tmp_path, options):
    from utils.common.distributed import DistContext
    from utils.model.budsam import BudSAM

    _write_pair(tmp_path / "train", "a.png")
    dataset = BSDSegmentation(tmp_path / "train", 256, load_images=False)
    model = BudSAM(build_sam("vit_tiny", seed=0)).eval()
    flag, *values = options
    folders = set()
    for value in values:
        flags = ["-i", str(tmp_path), "-model_type", "vit_tiny", "--device", "cpu", flag, value]
        args = train.parse_args([*flags, "-work_dir", str(tmp_path / "work")])
        model.pixel_norm = args.pixel_norm
        embedders = train.build_embedders(
            model, {"train": dataset}, DistContext(0, 1, 0, torch.device("cpu")), args
        )
        folders.add(embedders["train"].cache.folder)
    assert len(folders) == 2


def test_half_spectrum_training_skips_images_that_are_not_1024_rows_high(tmp_path):
    _write_pair(tmp_path, "small.png")  # 64 rows
    (tmp_path / IMAGES_DIR / "bsd.png").parent.mkdir(exist_ok=True)
    write_png(tmp_path / IMAGES_DIR / "bsd.png", np.zeros((1024, WIDTH), dtype=np.uint8))
    write_png(tmp_path / MASKS_DIR / "bsd.png", np.zeros((1024, WIDTH), dtype=bool))
    assert BSDSegmentation(tmp_path, 256).names == ["bsd.png", "small.png"]
    half = BSDSegmentation(tmp_path, 256, half_spectrum=True)
    assert half.names == ["bsd.png"] and half.scan.problems == {WRONG_HEIGHT: ["small.png"]}
    assert half[0]["image"].shape == (3, 256, 256)


def test_preset_data_folder_holding_other_files_is_one_line_and_left_alone(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my own files\n")
    argv = ["--preset", "cpu_demo", "-i", str(foreign), "-work_dir", str(tmp_path / "work")]
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(code, err, str(foreign), "already holds other files")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "work").exists()


def test_a_better_epoch_writes_best_before_latest(tmp_path, monkeypatch):
    """``latest`` records the new best metric, so ``best`` must already be on disk."""
    from utils.common.distributed import DistContext
    from utils.train import checkpointer as checkpointer_module
    from utils.train.checkpointer import Checkpointer, TrainState

    written = []
    monkeypatch.setattr(
        checkpointer_module, "save_checkpoint", lambda state, path: written.append(path.name)
    )
    args = train.parse_args(["-model_type", "vit_tiny", "--device", "cpu"])
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    saver = Checkpointer(
        tmp_path, DistContext(0, 1, 0, torch.device("cpu")), args, model, optimizer, scaler
    )
    saver.end_epoch(TrainState(epoch=1, best_metric=0.5), improved=True)
    saver.end_epoch(TrainState(epoch=2, best_metric=0.5), improved=False)
    assert written == [run_log.BEST, run_log.LATEST, run_log.LATEST]


def test_more_processes_than_this_nodes_gpus_is_refused_unless_other_nodes_are_named(
    monkeypatch, capsys
):
    """Without --nproc_per_node, --world_size 8 on a 4-GPU node would wait for ranks that
    never come."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(SystemExit) as stop:
        train.parse_args(["--device", "cuda", "--world_size", "8"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--world_size 8 but this node has 4 GPU(s)" in err[0]
    args = train.parse_args(["--device", "cuda", "--world_size", "8", "--nproc_per_node", "4"])
    assert args.nproc_per_node == 4
    assert train.parse_args(["--device", "cuda", "--world_size", "2"]).nproc_per_node == 2


def test_a_mid_epoch_resume_refuses_changed_processes_batch_or_accumulation():
    from utils.train.checkpointer import mid_epoch_change

    args = train.parse_args(["-model_type", "vit_tiny", "--device", "cpu", "-batch_size", "4"])
    saved = {"epoch": 2, "step_in_epoch": 5, "world_size": 2,
             "args": {"world_size": 1, "batch_size": 4, "grad_acc_steps": 1}}  # fmt: skip
    assert mid_epoch_change(saved, 2, args) is None  # torchrun: the real world size counts
    problem = mid_epoch_change(saved, 4, args)
    assert "world_size 2 -> 4" in problem and "epoch 2" in problem
    args.grad_acc_steps = 2
    assert "grad_acc_steps 1 -> 2" in mid_epoch_change(saved, 2, args)
    assert mid_epoch_change({**saved, "step_in_epoch": 0}, 4, args) is None  # epoch boundary


def test_each_rank_gets_back_its_own_random_state():
    from utils.train.checkpointer import restore_rng

    previous = torch.get_rng_state()
    try:
        states = []
        for seed in (10, 11):  # what ranks 0 and 1 had saved
            torch.manual_seed(seed)
            states.append({"torch": torch.get_rng_state()})
        restore_rng(states, rank=1, seed=0)
        assert torch.equal(torch.get_rng_state(), states[1]["torch"])
        restore_rng(states, rank=2, seed=100)  # a rank the checkpoint has no state for
        first = torch.rand(3)
        torch.manual_seed(102)
        assert torch.equal(first, torch.rand(3))
    finally:
        torch.set_rng_state(previous)
