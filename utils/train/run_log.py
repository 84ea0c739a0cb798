"""The run folder: arguments, command line, per-epoch metrics (JSON lines + CSV), plots."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402

from utils.common.environment import software_versions  # noqa: E402
from utils.common.files import atomic_path, write_text  # noqa: E402

LATEST = "budsam_model_latest.pth"
BEST = "budsam_model_best.pth"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
RUN_STAMP = "%Y%m%d-%H%M%S"  # run folders are <task_name>-<stamp>[_<n>]


def new_run_dir(work_dir: str | Path, task_name: str) -> Path:
    """Create ``work_dir/<task_name>-<YYYYmmdd-HHMMSS>`` and return it; never an existing
    folder (a suffix ``_1``, ``_2``, ... keeps it unique, even for runs started at once)."""
    base = Path(work_dir) / f"{task_name}-{datetime.now().strftime(RUN_STAMP)}"
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        run_dir = base if n == 0 else Path(f"{base}_{n}")
        try:
            run_dir.mkdir()  # atomic: fails if the folder exists, whoever made it
            return run_dir
        except FileExistsError:
            n += 1


def latest_run_dir(work_dir: str | Path, task_name: str) -> Path | None:
    """The newest run folder of ``task_name`` (not of a task whose name merely starts with
    it) that holds a latest checkpoint."""
    own_run = re.compile(re.escape(task_name) + r"-\d{8}-\d{6}(_\d+)?")
    runs = sorted(
        (
            p
            for p in Path(work_dir).glob("*")
            if own_run.fullmatch(p.name) and (p / LATEST).is_file()
        ),
        key=lambda p: (p / LATEST).stat().st_mtime,
    )
    return runs[-1] if runs else None


def check_work_dir(work_dir: str | Path) -> None:
    """Make sure run folders can be created under ``work_dir``, without creating it: its
    nearest existing ancestor must be a folder that takes a (deleted at once) probe file.

    Raises:
        ValueError: one line naming ``work_dir`` and the problem.
    """
    work_dir = Path(work_dir)
    existing = next(p for p in (work_dir, *work_dir.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ValueError(f"{work_dir}: cannot create run folders there ({existing} is a file)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(
            f"{work_dir}: cannot create run folders there ({existing} is not writable: "
            f"{err.strerror or err})"
        ) from None


def save_run_config(run_dir: Path, args: dict) -> None:
    """``args.json``; and a line added to ``command.txt`` (the command line as typed) and to
    ``environment.jsonl`` (:func:`utils.common.environment.software_versions`) for each start
    or resumption."""
    write_text(run_dir / "args.json", json.dumps(args, indent=2, sort_keys=True, default=str))
    command = shlex.join([sys.executable, *sys.argv])
    with open(run_dir / "command.txt", "a") as handle:
        handle.write(command + "\n")
    with open(run_dir / "environment.jsonl", "a") as handle:
        handle.write(json.dumps(software_versions()) + "\n")


def append_metrics(run_dir: Path, record: dict) -> None:
    """Add one epoch's record to ``metrics.jsonl`` and rewrite ``metrics.csv`` from it."""
    with open(run_dir / METRICS_JSONL, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    records = read_metrics(run_dir)
    columns = list(dict.fromkeys(key for r in records for key in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(records)
    write_text(run_dir / METRICS_CSV, buffer.getvalue())


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(run_dir: Path) -> None:
    """``loss.png`` (train and validation loss) and ``val_metrics.png`` per epoch."""
    records = read_metrics(run_dir)
    if not records:
        return
    epochs = [r["epoch"] for r in records]
    for filename, keys, ylabel in (
        ("loss.png", [k for k in records[-1] if k.endswith("loss")], "Dice + BCE loss"),
        ("val_metrics.png", [k for k in records[-1] if "iou" in k or "dice" in k], "score"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            ax.plot(epochs, [r.get(key) for r in records], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(run_dir / filename) as tmp:
            fig.savefig(tmp, dpi=90)
        plt.close(fig)


def epoch_summary(record: dict, val_prompt: str, improved: bool, val_metric: str = "fg_iou") -> str:
    prefix = f"val_{val_prompt}_"
    return (
        f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
        f"val loss {record[prefix + 'loss']:.4f}, val fg IoU {record[prefix + 'fg_iou']:.4f}, "
        f"whole-image fg IoU {record[prefix + 'whole_fg_iou']:.4f} "
        f"({val_prompt} box; best by {val_metric}){' (best)' if improved else ''}, "
        f"{record['seconds']} s"
    )


def format_test_table(test: dict) -> str:
    """The test split's scores under both prompt protocols, as a small text table."""
    header = f"{'prompt':<28} {'fg IoU':>7} {'fg Dice':>8} {'paper IoU':>10} {'paper Dice':>11}"
    lines = ["test split (best checkpoint):", header]
    for prompt, label in (
        ("gt_box", "ground-truth box (paper)"),
        ("full", "full-image box (no GT)"),
    ):
        scores = [
            test[f"test_{prompt}_{k}"] for k in ("fg_iou", "fg_dice", "paper_iou", "paper_dice")
        ]
        lines.append(
            f"{label:<28} {scores[0]:>7.4f} {scores[1]:>8.4f} {scores[2]:>10.4f} {scores[3]:>11.4f}"
        )
    return "\n".join(lines)
