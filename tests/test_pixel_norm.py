"""How images reach the image encoder: SAM's pixel normalisation, chosen at training,
recorded in the checkpoint, used again at inference, and part of the embedding-cache key."""

from __future__ import annotations

import pytest
import torch

from utils.common.checkpoint_io import save_checkpoint
from utils.inference.segmenter import load_model
from utils.model.budsam import BudSAM
from utils.model.sam import build_sam
from utils.train.args import parse_args
from utils.train.checkpointer import RESUME_KEYS, check_resume


def test_sam_normalisation_is_the_packages_own_preprocessing():
    sam = build_sam("vit_tiny", seed=0)
    images = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        expected = sam.image_encoder(torch.stack([sam.preprocess(x * 255.0) for x in images]))
        normalised = BudSAM(sam, pixel_norm="sam").encode(images)
        plain = BudSAM(sam, pixel_norm="none").encode(images)
    torch.testing.assert_close(normalised, expected)
    torch.testing.assert_close(plain, sam.image_encoder(images))  # the reference's input
    assert not torch.allclose(normalised, plain)
    assert "pixel_mean" not in BudSAM(sam).state_dict()  # the Sam's keys only
    with pytest.raises(ValueError, match="unknown pixel_norm"):
        BudSAM(sam, pixel_norm="imagenet")


@pytest.mark.parametrize(
    ("parts", "expected"),
    [("mask_decoder", "sam"), ("image_encoder,mask_decoder", "none")],
    ids=["frozen encoder", "trained encoder"],
)
def test_auto_normalises_exactly_when_the_encoder_is_frozen(parts, expected):
    args = parse_args(["--device", "cpu", "--train_parts", parts, "-model_type", "vit_tiny"])
    assert args.pixel_norm == expected
    forced = parse_args(["--device", "cpu", "--train_parts", parts, "--pixel_norm", "none"])
    assert forced.pixel_norm == "none"


def test_inference_normalises_as_the_checkpoint_was_trained(tmp_path):
    weights = build_sam("vit_tiny", seed=0).state_dict()
    cases = {
        "sam.pth": ({"model_type": "vit_tiny", "pixel_norm": "sam"}, "sam"),
        "none.pth": ({"model_type": "vit_tiny", "pixel_norm": "none"}, "none"),
        "older.pth": ({"model_type": "vit_tiny"}, "none"),  # trained before the option
    }
    for name, (args, expected) in cases.items():
        save_checkpoint({"model": weights, "args": args}, tmp_path / name)
        model, _ = load_model(str(tmp_path / name))
        assert model.pixel_norm == expected, name
    torch.save(weights, tmp_path / "official.pth")  # an official SAM file records nothing
    model, _ = load_model(str(tmp_path / "official.pth"), model_type="vit_tiny")
    assert model.pixel_norm == "sam"


def test_a_resume_with_another_normalisation_is_refused(tmp_path):
    args = parse_args(["--device", "cpu", "-model_type", "vit_tiny", "--pixel_norm", "sam"])
    checkpoint = dict.fromkeys(RESUME_KEYS, {})
    checkpoint["model"] = build_sam("vit_tiny", seed=0).state_dict()
    checkpoint["args"] = {"model_type": "vit_tiny", "train_parts": '["mask_decoder"]'}
    save_checkpoint(checkpoint, tmp_path / "latest.pth")
    with pytest.raises(ValueError, match="trained with --pixel_norm none, not sam"):
        check_resume(args, tmp_path / "latest.pth")
