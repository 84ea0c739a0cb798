"""The quick-start model against the simple baselines, on the same test split.

    python -m bench.quickstart_vs_baselines --run_dir work_dir/quickstart-<id> [-i data/synthetic]

Every method's mask is scored at each spectrogram's own size (1024 x T) against
the ground-truth mask: the model's probabilities are resized back from its input
size, the baselines work at full size. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from utils import audio, baselines
from utils.bsd_layout import IMAGES_DIR, MASKS_DIR, RAW_AUDIO_DIR, split_dir
from utils.checkpoint import load_checkpoint
from utils.dataset import scaled_box_shift, scan_split
from utils.image_io import read_gray_png, read_mask_png
from utils.metrics import confusion_counts, scores_from_counts, two_class_scores_from_counts
from utils.model import BudSAM, build_sam
from utils.predict import predict_probabilities
from utils.run_log import BEST

PAPER_BATCH = 4  # batch size over which the papers' two-class IoU is pooled


def score(predictions: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    """Mean per-image foreground IoU/Dice, and the two-class IoU pooled over batches of
    ``PAPER_BATCH`` images and averaged over the batches, as the papers do."""
    counts = [confusion_counts(p, t) for p, t in zip(predictions, truths, strict=True)]
    fg = [scores_from_counts(c) for c in counts]
    paper = [
        two_class_scores_from_counts(
            {k: np.concatenate([c[k] for c in counts[i : i + PAPER_BATCH]]) for k in counts[0]}
        )["iou"]
        for i in range(0, len(counts), PAPER_BATCH)
    ]
    return {
        "fg_iou": float(np.mean([s["iou"][0] for s in fg])),
        "fg_dice": float(np.mean([s["dice"][0] for s in fg])),
        "paper_iou": float(np.mean(paper)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True, help="a training run folder")
    parser.add_argument("-i", "--data", default=None, help="BSD root (default: the run's)")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    checkpoint = load_checkpoint(run_dir / BEST)
    run_args = checkpoint["args"]
    root = split_dir(args.data or run_args["tr_path"], "test")
    names = scan_split(root).names
    images = [read_gray_png(root / IMAGES_DIR / n) for n in names]
    truths = [read_mask_png(root / MASKS_DIR / n) for n in names]

    model = BudSAM(build_sam(run_args["model_type"], seed=0))
    model.load_state_dict(checkpoint["model"])
    torch.set_num_threads(1)
    size, device = model.img_size, torch.device("cpu")
    rows = []
    tile_width = run_args.get("tile_width")
    for label, masks in (
        ("BudSAM, ground-truth box (paper protocol)", truths),
        ("BudSAM, full-image box (no ground truth)", None),
    ):
        start = time.perf_counter()
        probs = predict_probabilities(
            model, images, masks, tile_width=tile_width, device=device,
            half_spectrum=bool(run_args.get("half_spectrum")),
            max_shift=scaled_box_shift(run_args["bbox_shift"], size),
        )  # fmt: skip
        seconds = time.perf_counter() - start
        rows.append((label, score([p >= 0.5 for p in probs], truths), seconds))

    start = time.perf_counter()
    energy = [baselines.energy_threshold_mask(image) for image in images]
    rows.append(("energy threshold", score(energy, truths), time.perf_counter() - start))
    recordings = [
        audio.raw_audio_for_image(root / RAW_AUDIO_DIR, n, im)
        for n, im in zip(names, images, strict=True)
    ]
    for stationary in (True, False):
        start = time.perf_counter()
        masks = [baselines.noisereduce_mask(y, sr, stationary=stationary) for y, sr in recordings]
        kind = "stationary" if stationary else "non-stationary"
        rows.append(
            (f"noisereduce mask ({kind})", score(masks, truths), time.perf_counter() - start)
        )

    print(f"test split: {root} ({len(names)} images); model: {run_dir / BEST}\n")
    print("| method | fg IoU | fg Dice | paper IoU (2-class) | s / image |")
    print("|---|---|---|---|---|")
    for label, scores, seconds in rows:
        values = [scores["fg_iou"], scores["fg_dice"], scores["paper_iou"], seconds / len(names)]
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    (run_dir / "baseline_comparison.json").write_text(
        json.dumps([{"method": r[0], **r[1]} for r in rows], indent=2)
    )


if __name__ == "__main__":
    main()
