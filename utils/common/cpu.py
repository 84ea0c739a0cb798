"""The C heap's settings for array-heavy work on the CPU.

glibc's ``malloc`` hands a large block (a few MB: a spectrogram, a batch of
activations) to the kernel when it is freed, and maps it afresh the next time,
which faults in and zeroes every 4 KiB page again. Inference and training allocate
and free such blocks hundreds of times a second; on a small machine those page
faults cost 10-20 % of the time (see BENCHMARKS.md). :func:`keep_freed_memory` tells
``malloc`` to keep freed memory for reuse instead; the process's peak memory does
not grow, it only stops shrinking between batches.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import threadpoolctl
import torch

# mallopt(3) parameters and the values used.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD_BYTES = 1 << 30  # free memory kept at the heap's top before trimming
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest: blocks below this come from the heap


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` reuse freed blocks below 32 MiB instead of returning them
    to the kernel. Returns False (and changes nothing) on a C library without
    ``mallopt`` or that refuses the values, e.g. on macOS or Windows."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


@contextmanager
def cpu_threads(n: int, model_threads: int | None = None) -> Iterator[None]:
    """Within the block, use at most ``n`` CPU threads in OpenCV and the BLAS library under
    NumPy (which otherwise takes every core for the STFT's matrix products) and
    ``model_threads`` (default ``n``) in torch; the previous settings come back after."""
    saved = torch.get_num_threads(), cv2.getNumThreads()
    with threadpoolctl.threadpool_limits(limits=n):
        torch.set_num_threads(model_threads or n)
        cv2.setNumThreads(n)
        try:
            yield
        finally:
            torch.set_num_threads(saved[0])
            cv2.setNumThreads(saved[1])
