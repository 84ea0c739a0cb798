"""The segmentation loss of MedSAM/BudSAM: Dice + binary cross-entropy on logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DICE_REDUCTIONS = ("sample", "batch", "nonempty")
DICE_SMOOTH = 1e-5  # added to the numerator and the denominator, as MONAI's DiceLoss


def squared_dice_loss(logits: torch.Tensor, target: torch.Tensor, pool_batch: bool) -> torch.Tensor:
    """``1 - (2 sum(p t) + s) / (sum(p^2) + sum(t^2) + s)`` with ``p = sigmoid(logits)``.

    MONAI's ``DiceLoss(sigmoid=True, squared_pred=True)`` for one channel: a value per
    image ``(B,)``, or one for the whole batch ``(1,)`` with ``pool_batch``.
    """
    probability = torch.sigmoid(logits)
    dims = tuple(range(0 if pool_batch else 1, logits.ndim))
    intersection = (probability * target).sum(dims)
    denominator = (probability * probability).sum(dims) + (target * target).sum(dims)
    return (1 - (2 * intersection + DICE_SMOOTH) / (denominator + DICE_SMOOTH)).reshape(-1)


class DiceBCELoss(nn.Module):
    """``DiceLoss(sigmoid, squared_pred, mean) + BCEWithLogitsLoss(mean)``.

    Takes logits ``(B, 1, H, W)`` and a target in [0, 1] of the same shape ({0, 1}
    masks, or soft masks whose values are each pixel's foreground fraction).

    ``dice`` says how the Dice term treats the batch:

    - ``"sample"`` (the reference): each image's Dice, averaged. An image with an
      empty target then costs ~1 unless every probability is ~0, whatever the
      rest of the batch does (time tiles without birdsong are common).
    - ``"batch"``: intersection and sums pooled over the batch before the ratio
      (nnU-Net's "batch Dice"); empty targets only add their false positives.
      Large objects weigh more than small ones.
    - ``"nonempty"``: each image's Dice, averaged over the images whose target has
      foreground (0 when none has); empty targets are left to the cross-entropy.
      Every object weighs the same, whatever its size.
    """

    def __init__(self, dice: str = "sample") -> None:
        super().__init__()
        if dice not in DICE_REDUCTIONS:
            raise ValueError(f"unknown Dice reduction {dice!r}; expected one of {DICE_REDUCTIONS}")
        self.reduction = dice
        self.bce = nn.BCEWithLogitsLoss(reduction="mean")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        dice = squared_dice_loss(logits, target, pool_batch=self.reduction == "batch")
        if self.reduction == "nonempty":
            has_foreground = target.flatten(1).sum(1) > 0
            dice = (dice * has_foreground).sum() / has_foreground.sum().clamp(min=1)
        else:
            dice = dice.mean()
        return dice + self.bce(logits, target)


class BCELoss(nn.Module):
    """``BCEWithLogitsLoss(mean)`` alone, on logits ``(B, 1, H, W)`` and a target in [0, 1]."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def training_loss(name: str, dice: str = "sample") -> nn.Module:
    """The loss ``--loss`` names: ``dice_bce`` (:class:`DiceBCELoss` with the ``dice``
    reduction) or ``bce`` (:class:`BCELoss`)."""
    if name == "bce":
        return BCELoss()
    if name == "dice_bce":
        return DiceBCELoss(dice)
    raise ValueError(f"unknown loss {name!r}; expected dice_bce or bce")
