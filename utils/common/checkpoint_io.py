"""Saving and loading training checkpoints safely.

A checkpoint is a dict of plain types and tensors (it loads with
``torch.load(..., weights_only=True)``): ``model`` (the unwrapped state dict, with
SAM's own keys), ``optimizer``, ``scaler``, ``epoch``, ``step``, ``best_metric``,
``args`` and ``rng``. Saving writes a temporary file, flushes it to disk and
renames it over the old one, so a crash mid-save never replaces a good
checkpoint with a broken one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from utils.common.files import atomic_path


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> Any:
    """``torch.load`` of a file on the CPU, weights only (plain types and tensors).

    ``mmap`` maps the file instead of reading it (no second copy of large weights);
    the legacy (non-zip) format does not support it and is then read as usual.

    Raises:
        ValueError: one line naming the file, when it is missing, truncated, damaged
            or not a PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint not found")
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # not the zip format, or damaged: the plain load below tells
            pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged files
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"{path}: cannot read checkpoint ({type(err).__name__}: {reason})"
        ) from None


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict:
    """Read a checkpoint (a dict) onto the CPU; ``mmap`` as in :func:`read_checkpoint`.

    Raises:
        ValueError: naming the file, when it is missing, unreadable or truncated, or
            holds something other than a dict.
    """
    state = read_checkpoint(path, mmap=mmap)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a checkpoint (holds a {type(state).__name__})")
    return state


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def state_mismatch(state: Mapping[str, Any], expected: Mapping[str, torch.Tensor]) -> str | None:
    """How ``state`` differs from ``expected`` (a state dict, or its keys and shapes), in
    one line: counts of missing and unexpected keys and of shape mismatches, with one
    example of each; None when every key and shape fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {_shape(state[k])} vs {_shape(v)}"
        for k, v in expected.items()
        if k in state and not (isinstance(state[k], torch.Tensor) and state[k].shape == v.shape)
    ]
    if not (missing or unexpected or mismatched):
        return None
    examples = [f"missing {k}" for k in missing[:1]]
    examples += [f"unexpected {k}" for k in unexpected[:1]]
    examples += mismatched[:1]
    return (
        f"{len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} shape "
        f"mismatches; e.g. {', '.join(examples)}"
    )


def without_ddp_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with every leading DDP ``module.`` prefix removed from its keys."""
    out = {}
    for key, value in state.items():
        key = str(key)
        while key.startswith("module."):
            key = key.removeprefix("module.")
        out[key] = value
    return out
