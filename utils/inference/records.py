"""An inference run's bookkeeping in its output folder, so that a run can be resumed and
split across processes.

``run.json`` holds the settings that decide the outputs. Each input file gets a record,
``records/NAME.json``, written (atomically) only once all its outputs are in place: its
metrics rows, or why it was skipped, and its warnings. A file with a record is done; a
file without one is redone from the start, its half-written outputs replaced. Outputs
are written under temporary names and renamed, so a killed run leaves whole files and
temporary ones, which a resumed run removes.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from utils.common.files import write_text

RECORDS_DIR = "records"
RUN_FILE = "run.json"
TEMPORARY_GLOB = ".*.tmp*"


def record_path(out: Path, name: str) -> Path:
    return out / RECORDS_DIR / f"{name}.json"


def write_record(out: Path, name: str, record: dict) -> None:
    """Write a file's record (rows, skipped, warnings: JSON with NaN kept), atomically."""
    write_text(record_path(out, name), json.dumps(record) + "\n")


def read_record(out: Path, name: str) -> dict | None:
    """A file's record, or None when it has none (or an unreadable one, then redone)."""
    path = record_path(out, name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        print(f"warning: {path}: unreadable record, the file is done again ({err})",
              file=sys.stderr)  # fmt: skip
        return None


def start_records(out: Path, settings: dict, resume: bool) -> None:
    """Set up the bookkeeping: for a new run, a fresh ``records/`` and ``run.json``; for
    ``resume``, check that ``run.json`` holds the same ``settings`` and remove the
    temporary files a killed run left.

    Raises:
        ValueError: naming ``run.json``, when there is nothing to resume or it was
            another run (the setting that differs is named).
    """
    run_file = out / RUN_FILE
    if resume:
        try:
            recorded = json.loads(run_file.read_text())
        except (OSError, ValueError):
            raise ValueError(f"{run_file}: no run to resume here (missing or unreadable)") from None
        for key, value in settings.items():
            if recorded.get(key) != value:
                raise ValueError(
                    f"{run_file}: --resume needs the same {key} as the run it continues "
                    f"({recorded.get(key)!r}, now {value!r})"
                )
        for leftover in out.rglob(TEMPORARY_GLOB):
            leftover.unlink(missing_ok=True)
        (out / RECORDS_DIR).mkdir(exist_ok=True)
        return
    shutil.rmtree(out / RECORDS_DIR, ignore_errors=True)
    (out / RECORDS_DIR).mkdir()
    write_text(run_file, json.dumps(settings, indent=2) + "\n")
