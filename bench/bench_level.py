"""The level targets of :mod:`utils.audio.level`, measured on a training split.

For every raw recording of the split (each channel), the bird band's median and 99th
percentile of ``|STFT|``; prints their distribution and the medians, which are
``FLOOR_TARGET`` and ``PEAK_TARGET``.

    python -m bench.bench_level --split data/synthetic/train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from utils.audio import io as audio_io
from utils.audio.kernel import stft_planes
from utils.audio.level import FLOOR_TARGET, PEAK_TARGET, band_statistics
from utils.data.bsd_layout import RAW_AUDIO_DIR


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="data/synthetic/train", help="a split with Raw_audios/")
    args = p.parse_args(argv)
    folder = Path(args.split) / RAW_AUDIO_DIR
    stats = []
    for path in sorted(folder.iterdir()):
        try:
            signals, sr = audio_io.load_audio_channels(path)
        except ValueError as err:
            print(f"warning: skipped: {err}", file=sys.stderr)
            continue
        stats += [band_statistics(stft_planes(y), sr) for y in signals]
    if not stats:
        print(f"error: {folder}: no readable recordings", file=sys.stderr)
        return 2
    medians, peaks = np.array(stats).T
    for name, values in (("median |S|", medians), ("99th percentile |S|", peaks)):
        low, mid, high = np.percentile(values, (10, 50, 90))
        print(f"{name}: 10 % {low:.4f}, median {mid:.4f}, 90 % {high:.4f} ({len(values)} channels)")
    print(f"targets: FLOOR_TARGET = {np.median(medians):.4f}, PEAK_TARGET = {np.median(peaks):.3f}")
    print(
        f"in utils/audio/level.py now: FLOOR_TARGET = {FLOOR_TARGET}, PEAK_TARGET = {PEAK_TARGET}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
