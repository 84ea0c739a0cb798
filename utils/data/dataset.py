"""BSD spectrogram/mask pairs as model inputs with box prompts.

A split folder holds ``Images/NAME.png`` and ``Masks/NAME.png``. :func:`scan_split`
pairs them by file name and skips, counted and listed by reason, every pair it can
judge bad from the PNG headers and last bytes alone: image without mask, mask
without image, unreadable (empty, not a PNG), truncated, not 8-bit grayscale
(16-bit, colour with unequal channels, alpha), image/mask size mismatch. An item
that fails to decode later (damage inside the file) is skipped with a warning and
counted, never raised mid-epoch.

Masks: nonzero means foreground (the BSD convention, as ``utils.audio.resize_mask``).
A mask with values other than 0 and 255 (e.g. 0/1, or anti-aliased edges) is used
that way, not skipped, and a warning names the file and its values.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.audio.conventions import N_FFT
from utils.data import augment
from utils.data.bsd_layout import IMAGES_DIR, MASKS_DIR
from utils.data.image_io import read_gray_png, read_mask_png
from utils.data.preprocess import (
    BOX_SHIFT_AT_1024,
    MASK_RESIZES,
    box_prompt,
    full_box,
    preprocess_image,
    preprocess_mask,
    scaled_box_shift,
)
from utils.data.scan import SplitScan, scan_split
from utils.data.tiling import crop_input, tile_starts

PROMPTS = ("train", "gt_box", "full")
AUGMENT_STREAM = 1  # the augmentations' generator, apart from the box jitter's


class BSDSegmentation(Dataset):
    """Image/mask pairs of one BSD split as SAM inputs with a box prompt.

    Each item is a dict: ``image`` (3, S, S) float32 in [0, 1] (omitted when
    ``load_images`` is False, for training on cached embeddings), ``mask`` (1, S, S)
    float32 in {0, 1}, ``box`` (4,) float32 ``x0, y0, x1, y1`` in input pixels,
    ``index``, ``name`` (the image file), ``key`` (unique per item) and
    ``valid_columns`` (the input's columns that show the image, see
    :meth:`valid_columns`); with
    ``mask_resize="area"`` the mask is soft, in [0, 1] (see :func:`preprocess_mask`;
    its box prompt then covers every pixel with some foreground). With
    ``tile_width``, each image is cut along time into tiles of that many frames
    (see :func:`tile_starts`) and every tile is an item; by default an item is a
    whole image, as in the paper. ``half_spectrum`` keeps only the rows of bins
    0 ... 512 of each image and mask (BSD images are mirror-symmetric about DC).
    An item whose PNG cannot be decoded is None (see
    :func:`collate_skipping_none`); a mask with values other than 0 and 255 is read as
    nonzero = foreground, with a warning naming it.
    ``embeddings``, when set to a store with ``load(item_key) -> Tensor | None`` (an
    embedding cache), adds each item's stored ``embedding`` where there is one, so that
    the loader's workers read them ahead of the training step.
    ``keep_in_memory`` keeps each preprocessed
    item after its first load (``S * S * 4`` bytes per image; for small sets and
    ``num_workers=0``, where the same process serves every epoch).

    Prompts: ``"train"``: the ground-truth box with random jitter, replaced by the
    whole image with probability ``full_box_prob`` (and for empty masks);
    ``"gt_box"``: the paper's test protocol, jittered ground-truth box; ``"full"``:
    the whole image, which needs no ground truth. Jitter is drawn from a generator
    seeded by (seed, epoch, index), so it does not depend on workers or ranks.
    Augmentations (training prompt, loaded images only; :mod:`utils.data.augment`):
    ``time_flip_prob``, the chance that an item is reversed in time, image and mask alike;
    ``spectral_gain_db``, a random smooth gain per frequency within +-that many dB.
    """

    def __init__(
        self,
        split_root: str | Path,
        input_size: int,
        *,
        prompt: str = "train",
        bbox_shift: int = BOX_SHIFT_AT_1024,
        full_box_prob: float = 0.5,
        time_flip_prob: float = 0.0,
        spectral_gain_db: float = 0.0,
        reference_preprocess: bool = False,
        load_images: bool = True,
        keep_in_memory: bool = False,
        tile_width: int | None = None,
        half_spectrum: bool = False,
        mask_resize: str = "nearest",
        seed: int = 0,
        scan: SplitScan | None = None,
    ) -> None:
        if prompt not in PROMPTS:
            raise ValueError(f"unknown prompt {prompt!r}; expected one of {PROMPTS}")
        if mask_resize not in MASK_RESIZES:
            raise ValueError(f"unknown mask resize {mask_resize!r}; expected one of {MASK_RESIZES}")
        self.scan = scan or scan_split(split_root, N_FFT if half_spectrum else None)
        self.root = self.scan.root
        self.names = self.scan.names
        self.tile_width = tile_width
        self.half_spectrum = half_spectrum
        # One item per time tile: (image name, first column).
        self.items = [
            (name, start)
            for name in self.names
            for start in tile_starts(self.scan.sizes[name][1], tile_width)
        ]
        self.input_size = input_size
        self.prompt = prompt
        self.max_shift = scaled_box_shift(bbox_shift, input_size)
        self.full_box_prob = full_box_prob
        if (time_flip_prob or spectral_gain_db) and (prompt != "train" or not load_images):
            raise ValueError("augmentations need the training prompt and loaded images")
        self.time_flip_prob = time_flip_prob
        self.spectral_gain_db = spectral_gain_db
        self.reference_preprocess = reference_preprocess
        self.mask_resize = mask_resize
        self.load_images = load_images
        self.keep_in_memory = keep_in_memory
        self._memory: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}
        self.unusable: set[int] = set()  # items found unreadable elsewhere (e.g. while caching)
        self.embeddings = None  # a store of the items' image embeddings, or None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw new box jitter for a new epoch (call before building the iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def item_key(self, index: int) -> str:
        """A file-name-safe key for an item: the image's stem, and its tile's first column."""
        name, start = self.items[index]
        stem = Path(name).stem
        return stem if self.tile_width is None else f"{stem}@{start}"

    def valid_columns(self, index: int) -> int:
        """How many of the input's columns show the image: all but those of the silence
        that pads an image narrower than a tile (see :func:`crop_input`)."""
        name, start = self.items[index]
        width = self.scan.sizes[name][1] - start
        if self.tile_width is None or width >= self.tile_width:
            return self.input_size
        return max(1, round(width * self.input_size / self.tile_width))

    def _crop(self, array: np.ndarray, start: int) -> np.ndarray:
        return crop_input(array, start, self.tile_width, self.half_spectrum)

    def image_input(self, index: int) -> np.ndarray:
        """The model input ``(3, S, S)`` float32 of one item, read from disk.

        Raises:
            ValueError: naming the file, when it cannot be read.
        """
        name, start = self.items[index]
        image = self._crop(read_gray_png(self.root / IMAGES_DIR / name), start)
        return preprocess_image(image, self.input_size, self.reference_preprocess)

    def _load(self, index: int) -> tuple[np.ndarray | None, np.ndarray] | None:
        """Preprocessed ``(image (S, S) float32 or None, mask (S, S))``, or None."""
        if index in self._memory:
            return self._memory[index]
        if index in self.unusable:
            return None
        name, start = self.items[index]
        notes: list[str] = []  # a mask with values other than 0 and 255
        try:
            mask_png = self._crop(read_mask_png(self.root / MASKS_DIR / name, notes), start)
            image = self.image_input(index)[0] if self.load_images else None
        except ValueError as err:
            warnings.warn(f"skipped: {err}", stacklevel=3)
            return None
        for note in notes:
            warnings.warn(note, stacklevel=3)
        mask = preprocess_mask(
            mask_png, self.input_size, self.reference_preprocess, self.mask_resize
        )
        if self.keep_in_memory:
            self._memory[index] = (image, mask)
        return image, mask

    def _augment(self, index: int, image: np.ndarray, mask: np.ndarray) -> tuple:
        """The training augmentations, drawn from their own generator (seeded by seed,
        epoch and index, apart from the box jitter's): a time flip with probability
        ``time_flip_prob``, then a random gain per frequency row within
        +-``spectral_gain_db``."""
        rng = np.random.default_rng([self.seed, self.epoch, index, AUGMENT_STREAM])
        if rng.random() < self.time_flip_prob:
            image, mask = augment.time_flip(image, mask, self.valid_columns(index))
        if self.spectral_gain_db:
            image = augment.spectral_gain(image, rng, self.spectral_gain_db, not self.half_spectrum)
        return image, mask

    def __getitem__(self, index: int) -> dict | None:
        loaded = self._load(index)
        if loaded is None:
            return None
        image, mask = loaded
        if self.time_flip_prob or self.spectral_gain_db:
            image, mask = self._augment(index, image, mask)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.prompt == "full" or (self.prompt == "train" and rng.random() < self.full_box_prob):
            box = full_box(*mask.shape)
        else:
            box = box_prompt(mask, rng, self.max_shift)
        item = {
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "box": torch.from_numpy(box),
            "index": index,
            "name": self.items[index][0],
            "key": self.item_key(index),
            "valid_columns": self.valid_columns(index),
        }
        if image is not None:
            item["image"] = torch.from_numpy(np.repeat(image[None], 3, axis=0))
        if self.embeddings is not None:
            embedding = self.embeddings.load(item["key"])
            if embedding is not None:
                item["embedding"] = embedding
        return item


def collate_skipping_none(items: list[dict | None]) -> dict:
    """Stack a batch, dropping items that failed to load; ``skipped`` counts them. A field
    that some items lack (an ``embedding`` not stored yet) is left out of the batch."""
    kept = [item for item in items if item is not None]
    batch: dict = {"skipped": len(items) - len(kept)}
    if not kept:
        return batch
    for key in [key for key in kept[0] if all(key in item for item in kept)]:
        values = [item[key] for item in kept]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    for key in ("index", "valid_columns"):
        if key in batch:
            batch[key] = torch.tensor(batch[key])
    return batch
