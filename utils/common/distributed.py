"""torch.distributed set-up for one or many processes, GPUs (NCCL) or CPUs (gloo).

Ranks come from torchrun's environment (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, ``env://``;
set by torchrun and by ``utils.train.launcher``), or for a single process per node from
the reference's ``--world_size/--node_rank/--init_method``.
"""

from __future__ import annotations

import datetime
import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: global rank, world size, local rank and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes files and saves checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def log(self, message: str) -> None:
        """Print ``message`` on rank 0 only."""
        if self.is_main:
            print(message, flush=True)


def launched_by_torchrun() -> bool:
    """True when torchrun (or another env:// launcher) set this process's rank."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_distributed(
    local_rank: int,
    world_size: int,
    node_rank: int,
    procs_per_node: int,
    init_method: str,
    device: str,
    timeout_s: float = 1800.0,
) -> DistContext:
    """Join the process group (NCCL on CUDA, gloo on the CPU) and pick the device.

    Under torchrun the ranks come from the environment and ``init_method`` is
    ``env://``; otherwise the global rank is ``node_rank * procs_per_node + local_rank``.
    A single process (world size 1) starts no process group.
    """
    if launched_by_torchrun():
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank, init_method = int(os.environ["LOCAL_RANK"]), "env://"
    else:
        rank = node_rank * procs_per_node + local_rank
    if device == "cuda":
        torch_device = torch.device("cuda", cuda_index(local_rank, torch.cuda.device_count()))
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1:
        dist.init_process_group(
            backend="nccl" if device == "cuda" else "gloo",
            init_method=init_method,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=torch_device if device == "cuda" else None,
        )
    return DistContext(rank, world_size, local_rank, torch_device)


def cuda_index(local_rank: int, visible: int) -> int:
    """The CUDA device of local rank ``local_rank`` among ``visible`` devices: its own, or
    the only one when a scheduler shows each process one GPU (SLURM, CUDA_VISIBLE_DEVICES).

    Raises:
        ValueError: when several devices are visible but fewer than ``local_rank + 1``.
    """
    if visible == 1:
        return 0
    if not 0 <= local_rank < visible:
        raise ValueError(
            f"local rank {local_rank} needs a GPU of its own but {visible} are visible; "
            "start at most one process per GPU (--nproc_per_node)"
        )
    return local_rank


def in_process_group() -> bool:
    """Whether this process belongs to a process group (False for a single process)."""
    return dist.is_available() and dist.is_initialized()


def cleanup() -> None:
    if in_process_group():
        dist.destroy_process_group()


def barrier() -> None:
    if in_process_group():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (in place, also returned); a no-op for one process."""
    if in_process_group():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on at least one (a collective call)."""
    if not in_process_group():
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def broadcast_object(value: object, src: int = 0) -> object:
    """Rank ``src``'s value on every rank (picklable objects)."""
    if not in_process_group():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather(value: object) -> list:
    """Every rank's value, in rank order (picklable objects; ``[value]`` for one process)."""
    if not in_process_group():
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def gather_union(values: set) -> set:
    """The union of every rank's set (picklable items)."""
    return set().union(*all_gather(set(values)))


def shard_indices(n_items: int, rank: int, world_size: int) -> list[int]:
    """This rank's share of ``range(n_items)``: every item exactly once across ranks.

    Unlike ``DistributedSampler``, nothing is padded or repeated, so evaluation
    counts each sample once.
    """
    return list(range(rank, n_items, world_size))


def shard_by_weight(weights: list[float], rank: int, world_size: int) -> list[int]:
    """This rank's share of items of the given weights (e.g. durations), balanced by
    total weight: heaviest first, each to the rank with the least so far (ties to the
    lowest rank). Every item goes to exactly one rank; the share keeps the items' order."""
    loads = [0.0] * world_size
    owner = [0] * len(weights)
    for item in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        owner[item] = min(range(world_size), key=lambda r: (loads[r], r))
        loads[owner[item]] += weights[item]
    return [item for item in range(len(weights)) if owner[item] == rank]


def ignore_stop_signals(worker_id: int = 0) -> None:
    """For data-loader workers: SIGTERM/SIGINT sent to the whole process group (Ctrl-C,
    a scheduler) must not kill them before the training process has saved ``latest``."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


class StopRequest:
    """Set by SIGTERM/SIGINT; training stops after the current optimizer step.

    ``StopRequest.received`` is the last stop signal this process got (None before any),
    for code that must know after the request object is gone.
    """

    received: int | None = None

    def __init__(self) -> None:
        self.signal: int | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.signal = StopRequest.received = signum

    def agreed(self, ctx: DistContext) -> bool:
        """True on every rank as soon as any rank was asked to stop."""
        return any_rank(self.signal is not None, ctx.device)
