"""The real-world targets: a checkpoint against noisereduce on mixtures of the shared real
bird clips and real noise, at recorder gain 1 and at a low gain.

Builds the mixtures on first use (``utils.data.mixtures``: the ``birds_eval`` clips with
the ``noise_eval`` recordings at 0 and -5 dB in the bird band, seed 0; the same scaled
by ``--low_gain``), runs ``budsam_eval.py --recordings --birdnet`` on each (at gain 1
with the renderings of the trade-off table in docs/evaluation.md too), and prints
per SNR: SI-SDR improvement and BirdNET confidence of BudSAM (full box, the recordings'
default rendering, or the one its checkpoint records), noisereduce's two modes and the
noisy input, with the targets of the real-recordings issue checked.

    python -m bench.bench_realworld --checkpoint work_dir/<run>/budsam_model_best.pth
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

import budsam_eval
from utils.common.files import write_text
from utils.data.mixtures import MixtureSettings, build_mixtures
from utils.inference.segmenter import model_settings
from utils.model.sam import checkpoint_args

SHARED = Path(__file__).resolve().parents[2] / "shared" / "realworld"
NOISEREDUCE = ("noisereduce (stationary)", "noisereduce (non-stationary)")
INPUT = "identity (no denoising)"
# The renderings of the trade-off table in docs/evaluation.md (gain 1 only), beside the default.
TRADE_OFF = (
    "binary",
    "soft",
    "soft,floor=-20",
    "soft,floor=-10",
    "soft,floor=-20,margin=200:30",
    "gated,floor=-20,margin=200:30,far=-50,alpha=2,gamma=0.5,smooth=50:20",
    "gated,floor=-20,margin=200:30,far=-50,alpha=2,gamma=0.5",
    "gated,floor=-20,margin=200:30,far=-50,alpha=2",
    "gated,floor=-20,margin=200:30,far=-50,alpha=1",
    "gated,floor=-10,margin=200:30,far=-50,alpha=2",
)


def ensure_mixtures(out: Path, gain: float) -> Path:
    """The evaluation mixtures at ``gain`` (built on first use)."""
    if not (out / "mixtures.csv").is_file():
        settings = MixtureSettings(snrs_db=(0.0, -5.0), gain=gain, seed=0)
        build_mixtures(SHARED / "birds_eval", SHARED / "noise_eval", out, settings)
    return out


def per_snr(per_view_csv: Path) -> dict[tuple[str, float], dict[str, float]]:
    """Mean SI-SDR improvement and BirdNET confidence per (method, SNR) from per_view.csv."""
    groups: dict[tuple[str, float], dict[str, list[float]]] = {}
    with open(per_view_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            snr = float(row["name"].rsplit("__snr", 1)[1].removesuffix("dB"))
            group = groups.setdefault((row["method"], snr), {"si_sdr_imp": [], "birdnet": []})
            for key in group:
                if row[key]:
                    group[key].append(float(row[key]))
    return {
        key: {k: float(np.mean(v)) if v else math.nan for k, v in values.items()}
        for key, values in groups.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="data", help="where the mixtures are kept")
    p.add_argument("--out", default="results/realworld", help="where the results go")
    p.add_argument("--low_gain", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not (SHARED / "birds_eval").is_dir():
        print(f"error: the shared real-world clips are not at {SHARED}", file=sys.stderr)
        return 2
    report = {}
    for gain in (1.0, args.low_gain):
        mixtures = ensure_mixtures(Path(args.data) / f"realworld_eval_gain{gain:g}", gain)
        out = Path(args.out) / f"gain{gain:g}"
        renderings = TRADE_OFF if gain == 1.0 else []
        code = budsam_eval.main([
            "-i", str(mixtures), "-checkpoint", args.checkpoint, "-o", str(out), "--recordings",
            "--birdnet", "--threads", str(args.threads), "--overwrite",
            "--renderings", *renderings,
        ])  # fmt: skip
        if code:
            return code
        scores = per_snr(out / "per_view.csv")
        recorded = checkpoint_args(args.checkpoint)
        settings = model_settings(args.checkpoint, recorded.get("model_type", ""), recorded)
        default = f"rendered {settings.recording_defaults()[1].spec}"
        budsam = next(m for m, _ in scores if m.startswith("BudSAM") and m.endswith(default))
        report[gain] = {
            f"{method} @ {snr:+g} dB": values for (method, snr), values in sorted(scores.items())
        }
        print(f"\ngain {gain:g}: SI-SDR improvement (dB) / BirdNET confidence")
        for snr in (0.0, -5.0):
            rows = [budsam, *NOISEREDUCE, INPUT]
            for method in rows:
                values = scores[(method, snr)]
                print(f"  {snr:+g} dB  {method:<70} {values['si_sdr_imp']:6.2f}  "
                      f"{values['birdnet']:.3f}")  # fmt: skip
            best_nr = max(scores[(m, snr)]["si_sdr_imp"] for m in NOISEREDUCE)
            ours = scores[(budsam, snr)]
            heard = max(scores[(m, snr)]["birdnet"] for m in (*NOISEREDUCE, INPUT))
            print(f"  target SI-SDR imp >= {best_nr + 3:.2f}: "
                  f"{'met' if ours['si_sdr_imp'] >= best_nr + 3 else 'NOT met'}; "
                  f"target BirdNET >= {heard:.3f}: "
                  f"{'met' if ours['birdnet'] >= heard else 'NOT met'}")  # fmt: skip
    write_text(Path(args.out) / "bench_realworld.json", json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
