"""Benchmark: training items per second, BudSAM's preprocessing against the reference's.

    python -m bench.bench_data_loading --n 12 --width 3000 --repeats 3

Writes ``--n`` BSD-sized spectrogram/mask PNG pairs (1024 x ``--width``, from noisy
recordings through :func:`utils.audio.bsd.stft`) into a temporary split, then times,
side by side in one run, one pass over them:

* BudSAM: ``BSDSegmentation`` items at the ViT-B input size (1024), i.e. PNG
  decoding with OpenCV, one area resize, the nearest-neighbour mask and the box;
* the reference code's path: PIL decoding, nearest resize to 256 x 256,
  scikit-image bicubic resize to 1024 x 1024 with anti-aliasing, min-max scaling,
  and the mask through nearest resizes.

Prints items per second (min / median / max over repeats) and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.transform import resize as skimage_resize

from bench.timing import machine, print_side_by_side, time_repeats
from utils.audio import bsd, conventions
from utils.data.bsd_layout import IMAGES_DIR, MASKS_DIR
from utils.data.dataset import BSDSegmentation
from utils.data.image_io import write_png

REFERENCE_SIZE = 256
MODEL_SIZE = 1024


def write_pairs(split: Path, n: int, width: int, seed: int = 0) -> None:
    """``n`` spectrogram/mask pairs of ``1024 x width`` in the BSD layout."""
    (split / IMAGES_DIR).mkdir(parents=True)
    (split / MASKS_DIR).mkdir(parents=True)
    rng = np.random.default_rng(seed)
    samples = conventions.num_samples(width)
    for i in range(n):
        t = np.arange(samples) / 48000
        bird = np.sin(2 * np.pi * (3000 + 2000 * np.sin(2 * np.pi * 3 * t)) * t)
        y = 0.3 * rng.standard_normal(samples) + bird * (rng.random() + 0.5)
        image = bsd.two_sided(bsd.spectrogram_to_image(bsd.stft_half(y)))
        write_png(split / IMAGES_DIR / f"b{i:03d}.png", image)
        write_png(split / MASKS_DIR / f"b{i:03d}.png", image > 200)


def reference_item(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The reference code's preprocessing of one pair, as its data loader does it."""
    small = np.array(Image.open(image_path).resize((REFERENCE_SIZE, REFERENCE_SIZE), Image.NEAREST))
    rgb = np.repeat(small[..., None], 3, axis=-1)
    large = skimage_resize(
        rgb, (MODEL_SIZE, MODEL_SIZE), order=3, preserve_range=True, mode="constant",
        anti_aliasing=True,
    )  # fmt: skip
    image = (large - large.min()) / np.clip(large.max() - large.min(), 1e-8, None)
    mask_small = np.array(
        Image.open(mask_path).resize((REFERENCE_SIZE, REFERENCE_SIZE), Image.NEAREST)
    )
    mask = skimage_resize(
        mask_small, (MODEL_SIZE, MODEL_SIZE), order=0, preserve_range=True, mode="constant",
        anti_aliasing=False,
    )  # fmt: skip
    return image.transpose(2, 0, 1).astype(np.float32), (mask > 0).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=12, help="image/mask pairs")
    parser.add_argument("--width", type=int, default=3000, help="frames per image")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_loading_") as tmp:
        split = Path(tmp) / "test"
        write_pairs(split, args.n, args.width)
        dataset = BSDSegmentation(split, MODEL_SIZE, prompt="gt_box")
        names = dataset.names

        def ours() -> None:
            for index in range(len(dataset)):
                dataset[index]

        def reference() -> None:
            for name in names:
                reference_item(split / IMAGES_DIR / name, split / MASKS_DIR / name)

        # Interleaved repeats, so both paths see the same machine load.
        ours_s, reference_s = [], []
        for _ in range(args.repeats):
            ours_s += time_repeats(ours, 1)
            reference_s += time_repeats(reference, 1)

    ours_rate = [args.n / s for s in ours_s]
    reference_rate = [args.n / s for s in reference_s]
    print(f"machine: {machine()}")
    print(f"{args.n} pairs of 1024 x {args.width}, {args.repeats} repeats")
    print_side_by_side("items/s", ("BudSAM", ours_rate), ("reference", reference_rate))


if __name__ == "__main__":
    main()
