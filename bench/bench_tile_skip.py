"""Benchmark: which tiles of a recording need not go through the model.

    python -m bench.bench_tile_skip --checkpoint CKPT [--max_files 60]

Every tile of every recording (level-normalised, at the model's rate, as
``budsam_infer.py`` cuts recordings) goes through the model; for each, its
:func:`utils.inference.predict.tile_contrast` and the fraction of its pixels the model
keeps are noted. The threshold is chosen on the tuning sets (the synthetic validation
split and the ``*_train`` mixtures of ``data/realworld_tune``): the highest of a grid
below which no tile with any kept pixel lies. It is then reported on sets not tuned on:
the synthetic test split, the ``*_eval`` mixtures, and the real soundscapes: the
fraction of tiles skipped and of the model's kept pixels lost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from utils.common.cpu import cpu_threads
from utils.data.inputs import RECORDING, LoadOptions, Source, load_views
from utils.data.preprocess import full_box, preprocess_image
from utils.data.tiling import crop_input, overlapping_tile_starts
from utils.inference.predict import tile_contrast, tile_maps
from utils.inference.segmenter import DEFAULT_OVERLAP, load_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared" / "realworld"
TUNING = {
    "synthetic valid": REPO_ROOT / "data/synthetic/valid/Raw_audios",
    "*_train mixtures": REPO_ROOT / "data/realworld_tune/test/Raw_audios",
}
EVALUATION = {
    "synthetic test": REPO_ROOT / "data/synthetic/test/Raw_audios",
    "*_eval mixtures": REPO_ROOT / "data/realworld_eval_gain1/test/Raw_audios",
    "soundscapes": SHARED / "soundscapes",
}
GRID = (0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15)


def tile_table(model, settings, folder: Path, max_files: int) -> np.ndarray:
    """``(tiles, 2)``: each tile's contrast and the fraction of its pixels the model keeps."""
    rows = []
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".mp3", ".flac"))
    for path in files[:max_files]:
        views = load_views(
            Source(path.stem, RECORDING, path), LoadOptions(settings.sample_rate, True)
        )
        for view in views:
            starts = overlapping_tile_starts(
                view.image.shape[1], settings.tile_width, DEFAULT_OVERLAP
            )
            crops = [crop_input(view.image, s, settings.tile_width, settings.half_spectrum)
                     for s in starts]  # fmt: skip
            size = model.img_size
            for first in range(0, len(crops), 8):
                batch = crops[first : first + 8]
                maps = tile_maps(model, batch, [full_box(size, size)] * len(batch))
                for crop, tile_map in zip(batch, maps, strict=True):
                    contrast = tile_contrast(preprocess_image(crop, size)[0])
                    rows.append((contrast, float(np.mean(tile_map >= 0.5))))
    return np.array(rows).reshape(-1, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--max_files", type=int, default=60, help="recordings per set at most")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    with cpu_threads(args.threads):
        model, settings = load_model(args.checkpoint)
        tables = {}
        for name, folder in {**TUNING, **EVALUATION}.items():
            if not folder.is_dir():
                print(f"{name}: {folder} missing, left out (docs/evaluation.md)")
                continue
            tables[name] = tile_table(model, settings, folder, args.max_files)
    tuned = [tables[name] for name in TUNING if name in tables]
    if not tuned:
        raise SystemExit("no tuning set found")
    tuning = np.concatenate(tuned)
    lossless = [t for t in GRID if not np.any(tuning[tuning[:, 0] < t, 1] > 0)]
    chosen = max(lossless, default=0.0)
    print(f"\nchosen threshold: {chosen} (highest of {GRID} skipping no tile with kept pixels "
          f"on the tuning sets)\n")  # fmt: skip
    print("| set | tiles | tiles with kept pixels | skipped | kept pixels lost |")
    print("|---|---:|---:|---:|---:|")
    for name, table in tables.items():
        skipped = table[:, 0] < chosen
        lost = table[skipped, 1].sum() / max(table[:, 1].sum(), 1e-12)
        role = "tuning" if name in TUNING else "evaluation"
        print(f"| {name} ({role}) | {len(table)} | {np.mean(table[:, 1] > 0):.1%} | "
              f"{skipped.mean():.1%} | {lost:.2%} |")  # fmt: skip


if __name__ == "__main__":
    main()
