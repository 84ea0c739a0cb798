"""The top-level scripts run without side effects at import and say what they do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("script", ["budsam_train_multi.py", "budsam_infer.py"])
def test_placeholder_scripts_say_not_implemented_and_fail(script):
    result = subprocess.run(
        [sys.executable, script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "not yet implemented" in result.stderr
    assert result.stdout == ""


def test_no_local_folder_shadows_the_official_segment_anything_package():
    assert not (REPO_ROOT / "segment_anything").exists()
    import segment_anything

    assert (
        "site-packages" in segment_anything.__file__ or "dist-packages" in segment_anything.__file__
    )
    assert callable(segment_anything.sam_model_registry["vit_b"])
