"""Reproducible mixtures of real bird clips and real noise, in the BSD layout.

Each bird clip is mixed, at each requested SNR, with a stretch of one noise recording
drawn from a generator seeded by (seed, clip, SNR), so a seed always gives the same
set. The SNR is measured in the bird band (1-10 kHz): the ratio of the clip's energy
to the noise's there. Both are resampled to one rate and mixed to mono; the mixture is
scaled to a peak of ``peak`` and then by ``gain`` (a recorder's input gain), and the
clean clip by the same factor, so ``Raw_audios/`` = ``Clean_audios/`` + noise exactly.
Images and masks follow the synthetic set's rules (:func:`label_mask_half`: the bins
where the bird is louder than the noise), so IoU, the oracle and the energy mask can
be scored too.

    python -m utils.data.mixtures --birds ../shared/realworld/birds_eval \\
        --noise ../shared/realworld/noise_eval --out data/realworld_eval --snr 0 -5
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.audio import bsd
from utils.audio import io as audio_io
from utils.audio.conventions import WINDOW_LENGTH
from utils.common.files import write_rows_csv
from utils.common.progress import Progress
from utils.data.bsd_layout import CLEAN_AUDIO_DIR, IMAGES_DIR, MASKS_DIR, RAW_AUDIO_DIR
from utils.data.image_io import write_png
from utils.data.mask_ops import label_mask_half
from utils.data.recordings import audio_files, load_mono, noise_stretch

BIRD_BAND_HZ = (1000.0, 10000.0)
MANIFEST_FILE = "mixtures.csv"
CONFIG_FILE = "mixtures_config.json"
SOURCE_MANIFEST = "MANIFEST.tsv"  # beside the bird and noise folders: each file's kind
COLUMNS = ("name", "bird", "bird_kind", "noise", "noise_kind", "snr_db", "noise_offset_s", "gain")


@dataclass(frozen=True)
class MixtureSettings:
    """What defines a mixture set (saved beside it)."""

    snrs_db: tuple[float, ...] = (0.0, -5.0)
    sample_rate: int = 48000
    peak: float = 0.5
    gain: float = 1.0
    seed: int = 0


def band_energy(y: np.ndarray, sr: int, band: tuple[float, float] = BIRD_BAND_HZ) -> float:
    """Energy of ``y`` between the band's edges (Hz), from its spectrum."""
    spectrum = np.fft.rfft(y)
    hertz = np.fft.rfftfreq(len(y), 1.0 / sr)
    inside = (hertz >= band[0]) & (hertz <= band[1])
    return float(np.sum(np.abs(spectrum[inside]) ** 2))


def mix(bird: np.ndarray, noise: np.ndarray, snr_db: float, sr: int) -> np.ndarray:
    """``noise`` scaled so that the bird-band SNR of ``bird`` over it is ``snr_db``.

    Raises:
        ValueError: when either has no energy in the bird band.
    """
    bird_energy, noise_energy = band_energy(bird, sr), band_energy(noise, sr)
    if bird_energy <= 0 or noise_energy <= 0:
        raise ValueError("no energy in the bird band (1-10 kHz)")
    return noise * np.sqrt(bird_energy / noise_energy / 10 ** (snr_db / 10))


def source_kinds(folder: Path) -> dict[str, str]:
    """File name -> kind (species or noise type) from the ``MANIFEST.tsv`` beside
    ``folder``, if there is one."""
    manifest = folder.parent / SOURCE_MANIFEST
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {row["file"]: row["kind"] for row in rows if row.get("folder") == folder.name}


def mixture_name(bird: Path, snr_db: float) -> str:
    """``STEM__snr-5dB``: unique for unique stems and SNRs."""
    return f"{bird.stem}__snr{snr_db:+g}dB"


def build_mixtures(
    bird_dir: str | Path,
    noise_dir: str | Path,
    out: str | Path,
    settings: MixtureSettings = MixtureSettings(),
    progress: bool = True,
) -> Path:
    """Write every bird clip mixed at every SNR into ``out/test`` (a BSD root); returns the
    manifest's path. Files that cannot be read are skipped with a warning.

    Raises:
        ValueError: naming the folder, when a folder holds no recordings, or ``out``
            already holds files.
    """
    bird_dir, noise_dir, out = Path(bird_dir), Path(noise_dir), Path(out)
    birds, noises = audio_files(bird_dir), audio_files(noise_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: already holds files; choose an empty or new folder")
    split = out / "test"
    for folder in (IMAGES_DIR, MASKS_DIR, RAW_AUDIO_DIR, CLEAN_AUDIO_DIR):
        (split / folder).mkdir(parents=True, exist_ok=True)
    stems = [p.stem for p in birds]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise ValueError(f"{bird_dir}: several clips share a name ({repeated[:3]}); rename them")
    snrs = tuple(dict.fromkeys(settings.snrs_db))
    bird_kinds, noise_kinds = source_kinds(bird_dir), source_kinds(noise_dir)
    sr = settings.sample_rate
    noise_cache: dict[Path, np.ndarray] = {}
    rows = []
    bar = Progress(len(birds) * len(snrs), "mixtures", enabled=progress)
    for b, bird_path in enumerate(birds):
        try:
            bird = load_mono(bird_path, sr)
        except ValueError as err:
            print(f"warning: skipped: {err}", file=sys.stderr)
            continue
        if len(bird) < WINDOW_LENGTH:
            print(f"warning: skipped: {bird_path}: shorter than one STFT window", file=sys.stderr)
            continue
        for s, snr_db in enumerate(snrs):
            rng = np.random.default_rng([settings.seed, b, s])
            noise_path = noises[int(rng.integers(0, len(noises)))]
            try:
                if noise_path not in noise_cache:
                    noise_cache[noise_path] = load_mono(noise_path, sr)
                noise, offset = noise_stretch(noise_cache[noise_path], len(bird), rng)
                noise = mix(bird, noise, snr_db, sr)
            except ValueError as err:
                print(f"warning: skipped {bird_path.name} at {snr_db} dB: {err}", file=sys.stderr)
                continue
            raw = bird + noise
            scale = settings.gain * settings.peak / max(float(np.max(np.abs(raw))), 1e-12)
            name = mixture_name(bird_path, snr_db)
            write_example(split, name, bird * scale, noise * scale, sr)
            values = (
                name, bird_path.name, bird_kinds.get(bird_path.name, ""), noise_path.name,
                noise_kinds.get(noise_path.name, ""), snr_db, round(offset / sr, 4), settings.gain,
            )  # fmt: skip
            rows.append(dict(zip(COLUMNS, values, strict=True)))
            bar.update()
    bar.close()
    manifest = out / MANIFEST_FILE
    write_rows_csv(manifest, rows, COLUMNS)
    config = {**settings.__dict__, "birds": str(bird_dir), "noise": str(noise_dir)}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return manifest


def write_example(split: Path, name: str, clean: np.ndarray, noise: np.ndarray, sr: int) -> None:
    """One mixture's raw and clean audio (32-bit float), image and labelled mask."""
    raw = clean + noise
    audio_io.write_audio(split / RAW_AUDIO_DIR / f"{name}.wav", raw, sr, subtype="FLOAT")
    audio_io.write_audio(split / CLEAN_AUDIO_DIR / f"{name}.wav", clean, sr, subtype="FLOAT")
    raw_half, clean_half = bsd.stft_half(raw), bsd.stft_half(clean)
    mask_half = label_mask_half(clean_half, raw_half - clean_half)
    write_png(split / IMAGES_DIR / f"{name}.png", bsd.two_sided(bsd.spectrogram_to_image(raw_half)))
    write_png(split / MASKS_DIR / f"{name}.png", bsd.two_sided(mask_half))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--birds", required=True, help="folder of clean bird clips")
    p.add_argument("--noise", required=True, help="folder of noise recordings")
    p.add_argument("--out", required=True, help="new folder: a BSD root with a test split")
    p.add_argument("--snr", type=float, nargs="+", default=[0.0, -5.0], help="bird-band SNRs, dB")
    p.add_argument("--sr", type=int, default=48000, help="sample rate of the mixtures")
    p.add_argument("--peak", type=float, default=0.5, help="peak level of each mixture")
    p.add_argument("--gain", type=float, default=1.0, help="then this factor (recorder gain)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    settings = MixtureSettings(tuple(args.snr), args.sr, args.peak, args.gain, args.seed)
    try:
        manifest = build_mixtures(args.birds, args.noise, args.out, settings)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"mixtures: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
