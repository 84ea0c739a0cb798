"""Folder names of the BirdSoundsDenoising (BSD) data set, in both spellings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from utils.audio import io as audio_io

IMAGES_DIR = "Images"
MASKS_DIR = "Masks"
RAW_AUDIO_DIR = "Raw_audios"
DENOISED_AUDIO_DIR = "Denoised_audios"
CLEAN_AUDIO_DIR = "Clean_audios"  # synthetic data only: the exact clean bird signal


# BudSAM's spelling first, then the published archive's (Zenodo record 7191406).
SPLIT_FOLDERS = {
    "train": ("train", "Training"),
    "valid": ("valid", "Valid"),
    "test": ("test", "Test"),
}


def split_dir(root: str | Path, split: str) -> Path:
    """Return the folder of ``split`` ("train", "valid" or "test") under a BSD root.

    Accepts both ``train|valid|test`` and ``Training|Valid|Test``.

    Raises:
        ValueError: naming the root, when neither spelling exists.
    """
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_FOLDERS)}")
    root = Path(root)
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    spellings = " or ".join(SPLIT_FOLDERS[split])
    raise ValueError(f"{root}: no {split} split found (looked for {spellings})")


def recording_sample_rates(split_root: str | Path, limit: int = 200) -> Counter:
    """How many of a split's raw recordings have each sample rate, from the headers of
    up to ``limit`` of them spread evenly over the sorted names (an empty count without
    ``Raw_audios/``; unreadable files are left out)."""
    folder = Path(split_root) / RAW_AUDIO_DIR
    if not folder.is_dir():
        return Counter()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in audio_io.AUDIO_EXTENSIONS)
    if len(files) > limit:
        files = [files[i * len(files) // limit] for i in range(limit)]
    rates = Counter()
    for path in files:
        try:
            rates[audio_io.sample_rate_of(path)] += 1
        except ValueError:
            continue
    return rates
