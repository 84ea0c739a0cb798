"""The segmentation loss of MedSAM/BudSAM: Dice + binary cross-entropy on logits."""

from __future__ import annotations

import monai
import torch
from torch import nn


class DiceBCELoss(nn.Module):
    """``DiceLoss(sigmoid, squared_pred, mean) + BCEWithLogitsLoss(mean)``.

    Takes logits ``(B, 1, H, W)`` and a {0, 1} target of the same shape.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dice = monai.losses.DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")
        self.bce = nn.BCEWithLogitsLoss(reduction="mean")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        return self.dice(logits, target) + self.bce(logits, target)
