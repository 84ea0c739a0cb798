"""Test helper: ``budsam_train_multi.py`` whose rank 1 raises at its second training batch:
a RuntimeError (an unforeseen error), or with ``FAULT=bad_input`` in the environment a
ValueError (what bad input raises).

Run as a script with the training arguments. The launcher starts the ranks with the
``spawn`` method, which imports this file again in every rank (as ``__mp_main__``), so
the patch below reaches each of them.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch.distributed as dist  # noqa: E402

import budsam_train_multi  # noqa: E402
from utils.train import engine  # noqa: E402

_model_logits = engine.model_logits
_calls = {"n": 0}


def failing_model_logits(*args, **kwargs):
    """The real function, except on rank 1's second call."""
    _calls["n"] += 1
    if dist.is_initialized() and dist.get_rank() == 1 and _calls["n"] == 2:
        if os.environ.get("FAULT") == "bad_input":
            raise ValueError("injected bad input on rank 1")
        raise RuntimeError("injected fault on rank 1")
    return _model_logits(*args, **kwargs)


engine.model_logits = failing_model_logits

if __name__ == "__main__":
    sys.exit(budsam_train_multi.main(sys.argv[1:]))
