"""Masks from a trained model at each spectrogram's own size, tile by tile along time."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from utils.audio import two_sided
from utils.dataset import (
    box_prompt,
    crop_input,
    full_box,
    preprocess_image,
    preprocess_mask,
    tile_starts,
)
from utils.engine import autocast
from utils.model import BudSAM


@torch.no_grad()
def predict_probabilities(
    model: BudSAM,
    images: list[np.ndarray],
    truth_masks: list[np.ndarray] | None = None,
    *,
    tile_width: int | None = None,
    half_spectrum: bool = False,
    max_shift: int = 0,
    seed: int = 0,
    device: torch.device | None = None,
    amp: str = "none",
    batch_size: int = 8,
    reference_preprocess: bool = False,
) -> list[np.ndarray]:
    """Clean-sound probability maps, one ``(H, W)`` float32 array per ``(H, W)`` image.

    Each image is cut into time tiles of ``tile_width`` frames (the whole image when
    None, see :func:`utils.dataset.tile_starts`); tiles are predicted in batches of
    ``batch_size``, resized back to their own size, and averaged where they overlap.
    Prompts: the whole tile, or with ``truth_masks`` the paper's protocol, a box
    around each tile's ground-truth mask with up to ``max_shift`` pixels of jitter.
    With ``half_spectrum`` the model sees bins 0 ... 512 only and its map is mirrored.
    """
    model.eval()
    device = device or torch.device("cpu")
    size = model.img_size
    rng = np.random.default_rng(seed)
    tiles = [
        (i, s) for i, image in enumerate(images) for s in tile_starts(image.shape[1], tile_width)
    ]
    sums = [np.zeros(crop_input(im, 0, None, half_spectrum).shape, np.float32) for im in images]
    counts = [np.zeros(image.shape[1], np.float32) for image in images]
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first : first + batch_size]
        crops = [crop_input(images[i], s, tile_width, half_spectrum) for i, s in chunk]
        inputs = np.stack([preprocess_image(crop, size, reference_preprocess) for crop in crops])
        if truth_masks is None:
            boxes = np.stack([full_box(size, size)] * len(chunk))
        else:
            boxes = np.stack(
                [
                    box_prompt(
                        preprocess_mask(
                            crop_input(truth_masks[i], s, tile_width, half_spectrum), size
                        ),
                        rng,
                        max_shift,
                    )
                    for i, s in chunk
                ]
            )
        with autocast(device, amp):
            logits = model(torch.from_numpy(inputs).to(device), torch.from_numpy(boxes).to(device))
        maps = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        for (i, start), crop, prob in zip(chunk, crops, maps, strict=True):
            height, width = crop.shape
            resized = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
            sums[i][:, start : start + width] += resized
            counts[i][start : start + width] += 1
    stitched = [total / count for total, count in zip(sums, counts, strict=True)]
    return [two_sided(m) for m in stitched] if half_spectrum else stitched
