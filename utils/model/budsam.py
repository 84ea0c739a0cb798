"""The box-prompted BudSAM wrapper and the batched mask decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling import (
    MaskDecoder,
    Sam,
)
from torch import nn

TRAINABLE_PARTS = ("image_encoder", "mask_decoder")
# How images in [0, 1] reach the image encoder: "sam", SAM's own normalisation (pixels
# on 0-255 minus the ImageNet mean, over the ImageNet std, per channel), which its
# pretrained encoder expects; "none", as they are (the reference code's input).
PIXEL_NORMS = ("sam", "none")


def upsample(low_res: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of logits ``(B, 1, h, w)`` to ``(B, 1, *size)``."""
    return F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)


def batched_mask_decoder(
    decoder: MaskDecoder,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's mask decoding for one prompt per image, batched over images.

    Computes what ``decoder(..., multimask_output=False)`` computes for each sample on
    its own, without the package's repeat of every image for every prompt (which turns
    B images with B boxes into B*B masks).

    Args:
        decoder: the SAM mask decoder.
        image_embeddings: ``(B, C, h, w)`` image-encoder output.
        image_pe: ``(1, C, h, w)`` dense positional encoding (``get_dense_pe()``).
        sparse: ``(B, N, C)`` sparse prompt embeddings (N = 2 for a box).
        dense: ``(B, C, h, w)`` dense prompt embeddings.

    Returns:
        ``(low_res_masks, iou_pred)``: logits ``(B, 1, 4h, 4w)`` and ``(B, 1)``.
    """
    b, c, h, w = image_embeddings.shape
    if image_pe.shape != (1, c, h, w):
        raise ValueError(f"image_pe must be {(1, c, h, w)}, got {tuple(image_pe.shape)}")
    if sparse.ndim != 3 or sparse.shape[0] != b or sparse.shape[2] != c:
        raise ValueError(f"sparse embeddings must be ({b}, N, {c}), got {tuple(sparse.shape)}")
    if dense.shape != image_embeddings.shape:
        raise ValueError(f"dense embeddings must be {(b, c, h, w)}, got {tuple(dense.shape)}")

    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
    src = image_embeddings + dense  # one prompt per image: no repeat
    pos_src = image_pe.expand(b, -1, -1, -1)

    hs, src = decoder.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : 1 + decoder.num_mask_tokens, :]

    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    # All hypernetworks run (as in the package) so every decoder weight gets a gradient.
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
        dim=1,
    )
    _, cu, hu, wu = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
    iou_pred = decoder.iou_prediction_head(iou_token_out)
    return masks[:, 0:1], iou_pred[:, 0:1]


class BudSAM(nn.Module):
    """A SAM segmenting one box-prompted region per image, with per-part freezing.

    Holds the Sam's ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` under
    those names, so its state dict has exactly the Sam's keys. The prompt encoder is
    always frozen. ``pixel_norm`` (one of :data:`PIXEL_NORMS`) says how images reach
    the encoder.
    """

    def __init__(
        self,
        sam: Sam,
        trainable: str | Sequence[str] = ("mask_decoder",),
        pixel_norm: str = "none",
    ) -> None:
        super().__init__()
        if pixel_norm not in PIXEL_NORMS:
            raise ValueError(f"unknown pixel_norm {pixel_norm!r}; expected one of {PIXEL_NORMS}")
        self.image_encoder = sam.image_encoder
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.img_size: int = int(sam.image_encoder.img_size)
        self.pixel_norm = pixel_norm
        # SAM's per-channel mean and std on 0-255, (3, 1, 1); not part of the state dict.
        self.register_buffer("pixel_mean", sam.pixel_mean.detach().clone(), persistent=False)
        self.register_buffer("pixel_std", sam.pixel_std.detach().clone(), persistent=False)
        self.trainable_parts: tuple[str, ...] = ()
        self.set_trainable(trainable)

    def set_trainable(self, parts: str | Sequence[str] = ("mask_decoder",)) -> None:
        """Let only ``parts`` (from image_encoder, mask_decoder) learn; freeze the rest.

        ``parts`` may be a comma-separated string such as ``"image_encoder,mask_decoder"``.
        """
        if isinstance(parts, str):
            parts = parts.split(",")
        names = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
        for name in names:
            if name == "prompt_encoder":
                raise ValueError("prompt_encoder cannot be trained: BudSAM always freezes it")
            if name not in TRAINABLE_PARTS:
                raise ValueError(f"unknown model part {name!r}; expected some of {TRAINABLE_PARTS}")
        for name in TRAINABLE_PARTS:
            getattr(self, name).requires_grad_(name in names)
        self.prompt_encoder.requires_grad_(False)
        # The loss never uses the predicted IoU, so its head gets no gradient; frozen, it
        # stays as loaded and DDP needs no unused-parameter search.
        self.mask_decoder.iou_prediction_head.requires_grad_(False)
        self.trainable_parts = names

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``(B, C, h, w)`` of images ``(B, 3, S, S)`` in [0, 1] (h = w = S/16
        but for vit_tiny_p16x8), normalised first as ``pixel_norm`` says."""
        s = self.img_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise ValueError(f"images must be (B, 3, {s}, {s}), got {tuple(images.shape)}")
        if self.pixel_norm == "sam":
            images = (images * 255.0 - self.pixel_mean) / self.pixel_std
        return self.image_encoder(images)

    def prompt_embeddings(
        self, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The frozen prompt encoder's sparse ``(B, 2, C)`` and dense ``(B, C, h, w)``
        embeddings of boxes ``(B, 4)``, and the dense positional encoding ``(1, C, h, w)``.

        Always computed in float32, also under autocast: the random-Fourier positional
        encoding loses its position detail in bf16 (at ViT-B size an error of 0.14, where
        neighbouring positions differ by 0.10).
        """
        with torch.no_grad(), torch.autocast(boxes.device.type, enabled=False):
            boxes = boxes.float()
            sparse, dense = self.prompt_encoder(points=None, boxes=boxes[:, None, :], masks=None)
            image_pe = self.prompt_encoder.get_dense_pe()
        return sparse, dense, image_pe

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Low-res mask logits ``(B, 1, 4h, 4w)`` from embeddings ``(B, C, h, w)`` and
        boxes ``(B, 4)`` (x0, y0, x1, y1 in input pixels)."""
        b = embeddings.shape[0]
        if boxes.shape != (b, 4):
            raise ValueError(f"boxes must be ({b}, 4) for {b} images, got {tuple(boxes.shape)}")
        sparse, dense, image_pe = self.prompt_embeddings(boxes.to(embeddings.device))
        low_res, _ = batched_mask_decoder(self.mask_decoder, embeddings, image_pe, sparse, dense)
        return low_res

    def forward(
        self,
        images: torch.Tensor | None,
        boxes: torch.Tensor,
        embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits ``(B, 1, S, S)`` for images ``(B, 3, S, S)`` and boxes ``(B, 4)``.

        Pass ``embeddings`` (``(B, C, h, w)``, e.g. from a cache) instead of
        images to skip the encoder; training goes through ``forward`` either way, so
        DDP sees every step.
        """
        if embeddings is None:
            embeddings = self.encode(images)
        return upsample(self.decode(embeddings, boxes), (self.img_size, self.img_size))
