"""The peak resident memory of this process.

``getrusage``'s ``ru_maxrss`` survives ``execve``: a process started by a large one
(a test runner, a notebook) reports its parent's peak as its own. The kernel's
``VmHWM`` counts this process's own address space only, so it is read first.
"""

from __future__ import annotations

import resource
from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_resident_mb() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` on Linux, else ``ru_maxrss``."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # reported in kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
