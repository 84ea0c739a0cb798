"""Every model type the harness trains and loads: SAM's (as :class:`BudSAM`) and the
trained baselines (:mod:`utils.model.baselines`), behind one set of calls.

All of them take images ``(B, 3, S, S)`` in [0, 1] and boxes ``(B, 4)`` and return mask
logits ``(B, 1, S, S)``; the baselines ignore the boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from utils.common.checkpoint_io import load_checkpoint
from utils.model.baselines import (
    BASELINE_TYPES,
    DEFAULT_INPUT_SIZE,
    DEFAULT_LOSS,
    build_baseline,
    load_baseline_state,
)
from utils.model.budsam import BudSAM
from utils.model.sam import (
    MODEL_TYPES,
    build_sam,
    input_size,
    require_weights,
    sam_state_dict,
    state_dict_mismatch,
)

ALL_MODEL_TYPES = MODEL_TYPES + BASELINE_TYPES
LOSSES = ("dice_bce", "bce")
BASELINE_PARTS = ("network",)  # a baseline trains as a whole


def is_baseline(model_type: str) -> bool:
    return model_type in BASELINE_TYPES


def encoder_trained(model_type: str, train_parts: Sequence[str]) -> bool:
    """Whether training changes how images are encoded (then no embedding is cached, and
    the loader gives images): always for a baseline, for SAM with its image encoder."""
    return is_baseline(model_type) or "image_encoder" in train_parts


def model_input_size(model_type: str, requested: int | None = None) -> int:
    """The square input side: SAM's own (``requested`` must be None or equal it), or a
    baseline's ``requested`` size (default :data:`DEFAULT_INPUT_SIZE`, a multiple of 32).

    Raises:
        ValueError: for an unknown type or a size the model cannot take.
    """
    if not is_baseline(model_type):
        size = input_size(model_type)
        if requested not in (None, size):
            raise ValueError(f"{model_type} takes {size} x {size} images, not {requested}")
        return size
    size = DEFAULT_INPUT_SIZE[model_type] if requested is None else requested
    if size <= 0 or size % 32:
        raise ValueError(f"{model_type} needs an input size that is a multiple of 32, got {size}")
    return size


def default_loss(model_type: str) -> str:
    """The loss a model type trains with unless told otherwise (one of :data:`LOSSES`)."""
    return DEFAULT_LOSS[model_type] if is_baseline(model_type) else "dice_bce"


def check_weights(model_type: str, checkpoint: str | Path, size: int) -> None:
    """ValueError (one line, naming the file) unless ``checkpoint`` suits ``model_type``:
    SAM or BudSAM weights for SAM types, ImageNet backbone weights for the baselines."""
    if is_baseline(model_type):
        build_baseline(model_type, size, checkpoint)
    else:
        sam_state_dict(checkpoint, model_type)


def require_pretrained(model_type: str, checkpoint: str | Path | None) -> None:
    """ValueError unless the type is known and, for vit_b/l/h, weights are given (the
    baselines and vit_tiny* start from random weights)."""
    if not is_baseline(model_type):
        require_weights(model_type, checkpoint)


def build_for_training(
    model_type: str,
    checkpoint: str | Path | None,
    *,
    size: int,
    seed: int,
    pixel_norm: str,
    train_parts: Sequence[str],
) -> nn.Module:
    """A model to train: SAM's in a :class:`BudSAM` with ``train_parts`` trainable, or a
    baseline (random init from ``seed``, its backbone from ``checkpoint`` if given)."""
    if is_baseline(model_type):
        return build_baseline(model_type, size, checkpoint, seed=seed)
    model = BudSAM(build_sam(model_type, checkpoint, seed=seed), pixel_norm=pixel_norm)
    model.set_trainable(train_parts)
    return model


def load_trained(checkpoint: str | Path, model_type: str, recorded: Mapping) -> nn.Module:
    """A trained model from a checkpoint in eval mode. ``recorded``: the training arguments
    it holds (empty for an official SAM file).

    Raises:
        ValueError: naming the file, when it does not hold a ``model_type`` model.
    """
    if not is_baseline(model_type):
        # A BudSAM checkpoint records how its encoder saw images (none before --pixel_norm
        # existed); an official SAM file is used as SAM uses it.
        pixel_norm = recorded.get("pixel_norm", "none") if recorded else "sam"
        return BudSAM(build_sam(model_type, checkpoint), pixel_norm=pixel_norm).eval()
    model = build_baseline(model_type, model_input_size(model_type, recorded.get("input_size")))
    load_baseline_state(model, load_checkpoint(checkpoint)["model"], str(checkpoint))
    return model.eval()


def state_problem(state: Mapping, model_type: str, size: int) -> str | None:
    """Why a state dict does not fit a ``model_type`` model of input ``size`` (None: it fits)."""
    if not is_baseline(model_type):
        return state_dict_mismatch(state, model_type)
    try:
        load_baseline_state(build_baseline(model_type, size), state, "the checkpoint")
    except ValueError as err:
        return str(err).removeprefix("the checkpoint: ")
    return None
