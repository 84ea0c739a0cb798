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


def test_training_script_help_lists_the_reference_arguments():
    result = subprocess.run(
        [sys.executable, "budsam_train_multi.py", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0
    for flag in ("-i", "--tr_path", "-task_name", "-model_type", "-checkpoint", "-work_dir",
                 "-num_epochs", "-batch_size", "-num_workers", "-lr", "-weight_decay",
                 "--world_size", "--node_rank", "--bucket_cap_mb", "--grad_acc_steps",
                 "--init_method", "--resume", "--preset"):  # fmt: skip
        assert f" {flag}" in result.stdout, flag


def test_no_local_folder_shadows_the_official_segment_anything_package():
    assert not (REPO_ROOT / "segment_anything").exists()
    import segment_anything

    assert (
        "site-packages" in segment_anything.__file__ or "dist-packages" in segment_anything.__file__
    )
    assert callable(segment_anything.sam_model_registry["vit_b"])
