"""``--preset smoke``: a whole run from another working directory, checked by the script."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from utils.train import run_log
from utils.train.smoke import smoke_problems


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke preset run as a user would, from a folder outside the repository."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    env = dict(os.environ, PYTHONPATH="")  # the script finds its own modules
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "budsam_train_multi.py"), "--preset", "smoke"],
        cwd=cwd, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    return cwd, result


def test_smoke_preset_trains_and_checks_its_run_from_any_folder(smoke_run):
    cwd, result = smoke_run
    assert result.returncode == 0, result.stderr[-2000:]
    assert "smoke check passed" in result.stdout
    run_dir = run_log.latest_run_dir(cwd / "work_dir", "smoke")
    assert run_dir is not None and (cwd / "data" / "synthetic_smoke" / "train").is_dir()
    assert smoke_problems(run_dir, "vit_tiny") == []


def test_smoke_check_names_what_a_broken_run_lacks(smoke_run, tmp_path):
    cwd = smoke_run[0]
    run_dir = run_log.latest_run_dir(cwd / "work_dir", "smoke")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (run_log.LATEST, run_log.METRICS_JSONL, "steps.jsonl"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    (broken / run_log.BEST).write_bytes(b"not a checkpoint")
    problems = smoke_problems(broken, "vit_tiny")
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{run_log.BEST} does not load")
    assert "test_metrics.json" in problems[1]
    assert smoke_problems(run_dir, "vit_b")[0].startswith(run_log.LATEST)  # wrong model
