"""A synthetic bird-sound data set in the BSD layout, for CPU runs and tests.

Each recording mixes a varied bird repertoire (sweeps, harmonic stacks, trills,
vibrato whistles, chips; 1-10 kHz) with field noise (wind, rain, stream, insects,
hum, over a broadband ambient floor) at an SNR between -5 and +20 dB. Images,
masks and denoised audio follow the dataset's own conventions (:mod:`utils.audio`);
``Clean_audios/`` also keeps the exact clean bird signal, which the real data set
cannot offer.

    python -m utils.synthetic --out data/synthetic --n_train 200 --n_valid 40 --n_test 40 --seed 0

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
from scipy import signal as sps

from utils import audio
from utils.allocator import keep_freed_memory
from utils.bsd_layout import (
    CLEAN_AUDIO_DIR,
    DENOISED_AUDIO_DIR,
    IMAGES_DIR,
    MASKS_DIR,
    RAW_AUDIO_DIR,
)
from utils.image_io import write_png
from utils.mask_ops import clean_mask_half
from utils.progress import Progress

SPLITS = ("train", "valid", "test")
SAMPLE_RATES = (48000, 44100, 22050)
SAMPLE_RATE_PROBS = (0.7, 0.2, 0.1)
DURATION_RANGE_S = (2.0, 8.0)
SNR_RANGE_DB = (-5.0, 20.0)
BIRD_BAND_HZ = (1000.0, 10000.0)
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


# ----------------------------------------------------------------------------- bird calls


def _envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth call envelope: quick attack, longer decay, zero at both ends."""
    attack = max(2, int(n * rng.uniform(0.05, 0.3)))
    decay = max(2, n - attack)
    return np.concatenate(
        [
            np.sin(np.linspace(0, np.pi / 2, attack)) ** 2,
            np.cos(np.linspace(0, np.pi / 2, decay)) ** 2,
        ]
    )


def _tone(freq: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A sinusoid following the instantaneous frequency track ``freq`` (Hz per sample)."""
    return np.sin(2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi))


def _top_hz(sr: int) -> float:
    return min(BIRD_BAND_HZ[1], 0.45 * sr)


def sweep(rng: np.random.Generator, sr: int, upward: bool) -> np.ndarray:
    """A frequency-modulated sweep of 0.1-0.5 s, up or down, linear or curved."""
    n = int(sr * rng.uniform(0.1, 0.5))
    low = rng.uniform(BIRD_BAND_HZ[0] + 500, 5000)
    high = min(low + rng.uniform(1000, 4000), _top_hz(sr))
    shape = np.linspace(0, 1, n) ** rng.uniform(0.5, 2.0)
    freq = low + (high - low) * (shape if upward else 1 - shape)
    return _envelope(n, rng) * _tone(freq, sr, rng)


def harmonic_stack(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A harmonic call: a slowly bending fundamental of 1-2.5 kHz with 2-4 harmonics."""
    n = int(sr * rng.uniform(0.2, 0.6))
    t = np.arange(n) / sr
    f0 = rng.uniform(BIRD_BAND_HZ[0], 2500) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    call = np.zeros(n)
    for harmonic in range(1, int(rng.integers(2, 5)) + 1):
        if f0.max() * harmonic < _top_hz(sr):
            call += _tone(f0 * harmonic, sr, rng) / harmonic
    return _envelope(n, rng) * call / np.max(np.abs(call))


def trill(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A trill: 5-15 repeats of one short (20-50 ms) downward note with short gaps."""
    note_n = int(sr * rng.uniform(0.02, 0.05))
    gap_n = int(sr * rng.uniform(0.01, 0.04))
    start = rng.uniform(3000, _top_hz(sr))
    freq = np.linspace(start, start - rng.uniform(500, 2000), note_n)
    note = _envelope(note_n, rng) * _tone(freq, sr, rng)
    period = np.concatenate([note, np.zeros(gap_n)])
    return np.tile(period, int(rng.integers(5, 16)))


def vibrato_whistle(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A whistle of 0.3-1.2 s at 2-7 kHz with 5-30 Hz vibrato of 100-600 Hz depth."""
    n = int(sr * rng.uniform(0.3, 1.2))
    t = np.arange(n) / sr
    centre = rng.uniform(2000, min(7000, _top_hz(sr) - 700))
    freq = centre + rng.uniform(100, 600) * np.sin(2 * np.pi * rng.uniform(5, 30) * t)
    return _envelope(n, rng) * _tone(freq, sr, rng)


def chip(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A chip: a 10-30 ms steep downward sweep across several kHz."""
    n = int(sr * rng.uniform(0.01, 0.03))
    high = rng.uniform(5000, _top_hz(sr))
    freq = np.linspace(high, high - rng.uniform(2000, 4000), n)
    decay = np.exp(-np.linspace(0, rng.uniform(3, 6), n))
    return _envelope(n, rng) * decay * _tone(freq, sr, rng)


VOCALISATIONS = {
    "sweep_up": lambda rng, sr: sweep(rng, sr, upward=True),
    "sweep_down": lambda rng, sr: sweep(rng, sr, upward=False),
    "harmonic_stack": harmonic_stack,
    "trill": trill,
    "vibrato_whistle": vibrato_whistle,
    "chip": chip,
}


def bird_song(rng: np.random.Generator, sr: int, n: int) -> tuple[np.ndarray, list[str]]:
    """1-6 calls of random types at random times (overlaps allowed), peak 1."""
    song = np.zeros(n)
    kinds = list(rng.choice(list(VOCALISATIONS), size=int(rng.integers(1, 7))))
    for kind in kinds:
        call = VOCALISATIONS[kind](rng, sr)[: n // 2] * rng.uniform(0.3, 1.0)
        start = int(rng.integers(0, n - len(call)))
        song[start : start + len(call)] += call
    return song / np.max(np.abs(song)), kinds


# ----------------------------------------------------------------------------- noise


def _filtered_noise(
    rng: np.random.Generator, n: int, sr: int, band: tuple[float, float]
) -> np.ndarray:
    """White noise band-passed to ``band`` Hz (a 0 lower edge means low-pass)."""
    low, high = band
    high = min(high, 0.45 * sr)
    if low <= 0:
        sos = sps.butter(4, high, btype="lowpass", fs=sr, output="sos")
    else:
        sos = sps.butter(4, (low, high), btype="bandpass", fs=sr, output="sos")
    return sps.sosfilt(sos, rng.standard_normal(n))


def _slow_modulation(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """A positive random envelope that changes about ``rate_hz`` times a second."""
    knots = rng.standard_normal(max(4, int(n / sr * rate_hz) + 2))
    curve = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    return np.exp(0.8 * curve)


def wind(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Gusty low-frequency wind: low-passed noise (100-500 Hz) under slow gusts."""
    rumble = _filtered_noise(rng, n, sr, (0.0, rng.uniform(100, 500)))
    return rumble * _slow_modulation(rng, n, sr, rng.uniform(0.5, 2.0))


def rain(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Broadband impulsive rain: random drops (short decaying bursts) over a soft hiss."""
    drops = np.zeros(n)
    n_drops = int(n / sr * rng.uniform(20, 200))
    drops[rng.integers(0, n, n_drops)] = rng.lognormal(0, 0.7, n_drops) * rng.choice(
        [-1, 1], n_drops
    )
    burst_n = int(sr * 0.004)
    burst = rng.standard_normal(burst_n) * np.exp(-np.linspace(0, 5, burst_n))
    hiss = 0.05 * _filtered_noise(rng, n, sr, (500.0, 20000.0))
    return sps.fftconvolve(drops, burst)[:n] + hiss


def stream(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Stream or water noise: 200-4000 Hz noise with a bubbling 2-8 Hz modulation."""
    low = rng.uniform(150, 400)
    water = _filtered_noise(rng, n, sr, (low, rng.uniform(2500, 5000)))
    return water * _slow_modulation(rng, n, sr, rng.uniform(2, 8)) ** 0.5


def insect(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Narrow-band pulsed insect song at 3-9 kHz, overlapping the bird band."""
    t = np.arange(n) / sr
    carrier_hz = rng.uniform(3000, min(9000, 0.42 * sr))
    jitter = 40 * _filtered_noise(rng, n, sr, (0.0, 30.0))  # slight frequency wobble
    carrier = _tone(carrier_hz + jitter, sr, rng)
    pulse = (np.sin(2 * np.pi * rng.uniform(10, 60) * t) > rng.uniform(-0.3, 0.3)).astype(float)
    pulse = np.convolve(pulse, np.hanning(int(sr * 0.003)) / (sr * 0.0015), mode="same")
    return carrier * pulse


def hum(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Distant electrical or engine hum: 50/60 Hz and a few harmonics."""
    base = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
    freq = np.full(n, base)
    return sum(_tone(freq * k, sr, rng) / k for k in range(1, int(rng.integers(2, 6)) + 1))


NOISES = {"wind": wind, "rain": rain, "stream": stream, "insect": insect, "hum": hum}


def ambient(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """The broadband floor of any field recording: noise tilted down above 2-6 kHz."""
    sos = sps.butter(1, rng.uniform(2000, 6000), btype="lowpass", fs=sr, output="sos")
    return sps.sosfilt(sos, rng.standard_normal(n)) + 0.1 * rng.standard_normal(n)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def field_noise(rng: np.random.Generator, sr: int, n: int, kinds: list[str]) -> np.ndarray:
    """A mix of the given noise kinds (random weights) over a weaker ambient floor."""
    mix = np.zeros(n)
    for kind in kinds:
        mix += rng.uniform(0.3, 1.0) * _unit_rms(NOISES[kind](rng, sr, n))
    return mix + rng.uniform(0.15, 0.5) * np.sqrt(np.mean(mix**2)) * _unit_rms(ambient(rng, sr, n))


# ----------------------------------------------------------------------------- masks


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


# ----------------------------------------------------------------------------- recordings


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
    raw = audio.quantize_pcm16(clean + noise) / 32768.0  # exactly what the file will hold
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
    audio.write_audio(split_root / RAW_AUDIO_DIR / f"{plan.stem}.wav", raw, sr)
    audio.write_audio(split_root / CLEAN_AUDIO_DIR / f"{plan.stem}.wav", clean, sr, subtype="FLOAT")
    channels = ("left", "right") if plan.stereo else (None,)
    rows = []
    for index, channel in enumerate(channels):
        name = plan.stem if channel is None else f"{plan.stem}_{channel}"
        raw_half = audio.stft_half(raw[index])
        clean_half = audio.stft_half(clean[index])
        mask_half = label_mask_half(clean_half, raw_half - clean_half)
        # The mask is mirror-symmetric, so its half is the weight of each bin.
        denoised = audio.istft_half(raw_half * mask_half, length=raw.shape[1])
        image = audio.two_sided(audio.spectrogram_to_image(raw_half))
        mask = audio.two_sided(mask_half)
        write_png(split_root / IMAGES_DIR / f"{name}.png", image)
        write_png(split_root / MASKS_DIR / f"{name}.png", mask)
        audio.write_audio(split_root / DENOISED_AUDIO_DIR / f"{name}.wav", denoised, sr)
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


# ----------------------------------------------------------------------------- data set


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
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
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
        from utils.visualize import plot_examples

        plot_examples(Path(args.out) / "train", args.preview)
        print(f"preview: {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
