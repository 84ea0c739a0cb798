"""Figures: BSD examples as image, mask and overlay."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.audio.conventions import CENTER_ROW  # noqa: E402
from utils.audio.io import audio_source_for_image  # noqa: E402
from utils.common.files import atomic_path  # noqa: E402
from utils.data.bsd_layout import IMAGES_DIR, MASKS_DIR  # noqa: E402
from utils.data.image_io import read_gray_png, read_mask_png  # noqa: E402


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB float image: the grayscale spectrogram with the mask tinted red. ``(H, W, 3)``."""
    gray = np.repeat((image.astype(np.float64) / 255.0)[..., None], 3, axis=2)
    tint = np.array([1.0, 0.15, 0.1])
    return np.where(mask[..., None], (1 - alpha) * gray + alpha * tint, gray)


def plot_examples(split_root: str | Path, out_png: str | Path, n: int = 4) -> Path:
    """Save a figure of the first ``n`` examples of a split with a non-empty mask.

    Takes one image per recording (the left channel of a stereo pair).

    One row per example: image, mask, overlay; only the positive-frequency half
    (DC at the bottom) is drawn, as the two-sided image is mirror-symmetric.
    """
    split_root = Path(split_root)
    names, recordings = [], set()
    for path in sorted((split_root / MASKS_DIR).glob("*.png")):
        recording = audio_source_for_image(path.name)[0]
        if recording not in recordings and read_mask_png(path).any():
            names.append(path.name)
            recordings.add(recording)
        if len(names) == n:
            break
    if not names:
        raise ValueError(f"{split_root}: no example with a non-empty mask to plot")
    fig, axes = plt.subplots(len(names), 3, figsize=(13, 2.6 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        image = read_gray_png(split_root / IMAGES_DIR / name)[CENTER_ROW:][::-1]
        mask = read_mask_png(split_root / MASKS_DIR / name)[CENTER_ROW:][::-1]
        panels = (
            ("image", image, "gray"),
            ("mask", mask, "gray"),
            ("overlay", overlay(image, mask), None),
        )
        for ax, (title, picture, cmap) in zip(row, panels, strict=True):
            ax.imshow(picture, cmap=cmap, aspect="auto", interpolation="antialiased")
            ax.set_title(f"{Path(name).stem}: {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return out_png
