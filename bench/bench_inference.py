"""Benchmark: seconds of audio denoised per second by budsam_infer.py, against
noisereduce's non-stationary gate on the same recordings, side by side in one run.

    python -m bench.bench_inference --n 40 --repeats 3 [--checkpoint CKPT]

The recordings are the raw audio of ``--n`` synthetic test recordings (2-8 s,
mono and stereo, 22-48 kHz) copied into a folder. ``budsam_infer.py`` runs on it
as a user would (a fresh process per repeat, ``--threads`` torch threads); its
``summary.json`` gives its processing time (reading each file to writing its
outputs; model loading excluded, reported apart) and the process's peak memory.
noisereduce runs in this process on the same files, one thread (``n_jobs=1``),
timed the same way: reading, denoising every channel, writing a WAV. So does
everything ``budsam_infer.py`` does but the model (reading, the BSD spectrogram of
each channel, a free stand-in mask, the mask PNG, the masked inverse STFT, the
WAV): the speed no model could take ``budsam_infer.py`` past.
Without ``--checkpoint`` a random ``vit_tiny`` is timed with each of two input
settings: ``paper``, the training script's default (whole images, as the paper;
recordings then go in tiles of 3,032 frames, a BSD image's width) and ``preset``,
the quick-start preset's (1,024-frame half-spectrum tiles, 3x the tiles per second
of audio). The model's speed does not depend on its weights, but the masked inverse
STFT and the mask PNG cost more for a random model's dense masks (about 40 % of the
pixels) than for a trained model's.

Everything runs on the stated number of threads for torch, OpenCV and NumPy's BLAS
(``budsam_infer.py --threads``), and for 2 or more threads also with ``--io_thread``
(files read and written on one of them); noisereduce and the no-model path on one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.timing import machine, spread
from utils.audio import io as audio_io
from utils.common.checkpoint_io import save_checkpoint
from utils.common.cpu import cpu_threads
from utils.data import inputs
from utils.data.bsd_layout import RAW_AUDIO_DIR
from utils.data.synthetic import generate_dataset
from utils.evaluation.baselines import noisereduce_audio
from utils.inference.folder_run import write_source_outputs
from utils.inference.segmenter import RECORDING_RENDERING, ModelSettings, Segmenter
from utils.model.sam import build_sam, checkpoint_args

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUT_SETTINGS = {
    "paper": {"model_type": "vit_tiny"},
    "preset": {"model_type": "vit_tiny", "tile_width": 1024, "half_spectrum": True},
}


def run_infer(recordings: Path, out: Path, checkpoint: Path, threads: int, io: bool) -> dict:
    """One ``budsam_infer.py`` run in a fresh process (``--io_thread`` with ``io``); returns
    its summary."""
    command = [sys.executable, "budsam_infer.py", "-i", str(recordings), "-o", str(out),
               "-checkpoint", str(checkpoint), "--device", "cpu", "--threads", str(threads),
               "--overwrite"] + (["--io_thread"] if io else [])  # fmt: skip
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    return json.loads((out / "summary.json").read_text())


def noisereduce_seconds(recordings: Path, out: Path) -> tuple[float, float]:
    """(audio seconds, processing seconds) of noisereduce non-stationary on every file:
    reading it, denoising each channel, writing the result, as budsam_infer.py does."""
    out.mkdir(exist_ok=True)
    total_audio, start = 0.0, time.perf_counter()
    for path in sorted(recordings.iterdir()):
        signals, sr = audio_io.load_audio_channels(path)
        denoised = np.stack([noisereduce_audio(y, sr, stationary=False) for y in signals])
        audio_io.write_audio(out / f"{path.stem}.wav", denoised, sr)
        total_audio += signals.size / sr
    return total_audio, time.perf_counter() - start


def transforms_seconds(
    recordings: Path, out: Path, sample_rate: int | None = None
) -> tuple[float, float]:
    """(audio seconds, processing seconds) of ``budsam_infer.py``'s work on recordings
    without the model, with its own functions (resampling to ``sample_rate``, the level,
    the default rendering); the probability map is the image's grey level, at no cost."""
    for folder in ("masks", "denoised"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    options = inputs.LoadOptions(sample_rate, normalize_level=True)
    # Rendering needs no model: the stand-in segmenter only renders.
    renderer = Segmenter(None, ModelSettings("none"), rendering=RECORDING_RENDERING)
    total_audio, start = 0.0, time.perf_counter()
    for source in inputs.discover(recordings).sources:
        views = inputs.load_views(source, options)
        maps = [v.image.astype(np.float32) / 255.0 for v in views]
        write_source_outputs(out, source, views, maps, renderer, overlays=False)
        total_audio += sum(view.audio.size for view in views) / views[0].sr
    return total_audio, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="recordings")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--inputs", nargs="+", choices=sorted(INPUT_SETTINGS),
                        default=sorted(INPUT_SETTINGS), help="without --checkpoint")  # fmt: skip
    args = parser.parse_args()
    # noisereduce and the no-model path on one thread; budsam_infer.py sets its own.
    with cpu_threads(1), tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
        tmp = Path(tmp)
        generate_dataset(tmp / "data", {"train": 0, "valid": 0, "test": args.n}, seed=7,
                         workers=2, progress=False)  # fmt: skip
        recordings = tmp / "recordings"
        shutil.copytree(tmp / "data" / "test" / RAW_AUDIO_DIR, recordings)
        checkpoints = {"checkpoint": Path(args.checkpoint)} if args.checkpoint else {}
        for name in [] if args.checkpoint else args.inputs:
            checkpoints[name] = tmp / f"vit_tiny_{name}.pth"
            model = build_sam("vit_tiny", seed=0)
            save_checkpoint({"model": model.state_dict(), "args": INPUT_SETTINGS[name]},
                            checkpoints[name])  # fmt: skip

        # The rate a checkpoint was trained at, to which budsam_infer.py resamples recordings.
        trained_rate = (
            checkpoint_args(args.checkpoint).get("sample_rate") if args.checkpoint else None
        )
        runs = [(n, False) for n in args.threads] + [(n, True) for n in args.threads if n > 1]
        rates = {(name, n, io): [] for name in checkpoints for n, io in runs}
        loads, memory, baseline, no_model = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so all see the same load
            for name, threads, io in rates:
                summary = run_infer(recordings, tmp / "out", checkpoints[name], threads, io)
                rates[name, threads, io].append(summary["audio_per_compute_second"])
                loads.append(summary["model_load_seconds"])
                memory.append(summary["peak_memory_mb"])
            seconds_audio, seconds_compute = noisereduce_seconds(recordings, tmp / "nr")
            baseline.append(seconds_audio / seconds_compute)
            seconds_audio, seconds_compute = transforms_seconds(
                recordings, tmp / "no_model", trained_rate
            )
            no_model.append(seconds_audio / seconds_compute)

    print(f"machine: {machine()}")
    print(f"{args.n} synthetic test recordings, {summary['audio_seconds']:.0f} s of audio, "
          f"{args.repeats} repeats; audio seconds per second (min / median / max)")  # fmt: skip
    for (name, threads, io), values in rates.items():
        print(f"budsam_infer.py {summary['model_type']} ({name}), {threads} thread(s)"
              f"{' with --io_thread' if io else ''}: {spread(values, 1)}")  # fmt: skip
    print(f"noisereduce non-stationary, 1 thread: {spread(baseline, 1)}")
    print(f"budsam_infer.py without the model, 1 thread: {spread(no_model, 1)}")
    print(f"model load s: {spread(loads, 2)}; budsam_infer.py peak memory MiB: {spread(memory, 0)}")


if __name__ == "__main__":
    main()
