"""The trained segmentation baselines (utils/model/baselines.py): shapes, gradients,
seeded builds, ImageNet backbone loading and state-dict round trips, on small CPU inputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from utils.model import baselines
from utils.model.baselines import (
    BASELINE_TYPES,
    DEFAULT_INPUT_SIZE,
    DEFAULT_LOSS,
    BaselineSegmenter,
    build_baseline,
    load_baseline_state,
    parameter_count,
)

SIZES = (64, 96)
RESNET34_NO_FC_PARAMS = 21_284_672


@pytest.fixture(scope="module")
def models() -> dict[str, BaselineSegmenter]:
    """One seed-0 baseline of each type for 64 x 64 inputs."""
    return {t: build_baseline(t, 64) for t in BASELINE_TYPES}


def first_conv(model: BaselineSegmenter) -> torch.nn.Conv2d:
    net = model.network
    return {
        "custom_cnn": lambda: net.encoder.conv1,
        "unet": lambda: net.inc[0][0],
        "deeplabv3": lambda: net.backbone.conv1,
    }[model.model_type]()


def test_tables_cover_every_type():
    assert set(DEFAULT_INPUT_SIZE) == set(DEFAULT_LOSS) == set(BASELINE_TYPES)
    assert DEFAULT_INPUT_SIZE["custom_cnn"] == 512 and DEFAULT_LOSS["custom_cnn"] == "bce"
    for model_type in BASELINE_TYPES:
        assert DEFAULT_INPUT_SIZE[model_type] % 32 == 0


@pytest.mark.parametrize("s", SIZES)
@pytest.mark.parametrize("model_type", BASELINE_TYPES)
def test_output_shape_finite_and_gradient_reaches_first_conv(model_type, s):
    model = build_baseline(model_type, s).train()
    images = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(s))
    logits = model(images, torch.tensor([[0.0, 0.0, s - 1.0, s - 1.0]] * 2))
    assert logits.shape == (2, 1, s, s)
    assert torch.isfinite(logits).all()
    logits.pow(2).mean().backward()
    grad = first_conv(model).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_default_size_and_wrapper_attributes(models):
    model = build_baseline("unet")
    assert model.img_size == DEFAULT_INPUT_SIZE["unet"] and model.model_type == "unet"
    assert not model.training  # eval() like build_sam
    assert all(k.startswith("network.") for k in models["unet"].state_dict())


def test_forward_rejects_bad_inputs(models):
    model = models["unet"]
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 64, 64\)"):
        model(torch.rand(1, 3, 32, 32), None)
    with pytest.raises(ValueError, match="images must be"):
        model(torch.rand(3, 64, 64), None)
    with pytest.raises(ValueError, match="embeddings"):
        model(None, None, embeddings=torch.rand(1, 8, 4, 4))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))  # boxes are optional and ignored
    assert out.shape == (1, 1, 64, 64)


@pytest.mark.parametrize("model_type", BASELINE_TYPES)
def test_seeded_builds_are_reproducible_and_leave_the_rng_alone(model_type):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_baseline(model_type, 64, seed=1).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    b = build_baseline(model_type, 64, seed=1).state_dict()
    c = build_baseline(model_type, 64, seed=2).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("size", [0, -32, 48, 100, 64.0, True])
def test_img_size_must_be_a_positive_multiple_of_32(size):
    with pytest.raises(ValueError, match="multiple of 32"):
        build_baseline("unet", size)


def test_unknown_type_is_rejected():
    with pytest.raises(ValueError, match="unknown baseline type"):
        build_baseline("fcn")


def test_parameter_counts(models):
    for model in models.values():
        assert parameter_count(model) > 0
    encoder = models["custom_cnn"].network.encoder
    assert parameter_count(encoder) == RESNET34_NO_FC_PARAMS
    assert parameter_count(models["unet"].network) == parameter_count(baselines.UNet(base=32))
    assert parameter_count(baselines.UNet(base=16)) < parameter_count(models["unet"])


def _save_resnet(tmp_path, name, seed=7, wrap=None):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = getattr(torchvision.models, name)(weights=None).state_dict()
    path = tmp_path / f"{name}-test.pth"
    torch.save(state if wrap is None else {wrap: state}, path)
    return path, state


def _assert_one_line_error(excinfo, path):
    message = str(excinfo.value)
    assert str(path) in message and "\n" not in message
    return message


def test_custom_cnn_loads_a_resnet34_backbone(tmp_path):
    path, state = _save_resnet(tmp_path, "resnet34")
    model = build_baseline("custom_cnn", 64, backbone_checkpoint=path)
    assert torch.equal(model.network.encoder.conv1.weight, state["conv1.weight"])
    assert torch.equal(
        model.network.encoder.layer4[2].bn2.running_var, state["layer4.2.bn2.running_var"]
    )
    # A dict holding the state dict under "state_dict" loads too.
    wrapped, _ = _save_resnet(tmp_path, "resnet34", wrap="state_dict")
    again = build_baseline("custom_cnn", 64, backbone_checkpoint=wrapped)
    assert torch.equal(again.network.encoder.conv1.weight, state["conv1.weight"])


def test_custom_cnn_rejects_other_backbones(tmp_path):
    path, _ = _save_resnet(tmp_path, "resnet18")
    with pytest.raises(ValueError) as excinfo:
        build_baseline("custom_cnn", 64, backbone_checkpoint=path)
    message = _assert_one_line_error(excinfo, path)
    assert "ResNet-34" in message and "missing," in message

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError) as excinfo:
        build_baseline("custom_cnn", 64, backbone_checkpoint=junk)
    _assert_one_line_error(excinfo, junk)

    absent = tmp_path / "absent.pth"
    with pytest.raises(ValueError) as excinfo:
        build_baseline("custom_cnn", 64, backbone_checkpoint=absent)
    _assert_one_line_error(excinfo, absent)


def test_unet_has_no_backbone(tmp_path):
    with pytest.raises(ValueError, match="unet has no pretrained backbone"):
        build_baseline("unet", 64, backbone_checkpoint=tmp_path / "resnet34.pth")


def test_deeplabv3_loads_a_resnet50_backbone_and_rejects_resnet34(tmp_path):
    path, state = _save_resnet(tmp_path, "resnet50", wrap="model")
    model = build_baseline("deeplabv3", 64, backbone_checkpoint=path)
    backbone = model.network.backbone
    assert torch.equal(backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(backbone.layer4[0].conv2.weight, state["layer4.0.conv2.weight"])
    del state, model

    wrong, _ = _save_resnet(tmp_path, "resnet34")
    with pytest.raises(ValueError) as excinfo:
        build_baseline("deeplabv3", 64, backbone_checkpoint=wrong)
    message = _assert_one_line_error(excinfo, wrong)
    assert "ResNet-50" in message and "shape mismatches" in message


@pytest.mark.parametrize("prefix", ["", "module."])
def test_state_round_trip_gives_equal_outputs(models, prefix):
    source = models["custom_cnn"]
    state = {prefix + k: v.clone() for k, v in source.state_dict().items()}
    target = build_baseline("custom_cnn", 64, seed=5)
    load_baseline_state(target, state, "round-trip.pth")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(source(images), target(images))


def test_state_of_another_type_is_rejected(models):
    with pytest.raises(ValueError) as excinfo:
        load_baseline_state(models["custom_cnn"], models["unet"].state_dict(), "unet_best.pth")
    message = str(excinfo.value)
    assert message.startswith("unet_best.pth: ") and "\n" not in message
    assert "custom_cnn" in message and "missing," in message and "unexpected" in message

    state = dict(models["unet"].state_dict())
    state["network.head.weight"] = torch.zeros(2, 32, 1, 1)
    with pytest.raises(ValueError, match="1 shape mismatches") as excinfo:
        load_baseline_state(models["unet"], state, "bad_head.pth")
    assert "\n" not in str(excinfo.value)
    with pytest.raises(ValueError, match="not a unet state dict"):
        load_baseline_state(models["unet"], [1, 2], "list.pth")
