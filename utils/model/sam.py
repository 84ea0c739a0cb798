"""SAM models for BudSAM: building, checkpoint loading and the box-prompted wrapper.

Images enter the image encoder as float tensors ``(B, 3, S, S)`` scaled to [0, 1]
(as MedSAM does; SAM's pixel mean/std normalisation is not applied). Box prompts are
``(B, 4)`` float tensors ``x0, y0, x1, y1`` in pixels of the ``S x S`` input.

``vit_b``/``vit_l``/``vit_h`` are the official SAM architectures (S = 1024) and need the
official weights; ``vit_tiny`` is a small randomly initialised SAM (S = 256) for CPU runs
and tests, and ``vit_tiny_p16x8`` the same with 16 x 8 (rows x columns) patches: a
16 x 32 embedding grid, twice vit_tiny's along the width (time, for spectrograms), at
a narrower width (128) so that a step costs about 1.3x vit_tiny's. ``vit_tiny_fast`` is
vit_tiny_p16x8 cut for speed on long recordings: two encoder blocks, windowed attention
only, no relative positions (about a third of its time per tile on one CPU thread).
All are built from the ``segment_anything`` package's own modules, so a
:class:`BudSAM` state dict loads into the package's ``Sam`` and vice versa.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.image_encoder import Block, PatchEmbed
from torch import nn

from utils.common.checkpoint_io import read_checkpoint, state_mismatch, without_ddp_prefix

MODEL_TYPES = ("vit_tiny", "vit_tiny_p16x8", "vit_tiny_fast", "vit_b", "vit_l", "vit_h")
TINY_TYPES = ("vit_tiny", "vit_tiny_p16x8", "vit_tiny_fast")
OFFICIAL_CHECKPOINT_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}


PATCH_SIZE = 16  # image-encoder patch: the embedding grid is S/16 x S/16 (but vit_tiny_p16x8)
LOW_RES_FACTOR = 4  # the mask decoder's output is 4x the embedding grid, i.e. S/4 x S/4


# vit_tiny: a light ViT encoder and a narrow (128-d) prompt encoder / mask decoder.
TINY_IMG_SIZE = 256
TINY_ENCODER_DIM = 192
TINY_ENCODER_DEPTH = 4
TINY_ENCODER_HEADS = 3
TINY_WINDOW = 8
TINY_GLOBAL_ATTN = (1, 3)
TINY_PROMPT_DIM = 128
TINY_DECODER_MLP_DIM = 512


# Each small variant: (patch rows, patch columns), encoder width, heads, depth, the blocks
# with global attention and whether attention adds relative positions.
_TINY_BLOCKS = {"depth": TINY_ENCODER_DEPTH, "global": TINY_GLOBAL_ATTN, "rel_pos": True}
TINY_VARIANTS = {
    "vit_tiny": {"patch": (PATCH_SIZE, PATCH_SIZE), "dim": TINY_ENCODER_DIM,
                 "heads": TINY_ENCODER_HEADS, **_TINY_BLOCKS},
    "vit_tiny_p16x8": {"patch": (16, 8), "dim": 128, "heads": 4, **_TINY_BLOCKS},
}  # fmt: skip
# vit_tiny_p16x8 cut for speed: two windowed blocks without relative positions.
TINY_VARIANTS["vit_tiny_fast"] = {
    **TINY_VARIANTS["vit_tiny_p16x8"],
    "depth": 2,
    "global": (),
    "rel_pos": False,
}


# Buffers of Sam that are not persistent (never in its state dict); tolerated if present.
_IGNORED_KEYS = ("pixel_mean", "pixel_std")


def _check_model_type(model_type: str) -> None:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; expected one of {MODEL_TYPES}")


def input_size(model_type: str) -> int:
    """Side ``S`` of the square image the model's encoder takes (1024, or 256 for vit_tiny*)."""
    _check_model_type(model_type)
    return TINY_IMG_SIZE if model_type in TINY_TYPES else 1024


def _build_tiny_sam(model_type: str = "vit_tiny") -> Sam:
    """A randomly initialised small SAM: 256 x 256 input, 128-channel embeddings on a
    grid of ``256 / patch rows`` x ``256 / patch columns`` (16 x 16 for vit_tiny).

    Non-square patches use the package's own classes: its ``PatchEmbed`` takes any
    kernel, and the position embedding and the global-attention ``Block``s are sized
    for the grid (windowed blocks do not depend on it).
    """
    variant = TINY_VARIANTS[model_type]
    (patch_h, patch_w), dim, heads = variant["patch"], variant["dim"], variant["heads"]
    grid = (TINY_IMG_SIZE // patch_h, TINY_IMG_SIZE // patch_w)
    block_args = {
        "dim": dim,
        "num_heads": heads,
        "mlp_ratio": 4,
        "qkv_bias": True,
        "norm_layer": partial(nn.LayerNorm, eps=1e-6),
        "use_rel_pos": variant["rel_pos"],
    }
    encoder = ImageEncoderViT(
        img_size=TINY_IMG_SIZE,
        patch_size=patch_h,
        embed_dim=dim,
        depth=variant["depth"],
        out_chans=TINY_PROMPT_DIM,
        window_size=TINY_WINDOW,
        global_attn_indexes=variant["global"],
        **{k: v for k, v in block_args.items() if k != "dim"},
    )
    if patch_h != patch_w:
        encoder.patch_embed = PatchEmbed(
            kernel_size=(patch_h, patch_w), stride=(patch_h, patch_w), in_chans=3, embed_dim=dim
        )
        encoder.pos_embed = nn.Parameter(torch.zeros(1, *grid, dim))
        for index in variant["global"]:
            encoder.blocks[index] = Block(**block_args, window_size=0, input_size=grid)
    return Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=TINY_PROMPT_DIM,
            image_embedding_size=grid,
            input_image_size=(TINY_IMG_SIZE, TINY_IMG_SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=TINY_PROMPT_DIM,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=TINY_PROMPT_DIM,
                mlp_dim=TINY_DECODER_MLP_DIM,
                num_heads=8,
            ),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=TINY_PROMPT_DIM,
        ),
    )


def _check_checkpoint_file(checkpoint: str | Path, model_type: str) -> Path:
    """The checkpoint as a Path; ValueError naming it (and the download URL) if absent."""
    path = Path(checkpoint)
    if not path.is_file():
        url = OFFICIAL_CHECKPOINT_URLS.get(model_type)
        hint = f" (download the {model_type} weights from {url})" if url else ""
        raise ValueError(f"{path}: checkpoint not found{hint}")
    return path


def require_weights(model_type: str, checkpoint: str | Path | None) -> None:
    """ValueError unless ``model_type`` is known and, for vit_b/l/h, a checkpoint is given."""
    _check_model_type(model_type)
    if checkpoint is None and model_type not in TINY_TYPES:
        raise ValueError(
            f"{model_type} needs pretrained SAM weights: pass -checkpoint PATH "
            f"(download from {OFFICIAL_CHECKPOINT_URLS[model_type]})"
        )


def build_sam(model_type: str, checkpoint: str | Path | None = None, seed: int = 0) -> Sam:
    """Build a SAM of ``model_type`` in eval() mode, with weights from ``checkpoint``.

    vit_b/l/h need a checkpoint (official SAM weights or a BudSAM checkpoint);
    vit_tiny* are randomly initialised from ``seed`` unless a checkpoint is given.
    Random initialisation does not disturb the global torch RNG.

    Raises:
        ValueError: for an unknown type, a missing checkpoint, or one that cannot be
            read or does not fit the architecture.
    """
    require_weights(model_type, checkpoint)
    path = None if checkpoint is None else _check_checkpoint_file(checkpoint, model_type)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model_type in TINY_TYPES:
            sam = _build_tiny_sam(model_type)
        else:
            sam = _build_official(model_type)
    if path is not None:
        load_sam_weights(sam, path, model_type)
    return sam.eval()


def checkpoint_model_type(checkpoint: str | Path) -> str | None:
    """The ``args["model_type"]`` recorded in a BudSAM checkpoint; None if it records none.

    Raises:
        ValueError: naming the file, when it is missing or unreadable.
    """
    model_type = checkpoint_args(checkpoint).get("model_type")
    return model_type if isinstance(model_type, str) else None


def checkpoint_args(checkpoint: str | Path) -> dict:
    """The training arguments a BudSAM checkpoint records (``{}`` for an official SAM file).

    Raises:
        ValueError: naming the file, when it is missing or unreadable.
    """
    obj = read_checkpoint(checkpoint, mmap=True)
    args = obj.get("args") if isinstance(obj, dict) else None
    return dict(args) if isinstance(args, dict) else {}


@cache
def _expected_state(model_type: str) -> dict[str, torch.Tensor]:
    """A ``model_type`` SAM's state dict on the meta device: keys and shapes, no memory."""
    with torch.device("meta"):
        sam = (
            _build_tiny_sam(model_type) if model_type in TINY_TYPES else _build_official(model_type)
        )
    return sam.state_dict()


def _build_official(model_type: str) -> Sam:
    # The package's builder loads without map_location: never hand it the file.
    return sam_model_registry[model_type](checkpoint=None)


def state_dict_mismatch(state: Mapping[str, Any], model_type: str) -> str | None:
    """How ``state`` differs from a ``model_type`` SAM's state dict, in one line (counts of
    missing and unexpected keys and of shape mismatches, with one example of each), or
    None when every key and shape fits."""
    _check_model_type(model_type)
    return state_mismatch(state, _expected_state(model_type))


def sam_state_dict(checkpoint: str | Path, model_type: str) -> dict[str, torch.Tensor]:
    """The SAM weights in a checkpoint file, with SAM's own keys, checked against a
    ``model_type`` SAM (keys and shapes) without building one.

    Accepts an official SAM state dict (``image_encoder.*``, ``prompt_encoder.*``,
    ``mask_decoder.*``) or a BudSAM checkpoint holding it under ``"model"``; DDP
    ``module.`` prefixes are stripped. The tensors are memory-mapped where the format
    allows.

    Raises:
        ValueError: one line naming the file, when it is missing or unreadable, or when
            its keys or shapes do not match a ``model_type`` SAM.
    """
    _check_model_type(model_type)
    path = _check_checkpoint_file(checkpoint, model_type)
    obj = read_checkpoint(path, mmap=True)
    recorded = None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        args = obj.get("args")
        recorded = args.get("model_type") if isinstance(args, dict) else None
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path}: not a {model_type} SAM checkpoint (holds a {type(obj).__name__}, "
            "not a state dict)"
        )
    state = {k: v for k, v in without_ddp_prefix(obj).items() if k not in _IGNORED_KEYS}
    mismatch = state_dict_mismatch(state, model_type)
    if mismatch:
        note = f"; it records model_type {recorded!r}" if recorded else ""
        raise ValueError(f"{path}: not a {model_type} SAM checkpoint ({mismatch}{note})")
    return state


def load_sam_weights(model: nn.Module, checkpoint: str | Path, model_type: str) -> None:
    """Load SAM weights into ``model`` (a ``model_type`` ``Sam`` or :class:`BudSAM`), in
    place; the checkpoint layouts of :func:`sam_state_dict`.

    Raises:
        ValueError: naming the file, when it is missing or unreadable, or when its
            keys or shapes do not match a ``model_type`` SAM (``model`` is then untouched).
    """
    model.load_state_dict(sam_state_dict(checkpoint, model_type), strict=True)
