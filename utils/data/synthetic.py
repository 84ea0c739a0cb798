"""A synthetic bird-sound data set in the BSD layout, for CPU runs and tests.

Each recording mixes one to three singers with a varied repertoire (sweeps, harmonic
calls of uneven harmonic energy, smooth random whistles, buzzes, trills, note trains,
chips; 1-10 kHz; some faint, some distant and reverberant) with field noise (gusty
wind, rain, stream, crickets, cicadas, traffic, aircraft, hum, distant birds, over a
broadband ambient floor) at an SNR between -5 and +20 dB, recorded at a gain from
loud to very quiet. A user's own clean calls and site noise (:class:`UserSounds`) can
replace the built-in ones in half of the training split's recordings. Images,
masks and denoised audio follow the dataset's own conventions (:mod:`utils.audio.bsd`);
``Clean_audios/`` also keeps the exact clean bird signal, which the real data set
cannot offer.

    python -m utils.data.synthetic --out data/synthetic --n_train 200 --n_valid 40 \
        --n_test 40 --seed 0 [--bird_dir MY_CALLS --noise_dir MY_SITE_NOISE]

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
from utils.data.mask_ops import VISIBLE_FLOOR, label_mask_half
from utils.data.noises import NOISES, field_noise
from utils.data.recordings import (
    NO_USER_SOUNDS,
    UserSounds,
    load_mono_cached,
    noise_stretch,
    user_clip,
)
from utils.data.sounds import bird_song

SPLITS = ("train", "valid", "test")
SAMPLE_RATES = (48000, 44100, 22050)
SAMPLE_RATE_PROBS = (0.7, 0.2, 0.1)
DURATION_RANGE_S = (2.0, 8.0)
SNR_RANGE_DB = (-5.0, 20.0)
STEREO_PROB = 0.1
NO_BIRD_PROB = 0.08
NOISE_RMS_RANGE = (0.015, 0.1)  # log-uniform; sets how bright the noise is in the image
QUIET_RECORDER_PROB = 0.2  # this often the recorder's gain is low instead:
QUIET_NOISE_RMS_RANGE = (0.002, 0.015)  # a nearly black image
USER_SOUND_PROB = 0.5  # a training recording uses the user's birds (noise) this often
VERSION = 2
MAX_PEAK = 0.98
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


def synthesize(plan: RecordingPlan, seed: int, sounds: UserSounds = NO_USER_SOUNDS) -> dict:
    """Make one recording's clean and noisy signals, ``(channels, samples)`` each.
    ``sounds`` are used in the training split only."""
    rng = np.random.default_rng([seed, SPLITS.index(plan.split), 1, plan.index])
    sr = int(rng.choice(SAMPLE_RATES, p=SAMPLE_RATE_PROBS))
    n = int(sr * rng.uniform(*DURATION_RANGE_S))
    channels = 2 if plan.stereo else 1
    has_bird = rng.random() >= NO_BIRD_PROB
    song, kinds = bird_song(rng, sr, n) if has_bird else (np.zeros(n), [])
    built_in_kinds = sorted(rng.choice(list(NOISES), size=int(rng.integers(1, 4)), replace=False))
    target_snr = rng.uniform(*SNR_RANGE_DB)
    quiet = rng.random() < QUIET_RECORDER_PROB
    noise_rms = np.exp(rng.uniform(*np.log(QUIET_NOISE_RMS_RANGE if quiet else NOISE_RMS_RANGE)))
    # The user's sounds draw from their own generator (the validation and test splits,
    # which never use them, stay the built-in ones).
    user_rng = np.random.default_rng([seed, SPLITS.index(plan.split), 2, plan.index])
    training = plan.split == "train"
    if training and has_bird and sounds.bird_files and user_rng.random() < USER_SOUND_PROB:
        song = user_clip(user_rng, sounds.bird_files, sr, n)
        has_bird = bool(np.any(song))
        kinds = ["user_bird"] if has_bird else []
    use_noise = training and sounds.noise_files and user_rng.random() < USER_SOUND_PROB
    noise_kinds = ["user_noise"] if use_noise else built_in_kinds

    clean, noise, snrs = np.zeros((channels, n)), np.zeros((channels, n)), []
    for channel in range(channels):
        # Each channel hears the bird with its own gain and delay, and its own noise.
        delay = int(rng.integers(0, 20)) if channel else 0
        clean[channel, delay:] = song[: n - delay] * (rng.uniform(0.6, 1.0) if channel else 1.0)
        if use_noise:
            file = sounds.noise_files[int(user_rng.integers(0, len(sounds.noise_files)))]
            noise[channel] = noise_stretch(load_mono_cached(file, sr), n, user_rng)[0]
        if not np.any(noise[channel]):  # built-in noise, or a silent stretch of the user's
            noise[channel] = field_noise(rng, sr, n, built_in_kinds)
            noise_kinds = sorted({*noise_kinds, *built_in_kinds})
        if has_bird:
            snr = target_snr + (rng.uniform(-3, 3) if channel else 0.0)
            gain = np.sqrt(
                np.mean(clean[channel] ** 2) / np.mean(noise[channel] ** 2) / 10 ** (snr / 10)
            )
            noise[channel] *= gain
        energies = np.sum(clean[channel] ** 2), np.sum(noise[channel] ** 2)
        snrs.append(float(10 * np.log10(energies[0] / energies[1])) if has_bird else None)
    # Recording level: noise of a given loudness, bird above it by the SNR, no clipping.
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
        # A quiet recorder's birds are labelled as they would be at a normal gain.
        "visible_floor": VISIBLE_FLOOR * min(1.0, noise_rms / NOISE_RMS_RANGE[0]),
    }


def write_recording(
    plan: RecordingPlan, seed: int, split_root: Path, sounds: UserSounds = NO_USER_SOUNDS
) -> list[dict]:
    """Synthesize one recording, write all its files, and return its manifest rows."""
    rec = synthesize(plan, seed, sounds)
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
        mask_half = label_mask_half(clean_half, raw_half - clean_half, rec["visible_floor"])
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


def _write_recording_task(task: tuple[RecordingPlan, int, Path, UserSounds]) -> list[dict]:
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
    sounds: UserSounds = NO_USER_SOUNDS,
) -> Path:
    """Write the synthetic set under ``out`` and return the manifest's path.

    ``counts`` maps each split to its number of images; ``sounds``, a user's recordings,
    are mixed into the training split. A folder already holding a set made with the same
    settings is kept as it is; one made with other settings is refused unless
    ``overwrite`` is set.
    """
    out = Path(out)
    config = synthetic_config(counts, seed, sounds)
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
            (plan, seed, split_root, sounds)
            for plan in plan_split(split, config["counts"][split], seed)
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


def synthetic_config(
    counts: dict[str, int], seed: int, sounds: UserSounds = NO_USER_SOUNDS
) -> dict:
    """The settings that define a synthetic set (saved beside it as JSON)."""
    config = {
        "counts": {s: int(counts.get(s, 0)) for s in SPLITS},
        "seed": int(seed),
        "version": VERSION,
    }
    if sounds:
        config["user_sounds"] = sounds.describe()
    return config


def is_generated(
    out: str | Path, counts: dict[str, int], seed: int, sounds: UserSounds = NO_USER_SOUNDS
) -> bool:
    """True when ``out`` holds a complete synthetic set made with these settings."""
    return _read_config(Path(out)) == synthetic_config(counts, seed, sounds)


def is_synthetic_set(out: str | Path) -> bool:
    """True when ``out`` holds a complete synthetic set, whatever its settings."""
    return _read_config(Path(out)) is not None


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
    parser.add_argument("--bird_dir", default=None, help="your clean calls, mixed into training")
    parser.add_argument("--noise_dir", default=None, help="your site's noise, mixed into training")
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
    try:
        sounds = UserSounds.from_folders(args.bird_dir, args.noise_dir)
        sounds.warn_skipped()
        if is_generated(args.out, counts, args.seed, sounds):
            print(f"{args.out} already holds this synthetic set (seed {args.seed}); nothing to do")
        else:
            start = time.perf_counter()
            manifest = generate_dataset(
                args.out, counts, args.seed, args.workers, args.overwrite, sounds=sounds
            )
            elapsed, total = time.perf_counter() - start, sum(counts.values())
            print(f"{total} images in {args.out} in {elapsed:.1f} s ({total / elapsed:.1f}/s)")
            print(f"manifest: {manifest}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.preview:
        from utils.data.visualize import plot_examples

        plot_examples(Path(args.out) / "train", args.preview)
        print(f"preview: {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
