"""The segmentation loss of MedSAM/BudSAM: Dice + binary cross-entropy on logits."""

from __future__ import annotations

import monai
import torch
from torch import nn

DICE_REDUCTIONS = ("sample", "batch", "nonempty")


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
        self.dice = monai.losses.DiceLoss(
            sigmoid=True,
            squared_pred=True,
            reduction="none" if dice == "nonempty" else "mean",
            batch=dice == "batch",
        )
        self.bce = nn.BCEWithLogitsLoss(reduction="mean")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        dice = self.dice(logits, target)
        if self.reduction == "nonempty":
            has_foreground = target.flatten(1).sum(1) > 0
            dice = (dice.flatten() * has_foreground).sum() / has_foreground.sum().clamp(min=1)
        return dice + self.bce(logits, target)
