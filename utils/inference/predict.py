"""Masks from a trained model at each spectrogram's own size, tile by tile along time."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import torch

from utils.audio.bsd import two_sided
from utils.audio.conventions import CENTER_ROW
from utils.common.amp import autocast
from utils.data.preprocess import box_prompt, full_box, preprocess_image, preprocess_mask
from utils.data.tiling import (
    box_region,
    crop_input,
    tile_box,
    tile_grids,
    tile_weights,
)
from utils.model.budsam import BudSAM


@torch.no_grad()
def predict_probabilities(
    model: BudSAM,
    images: list[np.ndarray],
    truth_masks: list[np.ndarray] | None = None,
    *,
    boxes: list[np.ndarray] | None = None,
    tile_width: int | None = None,
    overlap: float = 0.0,
    half_spectrum: bool = False,
    max_shift: int = 0,
    seed: int = 0,
    names: list[str] | None = None,
    device: torch.device | None = None,
    amp: str = "none",
    batch_size: int = 8,
    reference_preprocess: bool = False,
    skip_contrast: float = 0.0,
    time_flip: bool = False,
) -> list[np.ndarray]:
    """Clean-sound probability maps, one ``(H, W)`` float32 array per ``(H, W)`` image.

    Each image is cut into time tiles of ``tile_width`` frames overlapping by the
    fraction ``overlap`` (the whole image when None, see
    :func:`overlapping_tile_starts`; an image narrower than a tile is padded to it, see
    :func:`crop_input`, and its map cropped back); tiles from all images are predicted together
    in batches of ``batch_size``, resized back to their own size, and blended with
    :func:`tile_weights` where they overlap.

    Prompts, per tile: the whole tile by default; with ``truth_masks`` the paper's
    protocol, a box around the tile's ground-truth mask with up to ``max_shift``
    pixels of jitter, drawn from a generator seeded by ``seed``, the image's name in
    ``names`` (default: its index) and the tile's first column, so a tile gets the same
    box whatever the batch size or the files it is grouped with; with ``boxes`` (one
    ``[x0, y0, x1, y1]`` in full-image pixels per image) that box, and the map is zero
    outside it (a tile it misses is not run). With ``half_spectrum`` the model sees
    bins 0 ... 512 only and its map is mirrored. A tile whose :func:`tile_contrast` is
    below ``skip_contrast`` is not run either: nothing in it stands out to be bird sound.
    With ``time_flip`` the tiles of the time-reversed image run too (see
    :func:`tile_grids`; each reversed and its map reversed back) and are blended with the
    others: the map is about the mean of the image's and the reversed image's.
    """
    if truth_masks is not None and boxes is not None:
        raise ValueError("give ground-truth masks or boxes as prompts, not both")
    model.eval()
    device = device or torch.device("cpu")
    size = model.img_size
    keys = [zlib.crc32(name.encode()) for name in names] if names else range(len(images))
    tiles = [  # (image, start, reversed)
        (i, s, reverse)
        for i, image in enumerate(images)
        for starts, reverse in tile_grids(image.shape[1], tile_width, overlap, time_flip)
        for s in starts
    ]
    # Maps are blended at the model's row resolution and resized to the image's rows once:
    # linear resizing is separable, and the blending weights vary along time only.
    sums = [np.zeros((size, image.shape[1]), np.float32) for image in images]
    weights = [np.zeros(image.shape[1], np.float32) for image in images]
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first : first + batch_size]
        crops = [crop_input(images[i], s, tile_width, half_spectrum) for i, s, _ in chunk]
        if boxes is not None:
            prompts = [
                tile_box(boxes[i], s, crop.shape, half_spectrum, size)
                for (i, s, _), crop in zip(chunk, crops, strict=True)
            ]
        elif truth_masks is not None:
            prompts = [
                box_prompt(
                    preprocess_mask(crop_input(truth_masks[i], s, tile_width, half_spectrum), size),
                    np.random.default_rng([seed, keys[i], s]),
                    max_shift,
                )
                for i, s, _ in chunk
            ]
        else:
            prompts = [full_box(size, size)] * len(chunk)
        flips = [r for _, _, r in chunk]
        maps = tile_maps(
            model, crops, prompts, device, amp, reference_preprocess, skip_contrast, flips
        )
        for (i, start, _), crop, prob in zip(chunk, crops, maps, strict=True):
            width = min(crop.shape[1], images[i].shape[1] - start)  # without the padding
            blend_tile(sums[i], weights[i], prob, start, crop.shape[1], width)
    stitched = [
        cv2.resize(
            np.divide(total, weight, out=total),
            crop_input(image, 0, None, half_spectrum).shape[::-1],
            interpolation=cv2.INTER_LINEAR,
        )
        for image, total, weight in zip(images, sums, weights, strict=True)
    ]
    if boxes is not None:
        row_offset = CENTER_ROW if half_spectrum else 0
        for prob, box in zip(stitched, boxes, strict=True):
            shifted = np.asarray(box, np.float32) - [0, row_offset, 0, row_offset]
            prob[~box_region(prob.shape, shifted)] = 0.0
    return [two_sided(m) for m in stitched] if half_spectrum else stitched


@torch.no_grad()
def tile_maps(
    model: BudSAM,
    crops: list[np.ndarray],
    prompts: list[np.ndarray | None],
    device: torch.device | None = None,
    amp: str = "none",
    reference_preprocess: bool = False,
    skip_contrast: float = 0.0,
    reversed_tiles: list[bool] | None = None,
) -> np.ndarray:
    """The model's clean-sound probabilities ``(n, S, S)`` float32 for ``n`` uint8 image
    crops, one box prompt ``[x0, y0, x1, y1]`` (model input pixels) each; a crop whose
    prompt is None is not run and gets zeros, and so does one whose :func:`tile_contrast`
    is below ``skip_contrast`` (0: none). A crop flagged in ``reversed_tiles`` runs
    reversed in time (its box mirrored), and its map is reversed back."""
    size = model.img_size
    device = device or torch.device("cpu")
    run = [k for k, prompt in enumerate(prompts) if prompt is not None]
    maps = np.zeros((len(crops), size, size), np.float32)
    inputs = [preprocess_image(crops[k], size, reference_preprocess) for k in run]
    if skip_contrast > 0:
        loud = [i for i, x in enumerate(inputs) if tile_contrast(x[0]) >= skip_contrast]
        run, inputs = [run[i] for i in loud], [inputs[i] for i in loud]
    if run:
        inputs, boxes = np.stack(inputs), np.stack([prompts[k] for k in run])
        flipped = np.array([bool(reversed_tiles and reversed_tiles[k]) for k in run])
        inputs[flipped] = inputs[flipped][..., ::-1]  # columns are time
        boxes[flipped] = boxes[flipped][:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [size, 0, size, 0]
        with autocast(device, amp):
            logits = model(torch.from_numpy(inputs).to(device), torch.from_numpy(boxes).to(device))
        probabilities = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        probabilities[flipped] = probabilities[flipped][..., ::-1]
        maps[run] = probabilities
    return maps


def tile_contrast(model_input: np.ndarray) -> float:
    """How far anything in a model input ``(S, S)`` (values in [0, 1]) stands out of its
    rows' background: the largest mean, over 9 x 9 pixels, of each pixel's excess over its
    row's median (the two lowest rows, near 0 Hz, left out). A tile of noise alone scores
    near 0; see ``bench/bench_tile_skip.py`` for the threshold."""
    excess = model_input - np.median(model_input, axis=1, keepdims=True)
    excess[:2] = 0.0
    return float(cv2.blur(excess, (9, 9)).max())


def blend_tile(
    total: np.ndarray,
    weight: np.ndarray,
    tile_map: np.ndarray,
    start: int,
    crop_width: int,
    width: int,
    region: np.ndarray | None = None,
) -> None:
    """Add a tile's ``(S, S)`` map, resized to its crop's ``crop_width`` columns, to the
    ``(S, W)`` running ``total`` from column ``start`` on (its first ``width`` columns:
    the rest is padding), weighted by :func:`tile_weights`; add the weights to
    ``weight`` (``(W,)``, or ``(S, W)`` together with ``region``, a bool ``(S, width)``
    where the tile counts)."""
    size = tile_map.shape[0]
    resized = cv2.resize(tile_map, (crop_width, size), interpolation=cv2.INTER_LINEAR)
    column_weight = tile_weights(width)
    if region is None:
        total[:, start : start + width] += resized[:, :width] * column_weight
        weight[..., start : start + width] += column_weight
    else:
        tile_weight = np.where(region, column_weight, np.float32(0.0))
        total[:, start : start + width] += resized[:, :width] * tile_weight
        weight[:, start : start + width] += tile_weight
