"""Pairing and checking the images and masks of a BSD split before use."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from utils.data.bsd_layout import IMAGES_DIR, MASKS_DIR
from utils.data.image_io import PNG_END_CHUNK, PNG_SIGNATURE, read_gray_png

PNG_GRAY = 0  # IHDR colour type of a grayscale image without alpha


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
