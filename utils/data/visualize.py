"""Figures: BSD examples as image, mask and overlay."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.audio.conventions import CENTER_ROW, HOP_LENGTH, N_FFT  # noqa: E402
from utils.audio.io import (  # noqa: E402
    audio_source_for_image,
    find_audio_file,
    sample_rate_of,
)
from utils.common.files import atomic_path  # noqa: E402
from utils.data.bsd_layout import IMAGES_DIR, MASKS_DIR, RAW_AUDIO_DIR  # noqa: E402
from utils.data.image_io import overlay, read_gray_png, read_mask_png  # noqa: E402


def plot_examples(split_root: str | Path, out_png: str | Path, n: int = 4) -> Path:
    """Save a figure of the first ``n`` examples of a split with a non-empty mask.

    Takes one image per recording (the left channel of a stereo pair). One row per
    example: image, mask, overlay, drawn by ``librosa.display.specshow`` with time (s) and
    frequency (Hz, from the recording's own rate) axes; only the non-negative half of the
    two-sided image is drawn, as it is mirror-symmetric.
    """
    import librosa.display  # imported here: a second of start-up that training never needs

    split_root = Path(split_root)
    examples, recordings = [], set()
    for path in sorted((split_root / MASKS_DIR).glob("*.png")):
        recording = audio_source_for_image(path.name)[0]
        if recording in recordings or not read_mask_png(path).any():
            continue
        audio = find_audio_file(split_root / RAW_AUDIO_DIR, recording)
        if audio is not None:
            examples.append((path.name, sample_rate_of(audio)))
            recordings.add(recording)
        if len(examples) == n:
            break
    if not examples:
        raise ValueError(
            f"{split_root}: no example with a non-empty mask and its recording to plot"
        )
    fig, axes = plt.subplots(len(examples), 3, figsize=(13, 2.8 * len(examples)), squeeze=False)
    for row, (name, sr) in zip(axes, examples, strict=True):
        image = read_gray_png(split_root / IMAGES_DIR / name)[CENTER_ROW:]  # DC first
        mask = read_mask_png(split_root / MASKS_DIR / name)[CENTER_ROW:]
        panels = (("image", image), ("mask", mask.astype(np.uint8)), ("overlay", None))
        for ax, (title, picture) in zip(row, panels, strict=True):
            axis_args = dict(sr=sr, hop_length=HOP_LENGTH, n_fft=N_FFT, ax=ax, x_axis="s")
            if picture is None:  # an RGB overlay: specshow draws one plane, so imshow it
                ax.imshow(
                    overlay(image, mask), aspect="auto", origin="lower",
                    extent=(0, image.shape[1] * HOP_LENGTH / sr, 0, sr / 2),
                )  # fmt: skip
                ax.set(xlabel="Time (seconds)", ylabel="Hz")
            else:
                librosa.display.specshow(picture, y_axis="linear", cmap="gray", **axis_args)
            ax.set_title(f"{Path(name).stem}: {title}", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return out_png
