"""Benchmark: wall time per epoch of the quick start with 1 and with 2 gloo processes.

    python -m bench.bench_ddp_cpu --epochs 2 --repeats 2

Runs ``budsam_train_multi.py --preset cpu_demo`` (its synthetic data are written
first if absent) for ``--epochs`` epochs with ``--world_size 1`` and ``2``,
alternating, in a temporary work dir, and reads each epoch's wall time (training
and validation) from the run's ``metrics.jsonl``. The first epoch also fills the
in-memory item cache, so it is reported apart from the later ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.timing import machine, spread

REPO_ROOT = Path(__file__).resolve().parents[1]


def epoch_seconds(world_size: int, epochs: int, work_dir: Path) -> list[float]:
    """Per-epoch wall seconds of one quick-start run with ``world_size`` processes."""
    command = [sys.executable, "budsam_train_multi.py", "-task_name", f"ws{world_size}",
               "--preset", "cpu_demo", "--world_size", str(world_size),
               "-num_epochs", str(epochs), "-work_dir", str(work_dir)]  # fmt: skip
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    (run_dir,) = sorted(work_dir.glob(f"ws{world_size}-*"))[-1:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["seconds"] for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    first = {1: [], 2: []}
    later = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
        for _ in range(args.repeats):
            for world_size in (1, 2):
                seconds = epoch_seconds(world_size, args.epochs, Path(tmp))
                first[world_size].append(seconds[0])
                later[world_size] += seconds[1:]
    print(f"machine: {machine()}")
    print(f"quick start (--preset cpu_demo), {args.epochs} epochs x {args.repeats} repeats")
    for world_size in (1, 2):
        print(f"{world_size} gloo process(es): first epoch s {spread(first[world_size], 1)}; "
              f"later epochs s {spread(later[world_size], 1)}")  # fmt: skip
    if later[1] and later[2]:
        ratio = statistics.median(later[1]) / statistics.median(later[2])
        print(f"speed-up of 2 processes over 1 (later epochs, median): {ratio:.2f}x")


if __name__ == "__main__":
    main()
