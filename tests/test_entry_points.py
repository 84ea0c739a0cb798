"""The top-level scripts run without side effects at import and say what they do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("module", ["budsam_train_multi", "budsam_infer", "budsam_eval"])
def test_scripts_have_no_import_time_side_effects(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


@pytest.mark.parametrize("script", ["budsam_train_multi.py", "budsam_infer.py", "budsam_eval.py"])
def test_help_shows_one_spelling_per_option(script):
    result = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0
    for flag in ("-i", "--checkpoint", "--model_type"):
        assert f" {flag}" in result.stdout, flag
    for hidden in ("-checkpoint", "-model_type", "-task_name", "-num_epochs", "-lr"):
        assert f" {hidden} " not in result.stdout and f"[{hidden} " not in result.stdout, hidden
        assert f", {hidden}" not in result.stdout, hidden


def test_training_script_help_lists_the_reference_arguments_once_each():
    from utils.train.args import get_args_parser

    text = get_args_parser().format_help()
    for flag in ("-i", "--tr_path", "--task_name", "--model_type", "--checkpoint", "--work_dir",
                 "--num_epochs", "--batch_size", "--num_workers", "--lr", "--weight_decay",
                 "--world_size", "--node_rank", "--bucket_cap_mb", "--grad_acc_steps",
                 "--init_method", "--resume", "--preset", "--tensorboard"):  # fmt: skip
        assert f" {flag}" in text, flag


def test_the_references_single_dash_spellings_still_parse(tmp_path):
    from utils.train.args import parse_args

    args = parse_args(["--preset", "smoke", "-task_name", "ref", "-num_epochs", "3", "-lr",
                       "0.01", "-work_dir", str(tmp_path), "-batch_size", "3"])  # fmt: skip
    assert (args.task_name, args.num_epochs, args.lr, args.batch_size) == ("ref", 3, 0.01, 3)
    assert args.work_dir == str(tmp_path)


def test_no_local_folder_shadows_the_official_segment_anything_package():
    assert not (REPO_ROOT / "segment_anything").exists()
    import segment_anything

    assert (
        "site-packages" in segment_anything.__file__ or "dist-packages" in segment_anything.__file__
    )
    assert callable(segment_anything.sam_model_registry["vit_b"])
