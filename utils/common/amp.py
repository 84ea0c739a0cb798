"""Mixed precision: the autocast context for ``--amp bf16|fp16|none``."""

from __future__ import annotations

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str):
    """The autocast context for ``--amp bf16|fp16|none``."""
    return torch.autocast(device.type, dtype=AMP_DTYPES.get(amp), enabled=amp in AMP_DTYPES)
