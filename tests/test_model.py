"""utils.model (sam, budsam): building SAMs, loading checkpoints, batched decoding and BudSAM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from utils.model import budsam
from utils.model import sam as model_sam

TINY = 256


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run these small models on one thread: on a busy 2-core machine two threads wait on
    each other and a forward pass gets ~10x slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny() -> Sam:
    return model_sam.build_sam("vit_tiny", seed=0)


def _boxes(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` valid random boxes (x0, y0, x1, y1) inside a TINY x TINY image."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.rand(n, 2, 2, generator=g) * (TINY - 1)
    lo, hi = corners.min(dim=1).values, corners.max(dim=1).values
    return torch.cat([lo, hi], dim=1)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_registry_types_and_input_sizes():
    assert model_sam.MODEL_TYPES == ("vit_tiny", "vit_tiny_p16x8", "vit_tiny_fast", "vit_b",
                                     "vit_l", "vit_h")  # fmt: skip
    sizes = [model_sam.input_size(t) for t in model_sam.MODEL_TYPES]
    assert sizes == [256, 256, 256, 1024, 1024, 1024]
    assert sorted(model_sam.OFFICIAL_CHECKPOINT_URLS) == ["vit_b", "vit_h", "vit_l"]
    assert model_sam.OFFICIAL_CHECKPOINT_URLS["vit_b"].endswith("/sam_vit_b_01ec64.pth")
    with pytest.raises(ValueError, match="unknown model type 'vit_x'"):
        model_sam.input_size("vit_x")
    with pytest.raises(ValueError, match="unknown model type"):
        model_sam.build_sam("default")


def test_tiny_size_shapes_and_eval_mode(tiny):
    assert isinstance(tiny, Sam)
    assert not tiny.training
    n_params = sum(p.numel() for p in tiny.parameters())
    assert 1_000_000 < n_params < 10_000_000
    net = budsam.BudSAM(tiny)
    images = torch.rand(2, 3, TINY, TINY)
    boxes = _boxes(2)
    with torch.no_grad():
        embeddings = net.encode(images)
        low_res = net.decode(embeddings, boxes)
        logits = net(images, boxes)
    assert embeddings.shape == (2, 128, 16, 16)
    assert low_res.shape == (2, 1, 64, 64)
    assert logits.shape == (2, 1, TINY, TINY)
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, budsam.upsample(low_res, TINY))


@pytest.mark.parametrize("model_type", ["vit_tiny_p16x8", "vit_tiny_fast"])
def test_p16x8_variants_have_a_wider_grid_and_match_the_official_pipeline(model_type):
    sam = model_sam.build_sam(model_type, seed=0)
    assert sam.image_encoder.patch_embed.proj.kernel_size == (16, 8)
    blocks = sam.image_encoder.blocks
    if model_type == "vit_tiny_fast":  # two windowed blocks without relative positions
        assert len(blocks) == 2 and all(b.window_size == 8 for b in blocks)
        assert not any(b.attn.use_rel_pos for b in blocks)
    else:
        assert len(blocks) == 4 and [b.window_size for b in blocks] == [8, 0, 8, 0]
    assert 1_000_000 < sum(p.numel() for p in sam.parameters()) < 10_000_000
    net = budsam.BudSAM(sam)
    images, boxes = torch.rand(2, 3, TINY, TINY), _boxes(2, seed=3)
    with torch.no_grad():
        embeddings = net.encode(images)
        low_res = net.decode(embeddings, boxes)
        logits = net(images, boxes)
        assert embeddings.shape == (2, 128, 16, 32) and low_res.shape == (2, 1, 64, 128)
        assert logits.shape == (2, 1, TINY, TINY)
        for i in range(2):  # the package's own Sam modules, one sample at a time
            sparse, dense = sam.prompt_encoder(points=None, boxes=boxes[i : i + 1], masks=None)
            low, _ = sam.mask_decoder(
                sam.image_encoder(images[i : i + 1]), sam.prompt_encoder.get_dense_pe(),
                sparse, dense, False,
            )  # fmt: skip
            assert torch.allclose(low_res[i : i + 1], low, atol=1e-4)
    # Its state dict loads into another build of the same type, not into vit_tiny.
    other = model_sam.build_sam(model_type, seed=1)
    other.load_state_dict(net.state_dict(), strict=True)
    assert _same_weights(other, sam)
    with pytest.raises(RuntimeError):
        model_sam.build_sam("vit_tiny").load_state_dict(net.state_dict(), strict=True)


def test_same_seed_same_weights_and_global_rng_untouched():
    state = torch.get_rng_state()
    a, b = model_sam.build_sam("vit_tiny", seed=3), model_sam.build_sam("vit_tiny", seed=3)
    c = model_sam.build_sam("vit_tiny", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


def test_batched_decoding_equals_official_per_sample(tiny):
    torch.manual_seed(0)
    emb = torch.randn(3, 128, 16, 16)
    boxes = _boxes(3, seed=1)
    with torch.no_grad():
        sparse, dense = tiny.prompt_encoder(points=None, boxes=boxes[:, None, :], masks=None)
        pe = tiny.prompt_encoder.get_dense_pe()
        masks, iou = budsam.batched_mask_decoder(tiny.mask_decoder, emb, pe, sparse, dense)
        assert masks.shape == (3, 1, 64, 64) and iou.shape == (3, 1)
        for i in range(3):
            ref_masks, ref_iou = tiny.mask_decoder(
                image_embeddings=emb[i : i + 1],
                image_pe=pe,
                sparse_prompt_embeddings=sparse[i : i + 1],
                dense_prompt_embeddings=dense[i : i + 1],
                multimask_output=False,
            )
            assert torch.allclose(masks[i : i + 1], ref_masks, atol=1e-5)
            assert torch.allclose(iou[i : i + 1], ref_iou, atol=1e-5)
    assert not torch.allclose(masks[0], masks[1], atol=1e-3)  # samples really differ


def test_budsam_forward_equals_official_pipeline(tiny):
    net = budsam.BudSAM(tiny)
    images, boxes = torch.rand(2, 3, TINY, TINY), _boxes(2, seed=2)
    with torch.no_grad():
        logits = net(images, boxes)
        emb = tiny.image_encoder(images)
        for i in range(2):
            sparse, dense = tiny.prompt_encoder(points=None, boxes=boxes[i : i + 1], masks=None)
            low, _ = tiny.mask_decoder(
                emb[i : i + 1], tiny.prompt_encoder.get_dense_pe(), sparse, dense, False
            )
            ref = F.interpolate(low, size=(TINY, TINY), mode="bilinear", align_corners=False)
            assert torch.allclose(logits[i : i + 1], ref, atol=1e-4)


def test_budsam_state_dict_loads_into_package_sam(tiny):
    net = budsam.BudSAM(tiny)
    assert list(net.state_dict().keys()) == list(tiny.state_dict().keys())
    other = model_sam.build_sam("vit_tiny", seed=1)
    assert not _same_weights(other, tiny)
    other.load_state_dict(net.state_dict(), strict=True)
    assert _same_weights(other, tiny)


def _requires_grad(module: torch.nn.Module) -> set[bool]:
    """Trainability of a part's parameters (the decoder's unused IoU head left out)."""
    return {
        p.requires_grad
        for name, p in module.named_parameters()
        if not name.startswith("iou_prediction_head.")
    }


def test_set_trainable():
    net = budsam.BudSAM(model_sam.build_sam("vit_tiny"))
    assert net.trainable_parts == ("mask_decoder",)
    assert _requires_grad(net.mask_decoder) == {True}
    assert _requires_grad(net.image_encoder) == {False}
    assert _requires_grad(net.prompt_encoder) == {False}

    net(torch.rand(1, 3, TINY, TINY), _boxes(1)).mean().backward()
    assert all(p.grad is None for p in net.image_encoder.parameters())
    assert all(p.grad is None for p in net.prompt_encoder.parameters())
    assert net.mask_decoder.output_upscaling[0].weight.grad is not None
    # Every trainable parameter gets a gradient, so DDP needs no unused-parameter search.
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in net.mask_decoder.iou_prediction_head.parameters())

    net.set_trainable("image_encoder,mask_decoder")
    assert net.trainable_parts == ("image_encoder", "mask_decoder")
    assert _requires_grad(net.image_encoder) == _requires_grad(net.mask_decoder) == {True}
    assert _requires_grad(net.prompt_encoder) == {False}

    net.set_trainable(["image_encoder"])
    assert _requires_grad(net.image_encoder) == {True}
    assert _requires_grad(net.mask_decoder) == {False}

    with pytest.raises(ValueError, match="unknown model part 'decoder'"):
        net.set_trainable(["decoder"])
    with pytest.raises(ValueError, match="prompt_encoder"):
        net.set_trainable("prompt_encoder,mask_decoder")
    with pytest.raises(ValueError, match="unknown model part"):
        budsam.BudSAM(model_sam.build_sam("vit_tiny"), trainable=("mask_decoder", "neck"))


def test_bad_input_shapes(tiny):
    net = budsam.BudSAM(tiny)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 256, 256\)"):
        net.encode(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match=r"boxes must be \(2, 4\)"):
        net.decode(torch.rand(2, 128, 16, 16), _boxes(3))


@pytest.mark.parametrize("layout", ["official", "budsam", "ddp", "legacy_format"])
def test_load_sam_weights_round_trip(tiny, tmp_path, layout):
    state = tiny.state_dict()
    obj: object = state
    if layout == "budsam":
        obj = {"model": state, "args": {"model_type": "vit_tiny"}, "epoch": 3}
    elif layout == "ddp":
        obj = {"model": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=(layout != "legacy_format"))

    sam = model_sam.build_sam("vit_tiny", seed=9)
    assert not _same_weights(sam, tiny)
    model_sam.load_sam_weights(sam, path, "vit_tiny")
    assert _same_weights(sam, tiny)

    net = budsam.BudSAM(model_sam.build_sam("vit_tiny", seed=9))
    model_sam.load_sam_weights(net, str(path), "vit_tiny")
    assert _same_weights(net, tiny)
    assert _same_weights(model_sam.build_sam("vit_tiny", checkpoint=path, seed=9), tiny)
    assert model_sam.checkpoint_model_type(path) == ("vit_tiny" if layout == "budsam" else None)


def test_truncated_checkpoint_names_file(tiny, tmp_path):
    path = tmp_path / "broken.pth"
    torch.save(tiny.state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"broken\.pth: cannot read checkpoint") as err:
        model_sam.load_sam_weights(model_sam.build_sam("vit_tiny"), path, "vit_tiny")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"broken\.pth: cannot read checkpoint"):
        model_sam.checkpoint_model_type(path)


def test_wrong_architecture_checkpoint_names_file(tiny, tmp_path):
    state = dict(tiny.state_dict())
    state.pop("mask_decoder.iou_token.weight")
    state["image_encoder.pos_embed"] = torch.zeros(1, 64, 64, 192)
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "other_arch.pth"
    torch.save({"model": state, "args": {"model_type": "vit_b"}}, path)
    sam = model_sam.build_sam("vit_tiny", seed=5)
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    with pytest.raises(ValueError) as err:
        model_sam.load_sam_weights(sam, path, "vit_tiny")
    message = str(err.value)
    assert message.startswith(f"{path}: not a vit_tiny SAM checkpoint")
    assert "1 missing, 1 unexpected, 1 shape mismatches" in message
    assert "image_encoder.pos_embed (1, 64, 64, 192) vs (1, 16, 16, 192)" in message
    assert "records model_type 'vit_b'" in message
    assert all(torch.equal(before[k], v) for k, v in sam.state_dict().items())  # untouched

    junk = tmp_path / "junk.pth"
    torch.save({"foo": torch.zeros(2)}, junk)
    with pytest.raises(ValueError, match=r"junk\.pth: not a vit_tiny SAM checkpoint \(\d+ missing"):
        model_sam.build_sam("vit_tiny", checkpoint=junk)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ValueError, match=r"tensor\.pth: not a vit_tiny SAM checkpoint"):
        model_sam.load_sam_weights(sam, tensor, "vit_tiny")


def test_vit_b_with_tiny_checkpoint_is_refused(tiny, tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(ValueError, match=r"tiny\.pth: not a vit_b SAM checkpoint"):
        model_sam.build_sam("vit_b", checkpoint=path)


def test_official_types_need_an_existing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="-checkpoint") as err:
        model_sam.build_sam("vit_b")
    assert model_sam.OFFICIAL_CHECKPOINT_URLS["vit_b"] in str(err.value)
    missing = tmp_path / "sam_vit_h_4b8939.pth"
    with pytest.raises(ValueError, match="checkpoint not found") as err:
        model_sam.build_sam("vit_h", checkpoint=missing)
    assert str(err.value).startswith(str(missing))
    assert model_sam.OFFICIAL_CHECKPOINT_URLS["vit_h"] in str(err.value)
    with pytest.raises(ValueError, match=r"nope\.pth: checkpoint not found"):
        model_sam.build_sam("vit_tiny", checkpoint=tmp_path / "nope.pth")


def test_prompt_encoder_and_positional_encoding_stay_float32_under_bf16_autocast(tiny):
    """Under bf16 autocast the dense positional encoding is computed as in fp32 (the
    unguarded computation moves it by far more than 1e-3)."""
    model = budsam.BudSAM(tiny)
    boxes = torch.tensor([[10.0, 20.0, 200.0, 240.0]])
    sparse, dense, pe = model.prompt_embeddings(boxes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sparse_bf16, dense_bf16, pe_bf16 = model.prompt_embeddings(boxes)
        unguarded = model.prompt_encoder.get_dense_pe()
    assert pe_bf16.dtype == sparse_bf16.dtype == dense_bf16.dtype == torch.float32
    assert (pe_bf16 - pe).abs().max() <= 1e-3
    assert (sparse_bf16 - sparse).abs().max() <= 1e-3
    assert (unguarded.float() - pe).abs().max() > 1e-3
