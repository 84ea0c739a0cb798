"""``--preset smoke``: after the run, check that it did what a training run does."""

from __future__ import annotations

import json
import math
from pathlib import Path

from utils.model.sam import build_sam
from utils.train import run_log
from utils.train.step_log import read_steps

TEST_SCORE = "test_full_fg_iou"


def smoke_problems(run_dir: Path, model_type: str) -> list[str]:
    """What is missing or wrong in a finished run folder (empty: the run is sound).

    Checks: both checkpoints load into ``model_type``; every epoch's record and every
    step's loss is finite; the test table holds a foreground IoU within [0, 1].
    """
    problems = []
    for name in (run_log.LATEST, run_log.BEST):
        try:
            build_sam(model_type, run_dir / name)
        except (ValueError, OSError) as err:
            problems.append(f"{name} does not load: {err}")
    try:
        epochs = run_log.read_metrics(run_dir)
    except (OSError, ValueError):  # a damaged file: reported as holding no epoch
        epochs = []
    if not epochs:
        problems.append(f"{run_log.METRICS_JSONL} holds no epoch")
    elif not all(math.isfinite(epoch.get("train_loss", math.nan)) for epoch in epochs):
        problems.append(f"{run_log.METRICS_JSONL}: a training loss is not finite")
    steps = read_steps(run_dir)
    if not steps:
        problems.append("steps.jsonl holds no optimizer step")
    elif any(step["loss"] is None or not math.isfinite(step["loss"]) for step in steps):
        problems.append("steps.jsonl: a step's loss is not finite")
    try:
        score = json.loads((run_dir / "test_metrics.json").read_text())[TEST_SCORE]
    except (OSError, ValueError, KeyError) as err:
        problems.append(f"test_metrics.json has no {TEST_SCORE} ({err!r})")
    else:
        if not 0.0 <= score <= 1.0:
            problems.append(f"test_metrics.json: {TEST_SCORE} {score} is outside [0, 1]")
    return problems


def smoke_summary(run_dir: Path) -> str:
    """One line on a sound run: its folder, steps and test score."""
    score = json.loads((run_dir / "test_metrics.json").read_text())[TEST_SCORE]
    steps = len(read_steps(run_dir))
    return f"{run_dir}: {steps} optimizer steps, test fg IoU {score:.3f} (full box)"
