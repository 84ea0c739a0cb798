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

import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from utils.audio import CENTER_ROW, N_FFT
from utils.bsd_layout import IMAGES_DIR, MASKS_DIR
from utils.image_io import PNG_END_CHUNK, PNG_SIGNATURE, read_gray_png, read_mask_png

PNG_GRAY = 0  # IHDR colour type of a grayscale image without alpha
REFERENCE_SIZE = 256  # the reference code first resizes everything to 256 x 256
BOX_SHIFT_AT_1024 = 20  # the paper's -bbox_shift, in pixels of a 1024 input
PROMPTS = ("train", "gt_box", "full")
MASK_RESIZES = ("nearest", "area")
# Why scan_split skips a pair, in the order it checks.
IMAGE_WITHOUT_MASK = "images without a mask"
MASK_WITHOUT_IMAGE = "masks without an image"
UNREADABLE = "unreadable PNGs"  # empty, not a PNG, or no IHDR header
TRUNCATED = "truncated PNGs"
NOT_GRAY8 = "PNGs that are not 8-bit grayscale"
SIZE_MISMATCH = "image/mask size mismatches"
WRONG_HEIGHT = "images not 1024 rows high (--half_spectrum needs BSD spectrograms)"


def png_check(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """``(problem, (height, width))`` of a PNG meant to be 8-bit grayscale, from one read
    of its header and last bytes. ``problem`` is UNREADABLE (missing, empty, not a PNG;
    no size then), TRUNCATED, NOT_GRAY8 or None; only a file whose header is not 8-bit
    grayscale is decoded (:func:`read_gray_png` accepts colour files whose channels are
    equal)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
            end = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, end - 1024))
            tail = handle.read()
    except OSError:
        return UNREADABLE, None
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return UNREADABLE, None
    width, height = struct.unpack(">II", head[16:24])
    if PNG_END_CHUNK not in tail:  # a whole PNG ends with it
        return TRUNCATED, (height, width)
    if (head[24], head[25]) != (8, PNG_GRAY):
        try:
            read_gray_png(path)
        except ValueError:
            return NOT_GRAY8, (height, width)
    return None, (height, width)


@dataclass
class SplitScan:
    """The usable image/mask names of a split and what was skipped, by reason."""

    root: Path
    names: list[str]
    problems: dict[str, list[str]] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (height, width)

    @property
    def skipped(self) -> int:
        return sum(len(names) for names in self.problems.values())

    def report(self, shown: int = 3) -> str:
        """One line per kind of problem: count and the first names."""
        lines = []
        for reason, names in self.problems.items():
            more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
            lines.append(f"{self.root}: {len(names)} {reason}: {', '.join(names[:shown])}{more}")
        return "\n".join(lines)

    def summary(self) -> str:
        """The counts by reason on one line, e.g. ``2 truncated PNGs, 1 masks without an
        image`` (empty when nothing was skipped)."""
        return ", ".join(f"{len(names)} {reason}" for reason, names in self.problems.items())


def scan_split(split_root: str | Path, height: int | None = None) -> SplitScan:
    """Pair ``Images/*.png`` with ``Masks/*.png`` by name and check each file's header and
    end (see :func:`png_check`) and each pair's sizes (and, given ``height``, that the
    images are that many rows high); a pair with a problem is skipped and listed under it.

    Raises:
        ValueError: one line naming the folder, when it has no ``Images/`` folder or no
            usable pair (with the counts of what was skipped).
    """
    root = Path(split_root)
    if not (root / IMAGES_DIR).is_dir():
        raise ValueError(f"{root}: no {IMAGES_DIR}/ folder (expected a BSD split folder)")
    images = {p.name for p in (root / IMAGES_DIR).glob("*.png")}
    masks = (
        {p.name for p in (root / MASKS_DIR).glob("*.png")} if (root / MASKS_DIR).is_dir() else set()
    )
    problems: dict[str, list[str]] = {
        IMAGE_WITHOUT_MASK: sorted(images - masks),
        MASK_WITHOUT_IMAGE: sorted(masks - images),
        UNREADABLE: [],
        TRUNCATED: [],
        NOT_GRAY8: [],
        SIZE_MISMATCH: [],
        WRONG_HEIGHT: [],
    }
    names, sizes = [], {}
    for name in sorted(images & masks):
        image_path, mask_path = root / IMAGES_DIR / name, root / MASKS_DIR / name
        (image_problem, image_size), (mask_problem, mask_size) = map(
            png_check, (image_path, mask_path)
        )
        problem = image_problem or mask_problem
        if problem is None and image_size != mask_size:
            problem = SIZE_MISMATCH
        elif problem is None and height is not None and image_size[0] != height:
            problem = WRONG_HEIGHT
        if problem is not None:
            problems[problem].append(name)
        else:
            names.append(name)
            sizes[name] = image_size
    found = {reason: listed for reason, listed in problems.items() if listed}
    scan = SplitScan(root, names, found, sizes)
    if not names:
        skipped = f"skipped {scan.summary()}" if found else f"{IMAGES_DIR}/ holds no .png file"
        raise ValueError(f"{root}: no usable image/mask pair found ({skipped})")
    return scan


# ----------------------------------------------------------------------------- preprocessing


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W)`` -> uint8 ``(size, size)`` by OpenCV's area interpolation (each output
    pixel the mean of the input area it covers, rounded; anti-aliased).

    When ``H`` is a multiple of ``size`` and ``W`` is at least ``size`` (a 1,024-row BSD
    image to 256), rows are first summed in groups, exactly, and only the columns are
    resampled: 3x faster, and the same but for rare ties in rounding (summation order).
    """
    height, width = image.shape
    factor = height // size
    if factor < 2 or height != factor * size or width < size:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    sums = np.add.reduce(image.reshape(size, factor, width), axis=1, dtype=np.uint32)
    means = cv2.resize(sums.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    means *= np.float32(1 / factor)
    return np.rint(means, out=means).astype(np.uint8)


def preprocess_image(image: np.ndarray, size: int, reference: bool = False) -> np.ndarray:
    """Spectrogram ``(H, W)`` uint8 -> model input ``(3, size, size)`` float32 in [0, 1].

    Default: an area resize (anti-aliased, :func:`area_resize`) and division by 255.
    ``reference``: the reference code's path (nearest resize to 256 x 256, bicubic
    to ``size``, min-max scaling) for like-for-like comparison with the paper.
    """
    if reference:
        small = cv2.resize(image, (REFERENCE_SIZE, REFERENCE_SIZE), interpolation=cv2.INTER_NEAREST)
        large = cv2.resize(small.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        low, high = float(large.min()), float(large.max())
        scaled = (large - low) / max(high - low, 1e-8)
    else:
        scaled = area_resize(image, size) / np.float32(255)
    return np.repeat(scaled.astype(np.float32)[None], 3, axis=0)


def preprocess_mask(
    mask: np.ndarray, size: int, reference: bool = False, resize: str = "nearest"
) -> np.ndarray:
    """Mask ``(H, W)`` -> ``(size, size)``.

    ``resize="nearest"`` (the default, as the reference): bool, by nearest resizing
    (via 256 for ``reference``). ``resize="area"``: float32 in [0, 1], each pixel the
    foreground fraction of the input area it covers (a soft target that keeps thin
    structures nearest resizing drops or fattens; ``reference`` is ignored).
    """
    if resize not in MASK_RESIZES:
        raise ValueError(f"unknown mask resize {resize!r}; expected one of {MASK_RESIZES}")
    binary = (mask > 0).astype(np.uint8)
    if resize == "area":
        return cv2.resize(binary.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    if reference:
        binary = cv2.resize(
            binary, (REFERENCE_SIZE, REFERENCE_SIZE), interpolation=cv2.INTER_NEAREST
        )
    return cv2.resize(binary, (size, size), interpolation=cv2.INTER_NEAREST) > 0


def box_prompt(mask: np.ndarray, rng: np.random.Generator | None, max_shift: int) -> np.ndarray:
    """``[x0, y0, x1, y1]`` float32 around the mask, each side pushed out by 0..max_shift px.

    An empty mask gets the whole image; ``rng=None`` means no jitter.
    """
    size_y, size_x = mask.shape
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return full_box(size_y, size_x)
    shift = rng.integers(0, max_shift + 1, 4) if rng is not None and max_shift > 0 else np.zeros(4)
    return np.array(
        [
            max(0, cols.min() - shift[0]),
            max(0, rows.min() - shift[1]),
            min(size_x, cols.max() + shift[2]),
            min(size_y, rows.max() + shift[3]),
        ],
        dtype=np.float32,
    )


def full_box(size_y: int, size_x: int) -> np.ndarray:
    """The whole-image box ``[0, 0, W, H]``: a prompt that needs no ground truth."""
    return np.array([0, 0, size_x, size_y], dtype=np.float32)


def scaled_box_shift(bbox_shift: int, size: int) -> int:
    """``-bbox_shift`` is given at a 1024 input; scale it to ``size``."""
    return int(round(bbox_shift * size / 1024))


def tile_starts(width: int, tile_width: int | None) -> list[int]:
    """First columns of the time tiles covering ``width`` frames.

    Tiles of ``tile_width`` frames side by side; the last one ends at the image's
    end (overlapping its neighbour). One tile, the whole image, when ``tile_width``
    is None or the image is not wider.
    """
    if tile_width is None or width <= tile_width:
        return [0]
    starts = list(range(0, width - tile_width, tile_width))
    return starts + [width - tile_width]


def crop_input(
    array: np.ndarray, start: int, tile_width: int | None, half_spectrum: bool = False
) -> np.ndarray:
    """The part of a ``(1024, W)`` image or mask the model sees: one time tile, and with
    ``half_spectrum`` only the rows of bins 0 ... 512 (the other half mirrors them)."""
    rows = slice(CENTER_ROW, None) if half_spectrum else slice(None)
    cols = slice(None) if tile_width is None else slice(start, start + tile_width)
    return array[rows, cols]


# ----------------------------------------------------------------------------- dataset


class BSDSegmentation(Dataset):
    """Image/mask pairs of one BSD split as SAM inputs with a box prompt.

    Each item is a dict: ``image`` (3, S, S) float32 in [0, 1] (omitted when
    ``load_images`` is False, for training on cached embeddings), ``mask`` (1, S, S)
    float32 in {0, 1}, ``box`` (4,) float32 ``x0, y0, x1, y1`` in input pixels,
    ``index``, ``name`` (the image file) and ``key`` (unique per item); with
    ``mask_resize="area"`` the mask is soft, in [0, 1] (see :func:`preprocess_mask`;
    its box prompt then covers every pixel with some foreground). With
    ``tile_width``, each image is cut along time into tiles of that many frames
    (see :func:`tile_starts`) and every tile is an item; by default an item is a
    whole image, as in the paper. ``half_spectrum`` keeps only the rows of bins
    0 ... 512 of each image and mask (BSD images are mirror-symmetric about DC).
    An item whose PNG cannot be decoded is None (see
    :func:`collate_skipping_none`); a mask with values other than 0 and 255 is read as
    nonzero = foreground, with a warning naming it.
    ``keep_in_memory`` keeps each preprocessed
    item after its first load (``S * S * 4`` bytes per image; for small sets and
    ``num_workers=0``, where the same process serves every epoch).

    Prompts: ``"train"``: the ground-truth box with random jitter, replaced by the
    whole image with probability ``full_box_prob`` (and for empty masks);
    ``"gt_box"``: the paper's test protocol, jittered ground-truth box; ``"full"``:
    the whole image, which needs no ground truth. Jitter is drawn from a generator
    seeded by (seed, epoch, index), so it does not depend on workers or ranks.
    """

    def __init__(
        self,
        split_root: str | Path,
        input_size: int,
        *,
        prompt: str = "train",
        bbox_shift: int = BOX_SHIFT_AT_1024,
        full_box_prob: float = 0.5,
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
        self.reference_preprocess = reference_preprocess
        self.mask_resize = mask_resize
        self.load_images = load_images
        self.keep_in_memory = keep_in_memory
        self._memory: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}
        self.unusable: set[int] = set()  # items found unreadable elsewhere (e.g. while caching)
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

    def __getitem__(self, index: int) -> dict | None:
        loaded = self._load(index)
        if loaded is None:
            return None
        image, mask = loaded
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
        }
        if image is not None:
            item["image"] = torch.from_numpy(np.repeat(image[None], 3, axis=0))
        return item


def collate_skipping_none(items: list[dict | None]) -> dict:
    """Stack a batch, dropping items that failed to load; ``skipped`` counts them."""
    kept = [item for item in items if item is not None]
    batch: dict = {"skipped": len(items) - len(kept)}
    if not kept:
        return batch
    for key in kept[0]:
        values = [item[key] for item in kept]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    if "index" in batch:
        batch["index"] = torch.tensor(batch["index"])
    return batch
