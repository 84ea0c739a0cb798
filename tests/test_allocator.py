"""keep_freed_memory: freed array memory is reused, not faulted in afresh."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from utils.common.cpu import keep_freed_memory

# A spectrogram-sized elementwise pipeline, 20 times; prints the page faults it caused.
_FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from utils.common.cpu import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
a = np.ones((1024, 1500), np.float32)
b = np.full((1024, 1500), 0.5, np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    kept = np.sqrt(a * a + b * b) > 0.5
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], cwd=REPO_ROOT,
                            check=True, capture_output=True, text=True)  # fmt: skip
    return int(result.stdout.strip().splitlines()[-1])


def test_freed_arrays_are_reused_instead_of_faulted_in_again():
    if not keep_freed_memory():
        pytest.skip("this C library has no mallopt (not glibc): nothing to check")
    default, kept = _page_faults("default"), _page_faults("keep")
    # Each pass needs a few thousand pages of temporaries: by default about 750 of them
    # are faulted in again every pass (15,000 measured); kept, only the first pass's are.
    assert default > 10_000
    assert kept < default / 4
