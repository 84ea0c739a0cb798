"""utils.train.losses: the Dice + BCE loss, per sample or pooled over the batch."""

from __future__ import annotations

import pytest
import torch

from utils.train.losses import DICE_REDUCTIONS, DICE_SMOOTH, DiceBCELoss, squared_dice_loss


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """A confident, correct prediction of one small object, and an empty tile predicted
    with small (but not vanishing) probabilities everywhere."""
    target = torch.zeros(2, 1, 32, 32)
    target[0, 0, 10:20, 10:20] = 1.0
    logits = torch.where(target > 0, 8.0, -8.0)
    logits[1] = -6.0  # p ~ 0.0025 on every pixel of the empty tile
    return logits, target


def test_sample_dice_charges_an_almost_empty_prediction_of_an_empty_tile_fully():
    logits, target = _batch()
    loss = DiceBCELoss("sample")
    # The empty tile's Dice is ~0 (its loss ~1) although no pixel is above 0.003.
    assert loss(logits[1:], target[1:]).item() == pytest.approx(1.0, abs=0.01)
    assert loss(logits, target).item() > 0.49


def test_batch_dice_pools_the_batch_so_an_empty_tile_costs_its_false_positives_only():
    logits, target = _batch()
    pooled = DiceBCELoss("batch")(logits, target).item()
    assert pooled < 0.05
    # A wrong prediction still costs: flip the object tile's logits.
    assert DiceBCELoss("batch")(-logits, target).item() > 1.0
    # Identical to per-sample Dice when the batch holds one image.
    one = (logits[:1], target[:1])
    assert DiceBCELoss("batch")(*one).item() == pytest.approx(DiceBCELoss("sample")(*one).item())


def test_soft_targets_are_accepted_and_minimised_by_their_own_probabilities():
    target = torch.full((1, 1, 8, 8), 0.25)
    at_target = torch.logit(target)
    loss = DiceBCELoss("batch")
    assert loss(at_target, target).item() < loss(at_target + 1.0, target).item()
    assert loss(at_target, target).item() < loss(at_target - 1.0, target).item()


def test_unknown_dice_reduction_is_refused():
    with pytest.raises(ValueError, match="unknown Dice reduction 'image'"):
        DiceBCELoss("image")


def test_nonempty_dice_averages_the_images_with_foreground_only():
    logits, target = _batch()
    nonempty = DiceBCELoss("nonempty")
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target).item()
    object_dice = DiceBCELoss("sample")(logits[:1], target[:1]).item() - (
        torch.nn.functional.binary_cross_entropy_with_logits(logits[:1], target[:1]).item()
    )
    # The empty tile adds nothing to the Dice term, only to the cross-entropy.
    assert nonempty(logits, target).item() == pytest.approx(object_dice + bce, abs=1e-6)
    # A batch of empty tiles: cross-entropy only.
    empty_logits, empty_target = logits[1:], target[1:]
    only_bce = torch.nn.functional.binary_cross_entropy_with_logits(empty_logits, empty_target)
    assert nonempty(empty_logits, empty_target).item() == pytest.approx(only_bce.item())
    # Small and large objects weigh the same: each image's Dice is averaged.
    two = torch.zeros(2, 1, 32, 32)
    two[0, 0, :2, :2] = 1.0  # 4 pixels
    two[1, 0, :, :16] = 1.0  # 512 pixels
    missed_small = torch.where(two > 0, 8.0, -8.0)
    missed_small[0] = -8.0
    assert nonempty(missed_small, two).item() > 0.49  # half the images wholly missed
    assert DiceBCELoss("batch")(missed_small, two).item() < 0.05


def test_squared_dice_by_hand():
    # sigmoid(0) = 0.5 everywhere; 2 of 4 pixels are foreground.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # 2 * (0.5 + 0.5) / (4 * 0.25 + 2) = 2 / 3
    expected = 1 - (2.0 + DICE_SMOOTH) / (3.0 + DICE_SMOOTH)
    assert squared_dice_loss(logits, target, pool_batch=False).item() == pytest.approx(expected)


@pytest.mark.parametrize("dice", DICE_REDUCTIONS)
def test_the_dice_term_equals_monais_dice_loss(dice):
    import monai  # requirements-dev.txt: this check runs wherever the tests do

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 16, 16, generator=generator) * 3
    target = (torch.rand(3, 1, 16, 16, generator=generator) > 0.6).float()
    target[1] = 0  # an empty target
    reference = monai.losses.DiceLoss(
        sigmoid=True, squared_pred=True, batch=dice == "batch",
        reduction="none" if dice == "nonempty" else "mean",
    )(logits, target)  # fmt: skip
    if dice == "nonempty":
        reference = reference.flatten()[[0, 2]].mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    ours = DiceBCELoss(dice)(logits, target) - bce
    assert ours.item() == pytest.approx(reference.item(), abs=1e-6)
