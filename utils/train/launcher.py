"""Starting the ranks of a run on this node with PyTorch's elastic launcher.

``torchrun`` starts the ranks itself; this module serves the reference's command line
(``--world_size/--node_rank/--init_method``) through ``torch.distributed.launcher.api``
with a static rendezvous at ``--init_method``'s address, so every rank sees the same
environment as under torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_*``).

Each rank runs :func:`rank_main`, which turns the rank's outcome into its exit code and
its error file: 0, 2 for a foreseen failure (bad input; the rank printed one line), or 1
with the traceback in the error file. When a rank fails the launcher stops the others
and names the first failure in its last line of stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from utils.common.distributed import StopRequest

FORESEEN_EXIT_CODE = 2  # a rank stopped with a one-line error (bad input, a diverged loss)
STOPPED_EXIT_CODE = 3  # a rank stopped on SIGTERM/SIGINT after saving: a clean stop
ERROR_FILE_ENV = "TORCHELASTIC_ERROR_FILE"
SHUTDOWN_TIMEOUT_S = 300  # how long ranks get to save ``latest`` once asked to stop
_ELASTIC_MULTIPROCESSING_LOGGER = "torch.distributed.elastic.multiprocessing.api"


def rendezvous_endpoint(init_method: str) -> str:
    """``host:port`` of a ``tcp://host:port`` init method.

    Raises:
        ValueError: when ``init_method`` is not of that form.
    """
    parsed = urlparse(init_method)
    if parsed.scheme != "tcp" or not parsed.hostname or parsed.port is None:
        raise ValueError(f"--init_method must be tcp://HOST:PORT, got {init_method!r}")
    return f"{parsed.hostname}:{parsed.port}"


def _write_error_file(message: str, trace: str, exit_code: int) -> None:
    """This rank's outcome in the launcher's error file (the elastic launcher's format)."""
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return
    record = {
        "message": {
            "message": message,
            "extraInfo": {"py_callstack": trace, "timestamp": str(int(time.time()))},
        },
        "exit_code": exit_code,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record))


def rank_main(entry: Callable[..., int], *args: object) -> None:
    """Run one rank's ``entry(*args)`` and exit with its code; an unforeseen error is
    recorded, traceback included, in the error file instead of being printed.

    A rank that stopped on a signal exits at once with :data:`STOPPED_EXIT_CODE`: a
    returning rank waits for the launcher to collect its result, which a launcher
    shutting the ranks down no longer does, and a launcher that was not signalled itself
    learns from the code that the ranks stopped cleanly.
    """
    try:
        code = entry(*args)
    except Exception as err:
        _write_error_file(f"{type(err).__name__}: {err}", traceback.format_exc(), 1)
        sys.exit(1)
    if code == 0 and StopRequest.received is not None:
        code = STOPPED_EXIT_CODE
    if code in (FORESEEN_EXIT_CODE, STOPPED_EXIT_CODE):
        _write_error_file("stopped with the line above" if code == FORESEEN_EXIT_CODE
                          else "stopped on a signal", "", code)  # fmt: skip
    if code == STOPPED_EXIT_CODE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class _DropFailureTracebacks(logging.Filter):
    """The launcher names failed ranks itself; the elastic launcher's own report of a
    failed process comes with a traceback of its process bookkeeping."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("failed (exitcode")


def launch(
    entry: Callable[..., int],
    args: tuple,
    *,
    world_size: int,
    nproc_per_node: int,
    node_rank: int,
    init_method: str,
) -> int:
    """Start ``nproc_per_node`` ranks of ``entry(*args)`` on this node and wait for them.

    Returns 0 when every rank succeeded or the ranks stopped on a signal (having saved
    their state), 2 when a rank stopped with a one-line error, 1 after an unforeseen
    error (its traceback printed, then one line naming the rank). The ranks' error files
    live in a temporary folder that is removed afterwards.

    Raises:
        ValueError: when ``world_size`` is not a multiple of ``nproc_per_node`` or the
            init method is not ``tcp://HOST:PORT``.
    """
    if world_size % nproc_per_node:
        raise ValueError(
            f"--world_size {world_size} is not a multiple of --nproc_per_node {nproc_per_node}"
        )
    nodes = world_size // nproc_per_node
    logging.getLogger(_ELASTIC_MULTIPROCESSING_LOGGER).addFilter(_DropFailureTracebacks())
    with tempfile.TemporaryDirectory(prefix="budsam_ranks_") as log_dir:
        return _launch_and_wait(entry, args, nodes, nproc_per_node, node_rank, init_method,
                                Path(log_dir))  # fmt: skip


def _launch_and_wait(
    entry: Callable[..., int],
    args: tuple,
    nodes: int,
    nproc_per_node: int,
    node_rank: int,
    init_method: str,
    log_dir: Path,
) -> int:
    """:func:`launch` with the ranks' error files under ``log_dir``."""
    settings = {
        "min_nodes": nodes,
        "max_nodes": nodes,
        "nproc_per_node": nproc_per_node,
        "run_id": f"budsam-{uuid.uuid4().hex[:8]}" if nodes == 1 else "budsam",
        "rdzv_backend": "static",
        "rdzv_endpoint": rendezvous_endpoint(init_method),
        "rdzv_configs": {"rank": node_rank},
        "max_restarts": 0,
        "start_method": "spawn",
        "logs_specs": DefaultLogsSpecs(log_dir=str(log_dir)),
    }
    if "shutdown_timeout" in LaunchConfig.__dataclass_fields__:
        settings["shutdown_timeout"] = SHUTDOWN_TIMEOUT_S
    first_rank = node_rank * nproc_per_node
    try:
        elastic_launch(LaunchConfig(**settings), rank_main)(entry, *args)
    except ChildFailedError:
        return _report_failure(log_dir, first_rank)
    except SignalException as stop:
        print(f"launcher: {stop.sigval.name} forwarded to every rank", file=sys.stderr)
    return 0


def _report_failure(log_dir: Path, first_rank: int) -> int:
    """Name the first failed rank (by when its error file was written) and return the
    launcher's exit code."""
    records = []
    for path in log_dir.rglob("error.json"):
        local_rank = int(path.parent.name)
        record = json.loads(path.read_text())
        records.append((path.stat().st_mtime_ns, first_rank + local_rank, record))
    records.sort(key=lambda item: item[0])
    codes = {record.get("exit_code") for _, _, record in records}
    if codes == {STOPPED_EXIT_CODE}:
        print("launcher: the ranks stopped on a signal", file=sys.stderr, flush=True)
        return 0
    foreseen = [rank for _, rank, rec in records if rec.get("exit_code") == FORESEEN_EXIT_CODE]
    if foreseen:
        who = "every rank" if len(foreseen) == len(records) else f"rank {foreseen[0]}"
        print(f"error: {who} stopped on the error above; every rank was stopped",
              file=sys.stderr, flush=True)  # fmt: skip
        return FORESEEN_EXIT_CODE
    if not records:
        print("error: a rank stopped without reporting an error (killed?); every rank was "
              "stopped", file=sys.stderr, flush=True)  # fmt: skip
        return 1
    _, rank, record = records[0]  # the others failed because this rank was gone
    message = record["message"]
    print(message["extraInfo"]["py_callstack"].strip(), file=sys.stderr)
    print(f"error: rank {rank} failed: {message['message']}; every rank was stopped",
          file=sys.stderr, flush=True)  # fmt: skip
    return 1
