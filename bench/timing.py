"""Shared helpers of the benchmark scripts: repeated timing and how to report it."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def time_repeats(run: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``run`` (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def spread(values: list[float], digits: int = 3) -> str:
    """``min / median / max`` of repeated measurements."""
    return " / ".join(
        f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values))
    )


def machine() -> str:
    """The machine in a few words: CPU, cores, load, and the GPU if one is visible."""
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores (load {load:.2f} at start){gpu}"


def print_side_by_side(
    unit: str, ours: tuple[str, list[float]], theirs: tuple[str, list[float]]
) -> float:
    """Print two rates measured side by side (min / median / max) and return the
    ratio of their medians, ours over theirs."""
    for label, values in (ours, theirs):
        print(f"{label}, {unit} (min / median / max): {spread(values, 3)}")
    ratio = statistics.median(ours[1]) / statistics.median(theirs[1])
    print(f"speed-up (median / median): {ratio:.1f}x")
    return ratio
