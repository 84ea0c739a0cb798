"""Progress reports: a tqdm bar on a terminal, plain lines in a log file (nohup)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """A tqdm bar when stdout is a terminal; otherwise a plain line every ``interval``
    updates (and at the end), so ``nohup`` logs hold no carriage-return bars."""

    def __init__(self, total: int, desc: str, enabled: bool = True, interval: int = 10) -> None:
        self.enabled, self.total, self.desc, self.interval = enabled, total, desc, max(1, interval)
        self.bar = tqdm(total=total, desc=desc) if enabled and sys.stdout.isatty() else None
        self.done, self.start = 0, time.perf_counter()

    def update(self, n: int = 1, **values: float) -> None:
        """Count ``n`` more done; ``values`` (e.g. ``loss=0.3``) are shown beside."""
        before, self.done = self.done, self.done + n
        text = " ".join(f"{k}={v:.4f}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(n)
        elif self.enabled and (
            self.done // self.interval > before // self.interval or self.done >= self.total
        ):
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            print(f"{self.desc} {self.done}/{self.total} ({rate:.2f} it/s) {text}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
