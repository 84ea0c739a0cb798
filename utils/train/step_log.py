"""Rank 0's logs beyond the per-epoch ``metrics.jsonl``: one JSON line per optimizer step
(``steps.jsonl``, always), TensorBoard scalars (``--tensorboard``), and the GPU's peak
memory per epoch.

``steps.jsonl`` holds ``{"epoch", "step", "loss", "lr", "time"}`` per optimizer step:
``step`` counts the run's optimizer steps from 1 (the step a resumed run reaches is the
checkpoint's ``step``), ``loss`` is the step's training loss (the mean over its
micro-batches and ranks; null when not finite), ``lr`` the rate it was taken at, and
``time`` the wall-clock time (Unix seconds). A step whose update was not applied also
says ``"skipped"``: ``"nonfinite"`` (NaN/inf loss or gradients) or ``"fp16_scaler"``
(the gradient scaler found infinite gradients; the step is tried again under the same
number). Lines are written as they happen (line-buffered), so a killed run keeps them; a
resumed run appends, after dropping the lines of steps past its checkpoint (a killed
run logged steps that the resumed one takes again), as TensorBoard's ``purge_step`` does
for the event files.

TensorBoard (``<run>/tensorboard/``), every point at the run's optimizer step:
``train/loss`` and ``train/lr`` per applied step; per epoch ``train/epoch_loss``,
``val_<prompt>/<score>`` (every validation score of ``metrics.jsonl``),
``perf/train_samples_per_s``, ``perf/epoch_seconds`` and, on CUDA,
``perf/gpu_max_mem_mb``. ``tensorboard`` is an optional package; ``torch.utils.tensorboard``
is imported only when asked for.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from utils.common.files import write_text

STEPS_JSONL = "steps.jsonl"
TENSORBOARD_DIR = "tensorboard"
INSTALL_TENSORBOARD = "pip install tensorboard"
# metrics.jsonl entries -> TensorBoard tags; the validation scores are mapped by prefix.
EPOCH_TAGS = {
    "train_loss": "train/epoch_loss",
    "train_samples_per_s": "perf/train_samples_per_s",
    "seconds": "perf/epoch_seconds",
    "gpu_max_mem_mb": "perf/gpu_max_mem_mb",
}
VAL_PROMPTS = ("val_full_", "val_gt_box_")


def tensorboard_problem() -> str | None:
    """Why ``--tensorboard`` cannot be used (one line naming the package and how to
    install it), or None when ``torch.utils.tensorboard`` imports."""
    try:
        import tensorboard  # noqa: F401
        import torch.utils.tensorboard  # noqa: F401
    except Exception as err:  # noqa: BLE001 - a broken install raises more than ImportError
        return (
            f"--tensorboard needs the optional package 'tensorboard', which could not be "
            f"imported ({type(err).__name__}: {err}); install it with: {INSTALL_TENSORBOARD}"
        )
    return None


def epoch_tag(key: str) -> str | None:
    """The TensorBoard tag of a ``metrics.jsonl`` entry, or None for one not plotted."""
    for prefix in VAL_PROMPTS:
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix) :]}"
    return EPOCH_TAGS.get(key)


def _records(path: Path) -> list[tuple[str, dict | None]]:
    """Each line of a JSON-lines file with its record (None for a line a kill cut short)."""
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append((line, json.loads(line)))
        except json.JSONDecodeError:
            lines.append((line, None))
    return lines


def read_steps(run_dir: Path) -> list[dict]:
    """The records of ``steps.jsonl`` (none when there is no such file; a line a kill cut
    short is left out)."""
    return [record for _, record in _records(Path(run_dir) / STEPS_JSONL) if record is not None]


def _keep_steps_up_to(path: Path, last_step: int) -> None:
    """Drop the lines of steps after ``last_step``, and lines a kill cut short; the file
    is rewritten (atomically) only when there is something to drop."""
    lines = _records(path)
    kept = [line for line, record in lines if record is not None and record["step"] <= last_step]
    if len(kept) < len(lines):
        write_text(path, "".join(f"{line}\n" for line in kept))


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring the peak GPU memory of an epoch (nothing on the CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float]:
    """``{"gpu_max_mem_mb": peak}`` since :func:`reset_peak_memory` on CUDA; ``{}`` otherwise."""
    if device.type != "cuda":
        return {}
    return {"gpu_max_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}


class StepLog:
    """Rank 0's per-step and per-epoch logs of a run folder (see the module's docstring).

    Args:
        run_dir: the run folder.
        last_step: the optimizer steps the run has taken (a resumed run's checkpoint
            ``step``; 0 for a new run): later steps already logged are dropped.
        tensorboard: also write TensorBoard event files into ``run_dir/tensorboard``.
    """

    def __init__(self, run_dir: Path, last_step: int = 0, tensorboard: bool = False) -> None:
        path = Path(run_dir) / STEPS_JSONL
        _keep_steps_up_to(path, last_step)
        self._file = open(path, "a", buffering=1)  # line-buffered: each line is flushed
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow: only when asked for

            self._writer = SummaryWriter(
                str(Path(run_dir) / TENSORBOARD_DIR),
                purge_step=last_step + 1,
                flush_secs=30,
            )

    def step(
        self, epoch: int, step: int, loss: float, lr: float, skipped: str | None = None
    ) -> None:
        """Log optimizer step ``step`` (counted from 1) of epoch ``epoch``."""
        record = {
            "epoch": epoch,
            "step": step,
            "loss": loss if math.isfinite(loss) else None,
            "lr": lr,
            "time": round(time.time(), 3),
        }
        if skipped is not None:
            record["skipped"] = skipped
        self._file.write(json.dumps(record) + "\n")
        if self._writer is not None and skipped is None:
            self._writer.add_scalar("train/loss", loss, step)
            self._writer.add_scalar("train/lr", lr, step)

    def epoch(self, record: dict) -> None:
        """Log an epoch's ``metrics.jsonl`` record to TensorBoard, at its ``step``."""
        if self._writer is None:
            return
        for key, value in record.items():
            tag = epoch_tag(key)
            if tag is not None and isinstance(value, (int, float)):
                self._writer.add_scalar(tag, value, record["step"])
        self._writer.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
