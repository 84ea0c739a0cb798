"""Folder names of the BirdSoundsDenoising (BSD) data set, in both spellings."""

from __future__ import annotations

from pathlib import Path

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
