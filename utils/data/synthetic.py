"""A synthetic bird-sound data set in the BSD layout, for CPU runs and tests.

Each recording mixes a varied bird repertoire (sweeps, harmonic stacks, trills,
vibrato whistles, chips; 1-10 kHz) with field noise (wind, rain, stream, insects,
hum, over a broadband ambient floor) at an SNR between -5 and +20 dB. Images,
masks and denoised audio follow the dataset's own conventions (:mod:`utils.audio.bsd`);
``Clean_audios/`` also keeps the exact clean bird signal, which the real data set
cannot offer.

    python -m utils.data.synthetic --out data/synthetic --n_train 200 --n_valid 40 \
        --n_test 40 --seed 0

Deterministic for a seed: every recording draws from its own generator seeded by
(seed, split, index), so the output does not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import threadpoolctl

from utils.audio import bsd
from utils.audio import io as audio_io
from utils.common.cpu import keep_freed_memory
from utils.common.files import write_rows_csv
from utils.common.progress import Progress
from utils.data.bsd_layout import (
    CLEAN_AUDIO_DIR,
    DENOISED_AUDIO_DIR,
    IMAGES_DIR,
    MASKS_DIR,
    RAW_AUDIO_DIR,
)
from utils.data.image_io import write_png
from utils.data.mask_ops import clean_mask_half
from utils.data.sounds import NOISES, bird_song, field_noise

SPLITS = ("train", "valid", "test")
SAMPLE_RATES = (48000, 44100, 22050)
SAMPLE_RATE_PROBS = (0.7, 0.2, 0.1)
DURATION_RANGE_S = (2.0, 8.0)
SNR_RANGE_DB = (-5.0, 20.0)
STEREO_PROB = 0.1
NO_BIRD_PROB = 0.08
NOISE_RMS_RANGE = (0.015, 0.1)  # log-uniform; sets how bright the noise is in the image
MAX_PEAK = 0.98
MIN_BLOB_PIXELS = 20  # in the one-sided half of the mask
CONFIG_FILE = "synthetic_config.json"
MANIFEST_FILE = "manifest.csv"
MANIFEST_COLUMNS = (
    "name",
    "split",
    "audio",
    "channel",
    "sample_rate",
    "duration_s",
    "snr_db",
    "noise_types",
    "vocalisation_types",
    "n_calls",
    "mask_fraction",
)


def label_mask_half(clean_half: np.ndarray, noise_half: np.ndarray) -> np.ndarray:
    """The clean-sound mask a careful labeller would draw, for bins 0 ... 512.

    Takes the ``(513, T)`` half spectra of the clean and the noise signal (see
    :func:`utils.audio.stft_half`) and returns a bool ``(513, T)`` array; BSD masks
    are mirror-symmetric, so :func:`utils.audio.two_sided` gives the full mask.
    Bins where the bird is louder than the noise (and visible in the image) are
    cleaned of speckle and closed into smooth blobs, like hand-drawn outlines.
    """
    clean_mag = np.abs(clean_half)
    if clean_mag.max() == 0:
        return np.zeros(clean_half.shape, dtype=bool)
    visible = clean_mag > max(2.0 / 255.0, clean_mag.max() * 10 ** (-35 / 20))
    dominant = (visible & (clean_mag > np.abs(noise_half))).astype(np.uint8)
    return clean_mask_half(
        dominant, open_size=(3, 3), close_size=(15, 7), min_area=MIN_BLOB_PIXELS, dilate_size=(5, 5)
    )


@dataclass(frozen=True)
class RecordingPlan:
    """Which recording to make: its split, index, file stem and channel count."""

    split: str
    index: int
    stem: str
    stereo: bool


def plan_split(split: str, n_images: int, seed: int) -> list[RecordingPlan]:
    """Recordings yielding exactly ``n_images`` images (a stereo one yields two)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), 0])
    plans, images = [], 0
    while images < n_images:
        stereo = n_images - images >= 2 and rng.random() < STEREO_PROB
        index = len(plans)
        plans.append(RecordingPlan(split, index, f"syn_{split}_{index:05d}", stereo))
        images += 2 if stereo else 1
    return plans


def synthesize(plan: RecordingPlan, seed: int) -> dict:
    """Make one recording's clean and noisy signals, ``(channels, samples)`` each."""
    rng = np.random.default_rng([seed, SPLITS.index(plan.split), 1, plan.index])
    sr = int(rng.choice(SAMPLE_RATES, p=SAMPLE_RATE_PROBS))
    n = int(sr * rng.uniform(*DURATION_RANGE_S))
    channels = 2 if plan.stereo else 1
    has_bird = rng.random() >= NO_BIRD_PROB
    song, kinds = bird_song(rng, sr, n) if has_bird else (np.zeros(n), [])
    noise_kinds = sorted(rng.choice(list(NOISES), size=int(rng.integers(1, 4)), replace=False))
    target_snr = rng.uniform(*SNR_RANGE_DB)

    clean, noise, snrs = np.zeros((channels, n)), np.zeros((channels, n)), []
    for channel in range(channels):
        # Each channel hears the bird with its own gain and delay, and its own noise.
        delay = int(rng.integers(0, 20)) if channel else 0
        clean[channel, delay:] = song[: n - delay] * (rng.uniform(0.6, 1.0) if channel else 1.0)
        noise[channel] = field_noise(rng, sr, n, noise_kinds)
        if has_bird:
            snr = target_snr + (rng.uniform(-3, 3) if channel else 0.0)
            gain = np.sqrt(
                np.mean(clean[channel] ** 2) / np.mean(noise[channel] ** 2) / 10 ** (snr / 10)
            )
            noise[channel] *= gain
        snrs.append(
            float(10 * np.log10(np.sum(clean[channel] ** 2) / np.sum(noise[channel] ** 2)))
            if has_bird
            else None
        )
    # Recording level: noise of a given loudness, bird above it by the SNR, no clipping.
    noise_rms = np.exp(rng.uniform(*np.log(NOISE_RMS_RANGE)))
    scale = noise_rms / np.sqrt(np.mean(noise**2))
    scale = min(scale, MAX_PEAK / (np.max(np.abs(clean + noise)) + 1e-12))
    clean, noise = clean * scale, noise * scale
    raw = audio_io.quantize_pcm16(clean + noise) / 32768.0  # exactly what the file will hold
    return {
        "sr": sr,
        "clean": clean,
        "raw": raw,
        "snrs": snrs,
        "kinds": kinds,
        "noise_kinds": noise_kinds,
    }


def write_recording(plan: RecordingPlan, seed: int, split_root: Path) -> list[dict]:
    """Synthesize one recording, write all its files, and return its manifest rows."""
    rec = synthesize(plan, seed)
    sr, raw, clean = rec["sr"], rec["raw"], rec["clean"]
    audio_io.write_audio(split_root / RAW_AUDIO_DIR / f"{plan.stem}.wav", raw, sr)
    audio_io.write_audio(
        split_root / CLEAN_AUDIO_DIR / f"{plan.stem}.wav", clean, sr, subtype="FLOAT"
    )
    channels = ("left", "right") if plan.stereo else (None,)
    rows = []
    for index, channel in enumerate(channels):
        name = plan.stem if channel is None else f"{plan.stem}_{channel}"
        raw_half = bsd.stft_half(raw[index])
        clean_half = bsd.stft_half(clean[index])
        mask_half = label_mask_half(clean_half, raw_half - clean_half)
        # The mask is mirror-symmetric, so its half is the weight of each bin.
        denoised = bsd.istft_half(raw_half * mask_half, length=raw.shape[1])
        image = bsd.two_sided(bsd.spectrogram_to_image(raw_half))
        mask = bsd.two_sided(mask_half)
        write_png(split_root / IMAGES_DIR / f"{name}.png", image)
        write_png(split_root / MASKS_DIR / f"{name}.png", mask)
        audio_io.write_audio(split_root / DENOISED_AUDIO_DIR / f"{name}.wav", denoised, sr)
        snr = rec["snrs"][index]
        rows.append(
            {
                "name": name,
                "split": plan.split,
                "audio": plan.stem,
                "channel": channel or "",
                "sample_rate": sr,
                "duration_s": round(raw.shape[1] / sr, 4),
                "snr_db": "" if snr is None else round(snr, 3),
                "noise_types": "+".join(rec["noise_kinds"]),
                "vocalisation_types": "+".join(sorted(set(rec["kinds"]))),
                "n_calls": len(rec["kinds"]),
                "mask_fraction": round(float(mask.mean()), 6),
            }
        )
    return rows


def _write_recording_task(task: tuple[RecordingPlan, int, Path]) -> list[dict]:
    return write_recording(*task)


def _init_worker() -> None:
    """Worker initializer: one BLAS thread, as in-process (the STFT's float32 matrix
    products may round differently with another thread count, and the set must not
    depend on the number of workers), and malloc keeping freed memory (faster)."""
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    keep_freed_memory()


def generate_dataset(
    out: str | Path,
    counts: dict[str, int],
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the synthetic set under ``out`` and return the manifest's path.

    ``counts`` maps each split to its number of images. A folder already holding a
    set made with the same settings is kept as it is; one made with other settings
    is refused unless ``overwrite`` is set.
    """
    out = Path(out)
    config = synthetic_config(counts, seed)
    existing = _read_config(out)
    if existing == config:
        return out / MANIFEST_FILE
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            found = f"a synthetic set made with {existing}" if existing else "other files"
            raise ValueError(
                f"{out}: already holds {found}; choose another --out or pass --overwrite"
            )
        _remove_synthetic(out)

    tasks = []
    for split in SPLITS:
        split_root = out / split
        for folder in (IMAGES_DIR, MASKS_DIR, RAW_AUDIO_DIR, DENOISED_AUDIO_DIR, CLEAN_AUDIO_DIR):
            (split_root / folder).mkdir(parents=True, exist_ok=True)
        tasks += [
            (plan, seed, split_root) for plan in plan_split(split, config["counts"][split], seed)
        ]

    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    rows: list[dict] = []
    total = sum(config["counts"].values())
    bar = Progress(total, "synthetic", enabled=progress, interval=max(1, total // 20))
    if workers == 1:
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            for result in map(_write_recording_task, tasks):
                rows += result
                bar.update(len(result))
    else:
        with multiprocessing.get_context("spawn").Pool(workers, _init_worker) as pool:
            for result in pool.imap(_write_recording_task, tasks, chunksize=4):
                rows += result
                bar.update(len(result))
    bar.close()

    manifest = out / MANIFEST_FILE
    write_rows_csv(manifest, rows, MANIFEST_COLUMNS)
    # Written last: its presence marks the set complete.
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return manifest


def synthetic_config(counts: dict[str, int], seed: int) -> dict:
    """The settings that define a synthetic set (saved beside it as JSON)."""
    return {"counts": {s: int(counts.get(s, 0)) for s in SPLITS}, "seed": int(seed), "version": 1}


def is_generated(out: str | Path, counts: dict[str, int], seed: int) -> bool:
    """True when ``out`` holds a complete synthetic set made with these settings."""
    return _read_config(Path(out)) == synthetic_config(counts, seed)


def _read_config(out: Path) -> dict | None:
    """The config of a complete set under ``out`` (written last), else None."""
    config_path = out / CONFIG_FILE
    if not (config_path.is_file() and (out / MANIFEST_FILE).is_file()):
        return None
    try:
        return json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _remove_synthetic(out: Path) -> None:
    """Delete what a previous synthetic run wrote; refuse if anything else is there."""
    ours = {*SPLITS, MANIFEST_FILE, CONFIG_FILE}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
    if foreign:
        raise ValueError(
            f"{out}: holds files that are not a synthetic set ({', '.join(foreign[:3])}); "
            "refusing to delete them"
        )
    for split in SPLITS:
        shutil.rmtree(out / split, ignore_errors=True)
    for name in (MANIFEST_FILE, CONFIG_FILE):
        (out / name).unlink(missing_ok=True)


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a synthetic ``manifest.csv`` as dicts of strings."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder to write the BSD layout into")
    parser.add_argument("--n_train", type=int, default=200, help="training images")
    parser.add_argument("--n_valid", type=int, default=40, help="validation images")
    parser.add_argument("--n_test", type=int, default=40, help="test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a synthetic set made with other settings"
    )
    parser.add_argument(
        "--preview", default=None, help="also save a figure of a few training examples here"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    counts = {"train": args.n_train, "valid": args.n_valid, "test": args.n_test}
    if min(counts.values()) < 0:
        print("error: split sizes must be >= 0", file=sys.stderr)
        return 2
    if is_generated(args.out, counts, args.seed):
        print(f"{args.out} already holds this synthetic set (seed {args.seed}); nothing to do")
    else:
        start = time.perf_counter()
        try:
            manifest = generate_dataset(
                args.out, counts, seed=args.seed, workers=args.workers, overwrite=args.overwrite
            )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        elapsed = time.perf_counter() - start
        total = sum(counts.values())
        print(f"{total} images in {args.out} in {elapsed:.1f} s ({total / elapsed:.1f} images/s)")
        print(f"manifest: {manifest}")
    if args.preview:
        from utils.data.visualize import plot_examples

        plot_examples(Path(args.out) / "train", args.preview)
        print(f"preview: {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
