"""Masks from a trained model at each spectrogram's own size."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from utils.dataset import box_prompt, full_box, preprocess_image, preprocess_mask
from utils.engine import autocast
from utils.model import BudSAM


def prompt_boxes(
    masks: list[np.ndarray] | None, size: int, count: int, max_shift: int = 0, seed: int = 0
) -> np.ndarray:
    """Box prompts ``(N, 4)`` in input pixels: whole-image boxes when ``masks`` is None,
    else each ground-truth mask's box (the paper's protocol) with ``max_shift`` jitter."""
    if masks is None:
        return np.stack([full_box(size, size)] * count)
    rng = np.random.default_rng(seed)
    return np.stack([box_prompt(preprocess_mask(m, size), rng, max_shift) for m in masks])


@torch.no_grad()
def predict_probabilities(
    model: BudSAM,
    images: list[np.ndarray],
    boxes: np.ndarray,
    *,
    device: torch.device,
    amp: str = "none",
    batch_size: int = 8,
    reference_preprocess: bool = False,
) -> list[np.ndarray]:
    """Clean-sound probability maps, one ``(H, W)`` float32 array per ``(H, W)`` image.

    The encoder runs on batches of ``batch_size``; each probability map is resized
    bilinearly from the model's input size back to its image's size.
    """
    model.eval()
    size = model.img_size
    probabilities: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        inputs = np.stack([preprocess_image(image, size, reference_preprocess) for image in chunk])
        box = torch.from_numpy(boxes[start : start + len(chunk)]).float().to(device)
        with autocast(device, amp):
            logits = model(torch.from_numpy(inputs).to(device), box)
        maps = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        for image, prob in zip(chunk, maps, strict=True):
            height, width = image.shape
            probabilities.append(cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR))
    return probabilities
