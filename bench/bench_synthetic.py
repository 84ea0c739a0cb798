"""Benchmark: how fast ``utils.data.synthetic`` writes a data set.

    python -m bench.bench_synthetic --n 1000 --repeats 3 --workers 2

Each repeat writes a fresh set of ``--n`` images (train/valid/test 80/10/10) into a
temporary folder, times it end to end (process start-up of the workers included),
and deletes it. Prints min/median/max seconds and images per second, and the disk
use of one set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.timing import machine, spread
from utils.data.synthetic import generate_dataset


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="images per set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = {"train": args.n * 8 // 10, "valid": args.n // 10}
    counts["test"] = args.n - sum(counts.values())

    seconds, size = [], 0
    for repeat in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="bench_synthetic_"))
        start = time.perf_counter()
        generate_dataset(out, counts, seed=args.seed + repeat, workers=args.workers, progress=False)
        seconds.append(time.perf_counter() - start)
        size = folder_bytes(out)
        shutil.rmtree(out)
        print(f"repeat {repeat}: {seconds[-1]:.1f} s")

    print(f"machine: {machine()}")
    print(f"images: {args.n}, workers: {args.workers}, repeats: {args.repeats}")
    print(f"seconds (min / median / max): {spread(seconds, 1)}")
    print(f"images/s (median): {args.n / statistics.median(seconds):.2f}")
    print(f"disk per set: {size / 1e9:.2f} GB ({size / args.n / 1e6:.2f} MB per image)")


if __name__ == "__main__":
    main()
