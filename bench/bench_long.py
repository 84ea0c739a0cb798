"""Benchmark: hour-long and day-long recordings, BudSAM against noisereduce, whole runs.

    python -m bench.bench_long --checkpoint CKPT --minutes 60 --source forest
    python -m bench.bench_long --checkpoint CKPT --minutes 60 --source jura
    python -m bench.bench_long --checkpoint CKPT --minutes 1440 --source jura --budsam_only \\
        --box 0 60 1000 10000 --threads 2

A long 48 kHz mono recording is made by looping real audio from
``shared/realworld/soundscapes`` (mixed to mono, resampled to 48 kHz when it is not):
``forest`` is ``birdwhizz_forest_birds.mp3`` (a one-minute forest ambience, birds
nearly all the time); ``jura`` is the 24 ten-second recordings of an autonomous recorder
in a Jura forest, one an hour over a day, in order (22 kHz recordings, mostly quiet).
Past 4 GB the WAV is written as RF64.

Each tool runs as a user would (``--repeats`` times, in turn), in a fresh process with
one thread (``--threads``), its whole run timed from start to exit (start-up, imports,
reading, denoising, writing): ``budsam_infer.py`` with the checkpoint (its peak memory from its
``summary.json``), and noisereduce's non-stationary mode (``n_jobs=1``) reading the
file, denoising it and writing a 16-bit WAV (its peak memory from the kernel's ``VmHWM``).
``--box`` runs the model on that box only: the rest of the recording is still read,
transformed, rendered and written, so the memory of a day-long run can be measured in
less than a day of model time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.timing import machine
from utils.audio.io import audio_writer
from utils.audio.stream import recording_blocks

REPO_ROOT = Path(__file__).resolve().parents[1]
SOUNDSCAPES = REPO_ROOT.parent / "shared" / "realworld" / "soundscapes"
SOURCES = {
    "forest": ["birdwhizz_forest_birds.mp3"],
    "jura": [f"maad_jura_forest_20190522_{hour:02d}00.wav" for hour in range(24)],
}
SR = 48000
NOISEREDUCE_RUN = """
import sys, time
start = time.perf_counter()
import noisereduce, soundfile
from utils.common.memory import peak_resident_mb
y, sr = soundfile.read(sys.argv[1], dtype="float32")
denoised = noisereduce.reduce_noise(y=y, sr=sr, stationary=False, n_jobs=1)
soundfile.write(sys.argv[2], denoised, sr, subtype="PCM_16")
print(time.perf_counter() - start, peak_resident_mb())
"""


def loop_source(name: str) -> np.ndarray:
    """The source's recordings, mono, at 48 kHz, one after the other (float32)."""
    parts = []
    for file_name in SOURCES[name]:
        blocks = list(recording_blocks(SOUNDSCAPES / file_name, SR))
        parts.append(np.concatenate(blocks, axis=1).mean(axis=0))
    return np.concatenate(parts).astype(np.float32)


def make_recording(path: Path, source: str, minutes: float) -> None:
    """``minutes`` of the looped source as a 16-bit 48 kHz WAV, written block by block."""
    loop = loop_source(source)
    total = int(minutes * 60 * SR)
    with audio_writer(path, SR, 1, "PCM_16", total) as write:
        for first in range(0, total, len(loop)):
            write(loop[: min(len(loop), total - first)])


def one_thread_env(threads: int) -> dict:
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
    return {**os.environ, **{name: str(threads) for name in names}}


def run_budsam(path: Path, out: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, "budsam_infer.py", "-i", str(path), "-o", str(out), "-checkpoint",
               args.checkpoint, "--device", "cpu", "--threads", str(args.threads)]  # fmt: skip
    if args.box:
        command += ["--box", *map(str, args.box)]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, check=True, env=one_thread_env(args.threads),
                   stdout=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "peak_mb": summary["peak_memory_mb"],
            "compute": summary["compute_seconds"]}  # fmt: skip


def run_noisereduce(path: Path, out: Path, threads: int) -> dict:
    start = time.perf_counter()
    command = [sys.executable, "-c", NOISEREDUCE_RUN, str(path), str(out)]
    done = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True,
                          env=one_thread_env(threads))  # fmt: skip
    wall = time.perf_counter() - start
    _, peak = map(float, done.stdout.split()[-2:])
    return {"wall": wall, "peak_mb": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--source", choices=tuple(SOURCES), default="forest")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--box", nargs=4, type=float, default=None, metavar=("T0", "T1", "F0", "F1"))
    p.add_argument("--budsam_only", action="store_true", help="leave noisereduce out")
    p.add_argument("--work", default=None, help="folder for the recording and outputs")
    p.add_argument("--repeats", type=int, default=1, help="run both tools this many times")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        recording = work / f"{args.source}_{args.minutes:g}min.wav"
        make_recording(recording, args.source, args.minutes)
        info = sf.info(str(recording))
        print(f"{machine()}\n{recording.name}: {info.duration / 60:.1f} min at {info.samplerate} "
              f"Hz, {info.channels} channel, {info.format}; {args.threads} thread(s)")  # fmt: skip
        audio, ratios = info.duration, []
        for repeat in range(args.repeats):  # the two tools in turn, so both see the same machine
            if args.repeats > 1:
                print(f"run {repeat + 1} of {args.repeats}")
            budsam = run_budsam(recording, work / f"budsam_{repeat + 1}", args)
            print(f"budsam_infer.py: {budsam['wall']:.1f} s whole run "
                  f"({audio / budsam['wall']:.1f}x real time; processing "
                  f"{budsam['compute']:.1f} s), peak {budsam['peak_mb']:.0f} MB")  # fmt: skip
            if args.budsam_only:
                continue
            reduced = run_noisereduce(recording, work / "noisereduce.wav", args.threads)
            print(f"noisereduce non-stationary: {reduced['wall']:.1f} s whole run "
                  f"({audio / reduced['wall']:.1f}x real time), "
                  f"peak {reduced['peak_mb']:.0f} MB")  # fmt: skip
            ratios.append(budsam["wall"] / reduced["wall"])
            print(f"BudSAM / noisereduce time: {ratios[-1]:.2f}")
        if len(ratios) > 1:
            print(
                f"BudSAM / noisereduce time over {len(ratios)} runs: median "
                f"{np.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}"
            )


if __name__ == "__main__":
    main()
