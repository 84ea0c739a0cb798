"""Long recordings and large archives: streaming, Raven selection tables, resuming a
killed run, and sharding files across processes."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

import budsam_infer as infer
from tests.conftest import REPO_ROOT
from utils.audio import bsd, kernel
from utils.audio.conventions import CENTER_ROW, num_frames
from utils.audio.level import MAX_FRAMES, image_floors, level_gain, loud_bins
from utils.audio.stream import scan_recording
from utils.common.checkpoint_io import save_checkpoint
from utils.common.distributed import shard_by_weight
from utils.data.image_io import overlay, read_mask_png
from utils.data.inputs import RECORDING, LoadOptions, Source, load_views
from utils.data.selection_table import Selection, read_selection_table, write_selection_table
from utils.data.tiling import overlapping_tile_starts
from utils.inference import streaming
from utils.inference.box_prompts import box_gate, box_prompts
from utils.inference.regions import RegionTracker
from utils.inference.segmenter import RECORDING_RENDERING, BandPrompt, Segmenter, load_model
from utils.model.sam import build_sam

SR = 8000


def _recording(path: Path, seconds: float, seed: int, channels: int = 1) -> Path:
    """Noise with chirping tones: something for a model to find, at SR Hz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    tone = np.sin(2 * np.pi * (1500 + 800 * np.sin(2 * np.pi * 0.3 * t)) * t)
    gate = (np.sin(2 * np.pi * 0.5 * t) > 0.3).astype(float)
    y = 0.05 * rng.standard_normal((channels, n)) + 0.3 * tone * gate
    sf.write(path, y.T, SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory) -> Path:
    """A random vit_tiny on 2048-frame half-spectrum tiles: few tiles for long files."""
    path = tmp_path_factory.mktemp("wide_ckpt") / "budsam_model_best.pth"
    args = {"model_type": "vit_tiny", "tile_width": 2048, "half_spectrum": True}
    save_checkpoint({"model": build_sam("vit_tiny", seed=0).state_dict(), "args": args}, path)
    return path


@pytest.fixture
def streamed_runs(monkeypatch) -> list:
    """The streamed runs of the test, in order, to read how much each held."""
    runs = []
    original = streaming._StreamedRun

    def keeping(*args, **kwargs):
        runs.append(original(*args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(streaming, "_StreamedRun", keeping)
    return runs


def _infer(*argv: str) -> int:
    return infer.main([*argv, "--device", "cpu", "--threads", "1"])


def _command(*argv: str) -> list[str]:
    """``budsam_infer.py`` with ``argv`` as a separate process."""
    return [sys.executable, "budsam_infer.py", *argv, "--device", "cpu", "--threads", "1"]


def _rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_chunked_masks_equal_unchunked_and_the_in_memory_segmenter(tiny_checkpoint, tmp_path):
    path = _recording(tmp_path / "three_minutes.wav", 180.0, seed=1)
    outs = {}
    for chunk in ("7", "100000"):
        outs[chunk] = tmp_path / f"chunk{chunk}"
        assert _infer("-i", str(path), "-o", str(outs[chunk]), "-checkpoint",
                      str(tiny_checkpoint), "--chunk_seconds", chunk,
                      "--png_max_seconds", "1000") == 0  # fmt: skip
    chunked = read_mask_png(outs["7"] / "masks" / "three_minutes.png")
    whole = read_mask_png(outs["100000"] / "masks" / "three_minutes.png")
    assert chunked.shape == (1024, num_frames(180 * SR)) and 0.0 < chunked.mean() < 1.0
    np.testing.assert_array_equal(chunked, whole)
    y_chunked, _ = sf.read(outs["7"] / "denoised" / "three_minutes.wav")
    y_whole, _ = sf.read(outs["100000"] / "denoised" / "three_minutes.wav")
    np.testing.assert_allclose(y_chunked, y_whole, atol=1 / 32768)
    table = "selections/three_minutes.selections.txt"
    assert (outs["7"] / table).read_text() == (outs["100000"] / table).read_text()
    # The whole recording in memory, through the segmenter BSD images use: its STFT is one
    # matrix product, the stream's several, so a pixel at the threshold may round apart.
    model, settings = load_model(str(tiny_checkpoint))
    segmenter = Segmenter(model, settings, overlap=0.25, rendering=RECORDING_RENDERING)
    views = load_views(Source("three_minutes", RECORDING, path), LoadOptions(None, True))
    probabilities = segmenter.probabilities(views)[0]
    assert np.mean((probabilities >= 0.5) != chunked) < 1e-5
    # The gated rendering, at once in memory, gives the streamed audio.
    _, audio, _ = segmenter.render(views[0], probabilities)
    assert RECORDING_RENDERING.kind == "gated"
    np.testing.assert_allclose(audio, y_whole, atol=2 / 32768)


def test_memory_does_not_grow_with_the_recordings_length(wide_checkpoint, tmp_path):
    """Peak memory (each run its own process) for 6 and 20 minutes: streamed, it grows far
    less than when the whole recording is rendered at once. Both lengths pick about as many
    frames for the level statistics (22,500 and 21,428 of at most 2 MAX_FRAMES) and report
    progress, so those bounded costs are the same in both. The streamed peaks still differ
    by up to about 130 MB from run to run (the C heap's arenas), hence the quarter; which
    frames are held is checked exactly below."""
    files = {m: _recording(tmp_path / f"m{m}.wav", 60.0 * m, seed=m) for m in (6, 20)}
    peaks = {}
    for chunk in ("5", "100000"):
        for minutes, path in files.items():
            out = tmp_path / f"out_{chunk}_{minutes}"
            command = [sys.executable, "budsam_infer.py", "-i", str(path), "-o", str(out),
                       "-checkpoint", str(wide_checkpoint), "--device", "cpu", "--threads", "1",
                       "--chunk_seconds", chunk, "--png_max_seconds", "0"]  # fmt: skip
            subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
            peaks[chunk, minutes] = json.loads((out / "summary.json").read_text())["peak_memory_mb"]
    streamed_growth = peaks["5", 20] - peaks["5", 6]
    whole_growth = peaks["100000", 20] - peaks["100000", 6]
    assert whole_growth > 500, peaks  # rendering 20 minutes at once costs memory
    assert streamed_growth < 0.25 * whole_growth, peaks


def test_the_frames_held_do_not_depend_on_the_recordings_length(tiny_checkpoint, tmp_path,
                                                                streamed_runs):  # fmt: skip
    """The streamed run holds as many frames at most for 5 minutes as for 15 (to within the
    block the recording ends in)."""
    model, settings = load_model(str(tiny_checkpoint))
    segmenter = Segmenter(model, settings, overlap=0.25, rendering=RECORDING_RENDERING)
    for minutes in (5, 15):
        path = _recording(tmp_path / f"m{minutes}.wav", 60.0 * minutes, seed=minutes)
        (tmp_path / f"out{minutes}" / "denoised").mkdir(parents=True)
        streaming.denoise_recording(
            Source(f"m{minutes}", RECORDING, path), segmenter, tmp_path / f"out{minutes}",
            LoadOptions(None, True), chunk_seconds=5.0, png_max_seconds=0.0,
        )  # fmt: skip
    short, long = (run.frames.most_frames_held for run in streamed_runs)
    chunk_frames = 5 * SR // 64  # where the last block ends may differ by a block
    assert abs(long - short) <= chunk_frames and long < num_frames(300 * SR) / 4, (short, long)


def test_a_process_started_by_a_large_one_reports_its_own_peak_memory():
    """``ru_maxrss`` carries the parent's peak across ``execve``; the reported peak must not."""
    held = np.ones(600 << 17)  # 600 MiB, touched, in this (parent) process
    code = (
        "import resource; from utils.common.memory import peak_resident_mb as peak; "
        "print(peak(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    own, inherited = map(float, done.stdout.split())
    assert held.sum() == 600 << 17
    assert own < 100, (own, inherited)  # a bare interpreter; ru_maxrss says > 600 on Linux


def test_a_recording_too_large_to_hold_is_skipped_with_one_line(wide_checkpoint, tmp_path):
    """With 640 MiB of address space beyond what the imports take, rendering 20 minutes at
    once runs out of memory: that file is skipped and named, the next one is denoised, and
    no traceback is printed."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    _recording(folder / "a_long.wav", 20 * 60.0, seed=3)
    _recording(folder / "b_short.wav", 10.0, seed=4)
    out = tmp_path / "out"
    code = (
        "import resource, sys, budsam_infer; "
        "size = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024; "
        "limit = size + 640 * 1024 * 1024; "
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); "
        "sys.exit(budsam_infer.main(sys.argv[1:]))"
    )
    command = [sys.executable, "-c", code, "-i", str(folder), "-o", str(out), "-checkpoint",
               str(wide_checkpoint), "--device", "cpu", "--threads", "1", "--chunk_seconds",
               "100000", "--png_max_seconds", "0"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["skipped"] == 1 and "a_long.wav: ran out of memory" in summary["skipped_reasons"][0]
    )
    assert [row["name"] for row in _rows(out)] == ["b_short"]
    assert sorted(p.name for p in (out / "denoised").iterdir()) == ["b_short.wav"]


def test_raven_table_round_trip_gives_back_the_boxes_that_made_it(tmp_path):
    sr, n_frames = 16000, 5000
    half_mask = np.zeros((513, n_frames), dtype=bool)
    half_mask[60:90, 100:400] = True  # ~1.9-2.8 kHz, 0.4-1.6 s
    half_mask[200:260, 2000:2600] = True
    tracker = RegionTracker(sr, channel=1)
    for first in range(0, n_frames, 700):  # blocks as the stream feeds them
        block = slice(first, first + 700)
        tracker.add(first, half_mask[:, block], half_mask[:, block] * 0.9)
    found = tracker.finish()
    assert len(found) == 2 and all(abs(s.score - 0.9) < 1e-6 for s in found)
    table = tmp_path / "rec.selections.txt"
    write_selection_table(table, found)
    header = table.read_text().splitlines()[0].split("\t")
    assert header[:7] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                          "Low Freq (Hz)", "High Freq (Hz)"]  # fmt: skip
    read_back = read_selection_table(table)

    boxes, unused = box_prompts(table, read_back, sr, n_frames, 1, half_spectrum=True)
    assert unused == [] and len(boxes) == 2
    for box, selection in zip(boxes, found, strict=True):
        x0, x1, k0, k1 = box.extent
        # The box spans the region's frames and bins (with the rounding of whole pixels).
        region = np.flatnonzero(half_mask[:, x0:x1].any(axis=1))
        assert k0 <= region[0] and region[-1] <= k1 and k1 - k0 <= region[-1] - region[0] + 2
        columns = np.flatnonzero(half_mask[k0 : k1 + 1].any(axis=0))
        assert x0 <= columns[0] and columns[-1] < x1 <= columns[-1] + 4
        seconds = (selection.begin_s, selection.end_s)
        hertz = (selection.low_hz, selection.high_hz)
        expected = bsd.band_box(seconds, hertz, sr, n_frames, True)
        np.testing.assert_allclose(box.pixels, expected)


@pytest.mark.parametrize("prompted", [False, True])
def test_a_background_model_gives_what_the_sequential_run_gives(tiny_checkpoint, tmp_path,
                                                               prompted):  # fmt: skip
    path = _recording(tmp_path / "stereo.wav", 40.0, seed=8, channels=2)
    model, settings = load_model(str(tiny_checkpoint))
    calls = [Selection(3.0, 9.0, 800.0, 3000.0, 1), Selection(20.0, 33.0, 500.0, 2500.0, 2)]
    outputs = {}
    for background in (False, True):
        out = tmp_path / f"background_{background}"
        for folder in ("denoised", "masks"):
            (out / folder).mkdir(parents=True, exist_ok=True)
        segmenter = Segmenter(
            model,
            settings,
            overlap=0.25,
            batch_size=2,
            background_model=background,
            rendering=RECORDING_RENDERING,
        )
        result = streaming.denoise_recording(
            Source("stereo", RECORDING, path), segmenter, out, LoadOptions(None, True),
            chunk_seconds=3.0, png_max_seconds=100.0, selections=calls if prompted else None,
        )  # fmt: skip
        audio, _ = sf.read(out / "denoised" / "stereo.wav")
        masks = [read_mask_png(out / "masks" / f"stereo_{side}.png") for side in ("left", "right")]
        outputs[background] = (audio, masks, result.selections)
    audio, masks, selections = outputs[False]
    assert np.abs(audio).max() > 0 and any(mask.any() for mask in masks)
    np.testing.assert_array_equal(outputs[True][0], audio)
    for background_mask, mask in zip(outputs[True][1], masks, strict=True):
        np.testing.assert_array_equal(background_mask, mask)
    assert outputs[True][2] == selections


def test_selections_prompt_each_recording_and_nothing_passes_outside_them(
    tiny_checkpoint, tmp_path
):
    folder = tmp_path / "recordings"
    folder.mkdir()
    _recording(folder / "one.wav", 12.0, seed=5)
    _recording(folder / "two.wav", 12.0, seed=6, channels=2)
    tables = tmp_path / "tables"
    tables.mkdir()
    two_calls = [Selection(1.0, 3.0, 1000.0, 2500.0), Selection(6.0, 7.0, 500.0, 3000.0)]
    write_selection_table(tables / "one.Table.1.selections.txt", two_calls)
    write_selection_table(tables / "two.selections.txt", [Selection(2.0, 4.0, 1000, 3000, 2)])
    out = tmp_path / "out"
    assert _infer("-i", str(folder), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                  "--selections", str(tables)) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 0 and summary["prompt"] == "selections"
    mask = read_mask_png(out / "masks" / "one.png")
    inside = bsd.band_region((1.0, 3.0), (1000.0, 2500.0), SR, mask.shape[1])
    inside |= bsd.band_region((6.0, 7.0), (500.0, 3000.0), SR, mask.shape[1])
    assert mask[inside].any() and not mask[~inside].any()
    assert not read_mask_png(out / "masks" / "two_left.png").any()  # channel 2 only
    assert read_mask_png(out / "masks" / "two_right.png").any()
    for selection in read_selection_table(out / "selections" / "one.selections.txt"):
        assert 1.0 - 0.02 <= selection.begin_s and selection.end_s <= 7.0 + 0.02


def _folder_of_recordings(folder: Path, seconds: list[float]) -> Path:
    folder.mkdir()
    for i, length in enumerate(seconds):
        _recording(folder / f"rec{i:02d}.wav", length, seed=10 + i, channels=1 + i % 2)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    return folder


def test_a_run_killed_with_sigkill_loses_nothing_and_resumes(tiny_checkpoint, tmp_path):
    folder = _folder_of_recordings(tmp_path / "recordings", [20.0] * 8)
    reference = tmp_path / "reference"
    assert _infer("-i", str(folder), "-o", str(reference), "-checkpoint", str(tiny_checkpoint)) == 0
    out = tmp_path / "out"
    command = _command("-i", str(folder), "-o", str(out), "-checkpoint", str(tiny_checkpoint))
    run = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list((out / "records").glob("*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = sorted(p.stem for p in (out / "records").glob("*.json"))
    assert 3 <= len(done) < 9, "the kill should land mid-run"
    assert not (out / "summary.json").exists()
    for name in done:  # whatever has a record is whole
        if name != "broken":
            assert sf.info(str(out / "denoised" / f"{name}.wav")).frames == 20 * SR
    # Only whole files or temporaries (dot-names) are left.
    for path in (out / "denoised").iterdir():
        assert path.name.startswith(".") or sf.info(str(path)).frames == 20 * SR
    assert _infer("-i", str(folder), "-o", str(out), "-checkpoint", str(tiny_checkpoint)) == 2
    assert _infer("-i", str(folder), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                  "--resume") == 0  # fmt: skip
    assert not list(out.rglob(".*.tmp*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 9 and summary["skipped"] == 1 and summary["resumed"]
    assert _rows(out) == _rows(reference)
    for path in (reference / "denoised").iterdir():
        np.testing.assert_array_equal(sf.read(out / "denoised" / path.name)[0], sf.read(path)[0])
    another_run = ["-i", str(folder), "-o", str(out), "-checkpoint", str(tiny_checkpoint)]
    assert _infer(*another_run, "--resume", "--threshold", "0.6") == 2  # other settings


def test_a_resume_under_another_default_rendering_is_refused(tiny_checkpoint, tmp_path, capsys):
    """run.json records the rendering with its defaults resolved: a run started before a
    default changed is not finished with the new one, which would mix two renderings."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    _recording(folder / "rec.wav", 2.0, seed=3)
    out = tmp_path / "out"
    run = ["-i", str(folder), "-o", str(out), "-checkpoint", str(tiny_checkpoint)]
    assert _infer(*run) == 0
    recorded = json.loads((out / "run.json").read_text())
    assert recorded["rendering"] == RECORDING_RENDERING.spec
    assert _infer(*run, "--resume") == 0
    recorded["rendering"] = "gated,floor=-20,margin=200:30,far=-50,alpha=2"  # an older default
    (out / "run.json").write_text(json.dumps(recorded))
    capsys.readouterr()
    assert _infer(*run, "--resume") == 2
    assert "--resume needs the same rendering" in capsys.readouterr().err


def test_shards_are_balanced_by_duration_and_cover_every_file_once():
    weights = [10.0, 1.0, 1.0, 1.0, 9.0, 2.0, 0.0]
    shares = [shard_by_weight(weights, rank, 2) for rank in range(2)]
    assert sorted(shares[0] + shares[1]) == list(range(len(weights)))
    loads = [sum(weights[i] for i in share) for share in shares]
    assert abs(loads[0] - loads[1]) <= 1.0
    assert shard_by_weight(weights, 0, 1) == list(range(len(weights)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_give_what_one_gives(tiny_checkpoint, tmp_path):
    folder = _folder_of_recordings(tmp_path / "recordings", [30.0, 4.0, 5.0, 6.0, 25.0])
    single = tmp_path / "single"
    assert _infer("-i", str(folder), "-o", str(single), "-checkpoint", str(tiny_checkpoint)) == 0
    out = tmp_path / "sharded"
    init = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    shared = ["-i", str(folder), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
              "--world_size", "2", "--init_method", init]  # fmt: skip
    runs = [
        subprocess.Popen(
            _command(*shared, "--node_rank", str(rank)),
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in range(2)
    ]
    logs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], logs
    assert "2 processes" in logs[0] and "results in" in logs[0] and "results in" not in logs[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["files"] == 6 and summary["skipped"] == 1
    assert _rows(out) == _rows(single)
    assert sorted(p.name for p in (out / "denoised").iterdir()) == sorted(
        p.name for p in (single / "denoised").iterdir()
    )
    for path in (single / "denoised").iterdir():
        np.testing.assert_array_equal(sf.read(out / "denoised" / path.name)[0], sf.read(path)[0])
    # Each rank did its share: the records were written by both processes' files.
    assert len(list((out / "records").glob("*.json"))) == 6


def test_the_energy_cue_streams_as_it_renders_in_memory(tiny_checkpoint, tmp_path):
    """``--energy_db``: chunked equals unchunked and the in-memory segmenter, and that is
    the gate given only the probabilities of the bins that stand out of their row's floor."""
    path = _recording(tmp_path / "minute.wav", 60.0, seed=4)
    audio = {}
    for name, extra in {"7": ["--energy_db", "7.5"], "100000": ["--energy_db", "7.5"],
                        "plain": []}.items():  # fmt: skip
        out = tmp_path / name
        chunk = "7" if name == "7" else "100000"
        assert _infer("-i", str(path), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                      "--chunk_seconds", chunk, *extra) == 0  # fmt: skip
        audio[name], _ = sf.read(out / "denoised" / "minute.wav")
    np.testing.assert_allclose(audio["7"], audio["100000"], atol=1 / 32768)
    assert np.abs(audio["7"] - audio["plain"]).max() > 0.01  # the cue changes the audio
    model, settings = load_model(str(tiny_checkpoint))
    rendering = dataclasses.replace(RECORDING_RENDERING, energy_db=7.5)
    segmenter = Segmenter(model, settings, overlap=0.25, rendering=rendering)
    views = load_views(Source("minute", RECORDING, path), LoadOptions(None, True))
    probabilities = segmenter.probabilities(views)[0]
    _, in_memory, _ = segmenter.render(views[0], probabilities)
    np.testing.assert_allclose(in_memory, audio["100000"], atol=2 / 32768)
    half = views[0].image[CENTER_ROW:]
    loud = loud_bins(half, image_floors(half), 7.5)
    assert 0.01 < loud.mean() < 0.5  # the noise's bins are dropped, the chirp's kept
    plain = Segmenter(model, settings, overlap=0.25, rendering=RECORDING_RENDERING)
    _, by_hand, _ = plain.render(views[0], probabilities * bsd.two_sided(loud))
    np.testing.assert_allclose(in_memory, by_hand, atol=1e-6)
    _, without, _ = plain.render(views[0], probabilities)
    np.testing.assert_allclose(without, audio["plain"], atol=2 / 32768)


def test_time_flip_streams_as_it_segments_in_memory(tiny_checkpoint, tmp_path):
    """``--time_flip``: chunked equals unchunked and the in-memory segmenter with it, and
    it changes the masks."""
    path = _recording(tmp_path / "half_minute.wav", 30.0, seed=6)
    masks = {}
    for name, extra in {"7": ["--time_flip"], "100000": ["--time_flip"], "plain": []}.items():
        out = tmp_path / name
        chunk = "7" if name == "7" else "100000"
        assert _infer("-i", str(path), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                      "--chunk_seconds", chunk, *extra) == 0  # fmt: skip
        masks[name] = read_mask_png(out / "masks" / "half_minute.png")
        assert json.loads((out / "summary.json").read_text())["time_flip"] == bool(extra)
    np.testing.assert_array_equal(masks["7"], masks["100000"])
    assert np.mean(masks["7"] != masks["plain"]) > 1e-3
    model, settings = load_model(str(tiny_checkpoint))
    segmenter = Segmenter(model, settings, overlap=0.25, time_flip=True)
    views = load_views(Source("half_minute", RECORDING, path), LoadOptions(None, True))
    assert np.mean((segmenter.probabilities(views)[0] >= 0.5) != masks["7"]) < 1e-5
    # A box prompt: its mirrored tiles too, streamed as in memory.
    box = ["--box", "3", "21", "800", "2500", "--time_flip", "--chunk_seconds", "7"]
    assert _infer("-i", str(path), "-o", str(tmp_path / "box"), "-checkpoint",
                  str(tiny_checkpoint), *box) == 0  # fmt: skip
    boxed = read_mask_png(tmp_path / "box" / "masks" / "half_minute.png")
    band = BandPrompt((3.0, 21.0), (800.0, 2500.0))
    in_memory = Segmenter(model, settings, prompt="box", band=band, overlap=0.25, time_flip=True)
    assert np.mean((in_memory.probabilities(views)[0] >= 0.5) != boxed) < 1e-5
    assert 0 < boxed.mean() < masks["7"].mean()


def test_the_energy_cue_measures_each_channels_floors_on_its_own(tiny_checkpoint, tmp_path):
    """Each channel of a stereo file has its own floors (and level): its output with the cue
    is that of the channel alone."""
    left = sf.read(_recording(tmp_path / "a.wav", 20.0, seed=5))[0]
    right = 0.1 * sf.read(_recording(tmp_path / "b.wav", 20.0, seed=6))[0] ** 3  # other floors
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "stereo.wav", np.stack([left, right], axis=1), SR, subtype="FLOAT")
    sf.write(tmp_path / "in" / "right.wav", right, SR, subtype="FLOAT")
    out = tmp_path / "out"
    assert _infer("-i", str(tmp_path / "in"), "-o", str(out), "-checkpoint",
                  str(tiny_checkpoint), "--energy_db", "10") == 0  # fmt: skip
    stereo = sf.read(out / "denoised" / "stereo.wav")[0]
    alone = sf.read(out / "denoised" / "right.wav")[0]
    assert np.sum(alone**2) > 0.01 * np.sum(right**2)  # something passes
    np.testing.assert_allclose(stereo[:, 1], alone, atol=1e-6)


def test_the_level_scan_picks_the_frames_a_whole_recording_would(tmp_path):
    """Past 60,000 frames only every s-th frame is measured: the stream picks the same."""
    n = 64 * 130_000 + 77  # 130,000 frames: every 6th
    t = np.arange(n)
    y = (0.1 * np.sin(t / 3000.0) * np.random.default_rng(2).standard_normal(n)).astype(np.float32)
    sf.write(tmp_path / "long.wav", y, SR, subtype="FLOAT")
    scan = scan_recording(tmp_path / "long.wav", SR, 1, n, medians=True)
    assert scan.samples == n
    planes = kernel.stft_planes(y)
    assert scan.gains[0] == level_gain(planes, SR)
    for gain in (1.0, scan.gains[0]):  # each frequency's floor in the image, as a whole one's
        image = bsd.planes_to_half_image(planes, gain)
        np.testing.assert_array_equal(scan.floors(0, gain), image_floors(image))


@pytest.mark.parametrize("background", [False, True])
def test_sparse_box_prompts_hold_a_bounded_span_of_frames(tiny_checkpoint, tmp_path,
                                                          streamed_runs, background):  # fmt: skip
    path = _recording(tmp_path / "ten_minutes.wav", 600.0, seed=7)
    model, settings = load_model(str(tiny_checkpoint))
    segmenter = Segmenter(model, settings, overlap=0.25, rendering=RECORDING_RENDERING,
                          background_model=background)  # fmt: skip
    (tmp_path / "out" / "denoised").mkdir(parents=True)
    (tmp_path / "out" / "masks").mkdir()
    far_apart = [Selection(1.0, 2.0, 1000.0, 3000.0), Selection(595.0, 597.0, 1000.0, 3000.0)]
    chunk = 625  # 5 s
    result = streaming.denoise_recording(
        Source("ten_minutes", RECORDING, path), segmenter, tmp_path / "out",
        LoadOptions(None, True), chunk_seconds=chunk * 64 / SR, png_max_seconds=1000.0,
        selections=far_apart,
    )  # fmt: skip
    n_frames = num_frames(600 * SR)
    bound = chunk + segmenter.batch_size * settings.tile_width + 2 * 64
    assert streamed_runs[0].frames.most_frames_held <= bound < n_frames / 10
    mask = read_mask_png(tmp_path / "out" / "masks" / "ten_minutes.png")
    inside = bsd.band_region((1.0, 2.0), (1000.0, 3000.0), SR, n_frames)
    inside |= bsd.band_region((595.0, 597.0), (1000.0, 3000.0), SR, n_frames)
    assert mask[inside].any() and not mask[~inside].any()
    assert [round(s.begin_s) for s in result.selections] == [1, 595]


def test_a_full_spectrum_model_streams_the_masks_it_predicts(tmp_path):
    """A model that sees both halves of the spectrum: its two-sided mask as predicted."""
    checkpoint = tmp_path / "full.pth"
    args = {"model_type": "vit_tiny", "tile_width": 512, "half_spectrum": False}
    save_checkpoint({"model": build_sam("vit_tiny", seed=1).state_dict(), "args": args}, checkpoint)
    path = _recording(tmp_path / "clip.wav", 30.0, seed=8)  # mono: the same batches
    out = tmp_path / "out"
    assert _infer("-i", str(path), "-o", str(out), "-checkpoint", str(checkpoint),
                  "--chunk_seconds", "4", "--skip_contrast", "0") == 0  # fmt: skip
    model, settings = load_model(str(checkpoint))
    segmenter = Segmenter(model, settings, overlap=0.25, rendering=RECORDING_RENDERING)
    views = load_views(Source("clip", RECORDING, path), LoadOptions(None, True))
    for view, probability in zip(views, segmenter.probabilities(views), strict=True):
        streamed = read_mask_png(out / "masks" / f"{view.name}.png")
        # A random model's probabilities sit near 0.5, and the stream's STFT rounds apart
        # from one whole-recording product: pixels may differ only next to the threshold.
        differ = streamed != (probability >= 0.5)
        assert np.all(np.abs(probability[differ] - 0.5) < 0.01) and np.mean(differ) < 1e-4
        assert np.any(streamed[:511] != streamed[:512:-1][:511])  # not mirrored


def test_a_recordings_overlay_drawn_in_blocks_is_the_whole_overlay(tiny_checkpoint, tmp_path):
    path = _recording(tmp_path / "clip.wav", 70.0, seed=9)  # 8,749 frames: two blocks
    out = tmp_path / "out"
    assert _infer("-i", str(path), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                  "--save_overlays", "--png_max_seconds", "100") == 0  # fmt: skip
    mask = read_mask_png(out / "masks" / "clip.png")
    (view,) = load_views(Source("clip", RECORDING, path), LoadOptions(None, True))
    expected = np.round(overlay(view.image, mask) * 255).astype(np.uint8)
    drawn = cv2.cvtColor(cv2.imread(str(out / "overlays" / "clip.png")), cv2.COLOR_BGR2RGB)
    assert drawn.shape == (1024, num_frames(70 * SR), 3)
    # The stream's STFT rounds apart from one whole-recording product (see the test above):
    # a pixel may land one grey level apart, where its value sits at a rounding boundary.
    apart = np.abs(drawn.astype(np.int16) - expected)
    assert apart.max() <= 1 and np.mean(apart > 0) < 1e-5


def test_a_length_the_header_understates_keeps_the_level_scan_bounded(tmp_path):
    n = 64 * 130_000  # 130,000 frames, but announced as none: every frame would be picked
    y = (0.05 * np.random.default_rng(3).standard_normal(n)).astype(np.float32)
    sf.write(tmp_path / "long.wav", y, SR, subtype="FLOAT")
    told, untold = (scan_recording(tmp_path / "long.wav", SR, 1, e) for e in (n, 0))
    assert untold.samples == n and told.measured_frames == 130_000 // 6 + 1
    assert MAX_FRAMES < untold.measured_frames <= 2 * MAX_FRAMES
    # Frames 0, 4, 8 ... instead of 0, 6, 12 ...: white noise has the same level either way.
    assert untold.gains[0] == pytest.approx(told.gains[0], rel=0.01)


def test_thousands_of_selections_prompt_the_tiles_a_brute_force_search_finds(tiny_checkpoint):
    """A detector's thousands of selections on a long recording: each box is matched to the
    tiles around it, not to every tile."""
    model, settings = load_model(str(tiny_checkpoint))
    segmenter = Segmenter(model, settings, overlap=0.25, rendering=RECORDING_RENDERING)
    sr, n_frames = SR, num_frames(3600 * SR)
    rng = np.random.default_rng(4)
    begins = np.sort(rng.uniform(0, 3590, 3000))
    selections = [Selection(t, t + rng.uniform(0.1, 3), 500.0, 3000.0, 1 + int(t) % 2)
                  for t in begins]  # fmt: skip
    boxes, unused = box_prompts(Path("x.wav"), selections, sr, n_frames, 2, half_spectrum=True)
    assert unused == []
    run = streaming._StreamedRun(segmenter, sr, n_frames, 3600 * SR, 2, [1.0, 1.0], boxes, False)
    start = time.perf_counter()
    jobs = run.jobs()
    assert time.perf_counter() - start < 10
    starts = overlapping_tile_starts(n_frames, settings.tile_width, 0.25)
    brute = [(s, box.channel, b, False) for s in starts for b, box in enumerate(boxes)
             if box.pixels[0] < s + settings.tile_width and box.pixels[2] > s]  # fmt: skip
    assert jobs == brute
    gate = box_gate(boxes, 1, 4000, 12000, half_spectrum=True)
    expected = np.zeros((513, 8000), dtype=bool)
    for box in boxes:
        x0, x1, k0, k1 = box.extent
        if box.channel == 1:
            expected[k0 : k1 + 1, max(x0 - 4000, 0) : max(x1 - 4000, 0)] = True
    np.testing.assert_array_equal(gate, expected)
    assert gate.any()
