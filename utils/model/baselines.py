"""Trained segmentation baselines with BudSAM's calling interface.

Three networks that map a spectrogram image to bird-sound mask logits, each wrapped in
:class:`BaselineSegmenter` so that ``model(images, boxes)`` takes images
``(B, 3, S, S)`` in [0, 1] and returns logits ``(B, 1, S, S)``, like
:class:`utils.model.budsam.BudSAM`. They take no prompt: boxes are accepted and ignored.

* ``custom_cnn``: the model of "Custom Image Segmentation Model for Visual Bird Sound
  Denoising": a ResNet-34 encoder (stride 32) and a decoder of five transposed-conv
  stages back to full resolution (trained there on 512 x 512 inputs with BCE).
* ``unet``: a classic U-Net (Ronneberger et al. 2015) with batch norm and padded convs.
* ``deeplabv3``: torchvision's DeepLabv3 with a ResNet-50 backbone (output stride 8).

Images reach the networks as they are (no ImageNet normalisation), as BudSAM's
``pixel_norm="none"`` does; batch norm absorbs the offset when training.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from utils.common.checkpoint_io import read_checkpoint, state_mismatch, without_ddp_prefix

BASELINE_TYPES = ("custom_cnn", "unet", "deeplabv3")
# Side S of the square input each type is trained on by default.
DEFAULT_INPUT_SIZE = {"custom_cnn": 512, "unet": 256, "deeplabv3": 256}
# The training loss each type uses by default (the custom-CNN paper used plain BCE).
DEFAULT_LOSS = {"custom_cnn": "bce", "unet": "dice_bce", "deeplabv3": "dice_bce"}
# Every input side must be a multiple of this (the deepest stride of the networks).
SIZE_MULTIPLE = 32

_BACKBONE_NAMES = {"custom_cnn": "ResNet-34", "deeplabv3": "ResNet-50"}


def _check_model_type(model_type: str) -> None:
    if model_type not in BASELINE_TYPES:
        raise ValueError(f"unknown baseline type {model_type!r}; expected one of {BASELINE_TYPES}")


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """conv3x3 (padding 1, no bias) + BatchNorm + ReLU; keeps the spatial size."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two :func:`_conv_bn_relu` blocks, ``cin`` -> ``cout`` -> ``cout`` channels."""
    return nn.Sequential(_conv_bn_relu(cin, cout), _conv_bn_relu(cout, cout))


class CustomCNN(nn.Module):
    """ResNet-34 encoder + transposed-conv decoder: ``(B, 3, S, S)`` -> ``(B, 1, S, S)``.

    ``encoder`` is torchvision's ResNet-34 without its average pool and fully connected
    layer, its children under their torchvision names (so an ImageNet state dict less
    ``fc.*`` loads into it strictly); it outputs 512 channels at S/32. ``decoder`` has
    one stage per width in ``widths``: ConvTranspose2d(2, stride 2) doubling the
    resolution, then two conv3x3+BN+ReLU blocks; five stages bring S/32 back to S.
    ``head`` is a 1x1 conv to one logit channel.
    """

    def __init__(self, widths: tuple[int, ...] = (256, 128, 64, 32, 16)) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"CustomCNN needs 5 decoder widths (S/32 -> S), got {widths}")
        resnet = torchvision.models.resnet34(weights=None)
        self.encoder = nn.Sequential(
            OrderedDict(
                (name, child)
                for name, child in resnet.named_children()
                if name not in ("avgpool", "fc")
            )
        )
        stages = []
        cin = 512
        for cout in widths:
            stages.append(
                nn.Sequential(
                    nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2),
                    _double_conv(cout, cout),
                )
            )
            cin = cout
        self.decoder = nn.Sequential(*stages)
        self.head = nn.Conv2d(cin, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


class UNet(nn.Module):
    """A classic U-Net: ``(B, 3, S, S)`` -> ``(B, 1, S, S)`` logits, S a multiple of 16.

    Four down steps (maxpool 2, two conv3x3+BN+ReLU) and four up steps (ConvTranspose2d
    2x2 stride 2, concatenation with the skip of the same resolution, two
    conv3x3+BN+ReLU), widths ``base * (1, 2, 4, 8, 16)``. Ronneberger et al. used
    ``base=64``, unpadded convs and no batch norm; here ``base=32`` keeps a CPU budget
    and padded convs keep the output at the input size.
    """

    def __init__(self, base: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        if base < 1:
            raise ValueError(f"base width must be positive, got {base}")
        widths = [base * 2**i for i in range(5)]
        self.inc = _double_conv(in_channels, widths[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _double_conv(widths[i], widths[i + 1])) for i in range(4)
        )
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2)
            for i in reversed(range(4))
        )
        self.up_convs = nn.ModuleList(
            _double_conv(2 * widths[i], widths[i]) for i in reversed(range(4))
        )
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up, conv in zip(self.ups, self.up_convs, strict=True):
            x = conv(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


class _DeepLabOut(nn.Module):
    """torchvision's DeepLabv3 returning its ``"out"`` logits (already at input size)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = torchvision.models.segmentation.deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=1, aux_loss=False
        )

    @property
    def backbone(self) -> nn.Module:
        """The ResNet-50 (an IntermediateLayerGetter: resnet keys less fc and avgpool)."""
        return self.model.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


class BaselineSegmenter(nn.Module):
    """A baseline network behind BudSAM's interface; state dict keys are ``network.*``.

    ``forward(images, boxes=None, embeddings=None)`` maps images ``(B, 3, S, S)`` in
    [0, 1] (S = ``img_size``) to mask logits ``(B, 1, S, S)``. Boxes are ignored;
    ``embeddings`` exist for BudSAM's signature only and must be None.
    """

    def __init__(self, network: nn.Module, model_type: str, img_size: int) -> None:
        super().__init__()
        _check_model_type(model_type)
        self.network = network
        self.model_type = model_type
        self.img_size: int = int(img_size)

    def forward(
        self,
        images: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits ``(B, 1, S, S)`` for images ``(B, 3, S, S)``; boxes are ignored."""
        if embeddings is not None:
            raise ValueError(f"{self.model_type} takes images, not cached embeddings")
        s = self.img_size
        if images is None or images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            shape = None if images is None else tuple(images.shape)
            raise ValueError(f"images must be (B, 3, {s}, {s}), got {shape}")
        return self.network(images)


def _backbone(network: nn.Module, model_type: str) -> nn.Module:
    """The ImageNet-initialisable part of ``network``: its ResNet encoder or backbone."""
    if model_type == "custom_cnn":
        return network.encoder
    if model_type == "deeplabv3":
        return network.backbone
    raise ValueError(f"{model_type} has no pretrained backbone")


def load_backbone(network: nn.Module, model_type: str, path: str | Path) -> None:
    """Load a torchvision ImageNet ResNet state dict file into ``network``'s backbone.

    The file holds the state dict itself or a dict with it under ``"state_dict"`` or
    ``"model"``; ``module.`` prefixes and the ``fc.*`` keys are dropped; the rest must
    fit the backbone exactly (ResNet-34 for custom_cnn, ResNet-50 for deeplabv3).

    Raises:
        ValueError: one line naming the file, when it cannot be read or does not fit.
    """
    target = _backbone(network, model_type)
    what = f"torchvision {_BACKBONE_NAMES[model_type]} (ImageNet) state dict for {model_type}"
    obj = read_checkpoint(path)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a {what} (holds a {type(obj).__name__})")
    state = {k: v for k, v in without_ddp_prefix(obj).items() if not k.startswith("fc.")}
    mismatch = state_mismatch(state, target.state_dict())
    if mismatch:
        raise ValueError(f"{path}: not a {what}: {mismatch}")
    target.load_state_dict(state, strict=True)


def _build_network(model_type: str) -> nn.Module:
    if model_type == "custom_cnn":
        return CustomCNN()
    if model_type == "unet":
        return UNet()
    return _DeepLabOut()


def build_baseline(
    model_type: str,
    img_size: int | None = None,
    backbone_checkpoint: str | Path | None = None,
    seed: int = 0,
) -> BaselineSegmenter:
    """A randomly initialised (from ``seed``) baseline of ``model_type`` for ``img_size``
    inputs (default :data:`DEFAULT_INPUT_SIZE`), in eval() mode like ``build_sam``.

    ``backbone_checkpoint``, a torchvision ImageNet ResNet state dict file
    (``resnet34-*.pth`` for custom_cnn, ``resnet50-*.pth`` for deeplabv3), replaces the
    encoder's random weights (see :func:`load_backbone`). Building leaves the global
    torch RNG as it was.

    Raises:
        ValueError: for an unknown type, an ``img_size`` that is not a positive multiple
            of 32, a backbone for unet, or a backbone file that cannot be read or does
            not fit.
    """
    _check_model_type(model_type)
    if img_size is None:
        img_size = DEFAULT_INPUT_SIZE[model_type]
    if (
        isinstance(img_size, bool)
        or not isinstance(img_size, int)
        or img_size <= 0
        or img_size % SIZE_MULTIPLE
    ):
        raise ValueError(
            f"img_size must be a positive multiple of {SIZE_MULTIPLE} for {model_type}, "
            f"got {img_size!r}"
        )
    if backbone_checkpoint is not None and model_type == "unet":
        raise ValueError("unet has no pretrained backbone: drop the backbone checkpoint")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _build_network(model_type)
    if backbone_checkpoint is not None:
        load_backbone(network, model_type, backbone_checkpoint)
    return BaselineSegmenter(network, model_type, img_size).eval()


def load_baseline_state(model: BaselineSegmenter, state: Mapping[str, Any], source: str) -> None:
    """Load a whole :class:`BaselineSegmenter` state dict into ``model``, strictly, in
    place; DDP ``module.`` prefixes are stripped.

    Raises:
        ValueError: one line naming ``source``, when keys or shapes do not fit (counts
            of missing, unexpected and mismatched keys, with the first of each).
    """
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{source}: not a {model.model_type} state dict (holds a {type(state).__name__})"
        )
    state = without_ddp_prefix(state)
    mismatch = state_mismatch(state, model.state_dict())
    if mismatch:
        raise ValueError(f"{source}: not a {model.model_type} baseline state dict: {mismatch}")
    model.load_state_dict(state, strict=True)


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (trainable or not) in ``model``."""
    return sum(p.numel() for p in model.parameters())
