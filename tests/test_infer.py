"""budsam_infer.py end to end on the CPU: BSD splits, recordings, prompts, bad files."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import budsam_infer as infer
from tests.conftest import REPO_ROOT
from utils.audio import align, bsd, conventions, kernel
from utils.audio import io as audio_io
from utils.audio.level import level_gain
from utils.common.checkpoint_io import save_checkpoint
from utils.common.cpu import cpu_threads
from utils.data.image_io import read_gray_png, read_mask_png
from utils.data.inputs import LoadOptions, View, discover, load_views
from utils.data.tiling import overlapping_tile_starts
from utils.inference.options import SegmentOptions
from utils.inference.predict import predict_probabilities
from utils.inference.segmenter import (
    DEFAULT_OVERLAP,
    RECORDING_SKIP_CONTRAST,
    BandPrompt,
    Segmenter,
    load_model,
)
from utils.model.sam import build_sam


def _run(*argv: str) -> int:
    return infer.main([*argv, "--device", "cpu", "--threads", "1"])


def _rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_bsd_split_gives_masks_denoised_audio_metrics_and_summary(
    tiny_test_split, tiny_checkpoint, tmp_path
):
    out = tmp_path / "out"
    assert _run("-i", str(tiny_test_split), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                "--save_overlays") == 0  # fmt: skip
    names = sorted(p.stem for p in (tiny_test_split / "Images").glob("*.png"))
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == names
    for name in names:
        image = read_gray_png(tiny_test_split / "Images" / f"{name}.png")
        assert read_mask_png(out / "masks" / f"{name}.png").shape == image.shape
        y, sr = audio_io.load_audio(out / "denoised" / f"{name}.wav")
        raw, raw_sr = align.raw_audio_for_image(tiny_test_split / "Raw_audios", name, image)
        assert len(y) == len(raw) and sr == raw_sr
        assert (out / "overlays" / f"{name}.png").is_file()
    rows = _rows(out)
    assert [r["name"] for r in rows] == names
    for row in rows:
        assert 0.0 <= float(row["fg_iou"]) <= 1.0
        assert row["reference"] == "clean"  # synthetic data keep the exact clean signal
        stem, channel = audio_io.audio_source_for_image(row["name"])
        clean, _ = audio_io.load_audio(tiny_test_split / "Clean_audios" / f"{stem}.wav", channel)
        if not clean.any():  # a recording without birds: SDR is undefined, left empty
            assert row["si_sdr"] == row["sdr"] == ""
            continue
        imp = float(row["si_sdr"]) - float(row["input_si_sdr"])
        assert float(row["si_sdr_imp"]) == pytest.approx(imp)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_views"] == 4 and summary["skipped"] == 0
    assert summary["prompt"] == "full" and summary["uses_ground_truth"] is False
    assert summary["tile_width"] == 256 and summary["half_spectrum"] is True
    assert summary["audio_per_compute_second"] > 0


def test_an_output_folder_with_results_is_refused_unless_overwrite(
    tiny_test_split, tiny_checkpoint, tmp_path, capsys
):
    out = tmp_path / "out"
    common = ("-i", str(tiny_test_split / "Images" / "syn_test_00001.png"), "-o", str(out),
              "-checkpoint", str(tiny_checkpoint))  # fmt: skip
    assert _run(*common) == 0
    before = (out / "summary.json").read_bytes()
    capsys.readouterr()
    assert _run(*common) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out}: already holds results") and "\n" not in err
    assert (out / "summary.json").read_bytes() == before  # nothing touched
    assert _run(*common, "--overwrite") == 0


def test_gt_box_prompt_says_it_uses_ground_truth(tiny_test_split, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert _run("-i", str(tiny_test_split), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                "--prompt", "gt_box") == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt"] == "gt_box" and summary["uses_ground_truth"] is True


def test_long_stereo_recording_is_tiled_and_keeps_length_rate_and_channels(
    tiny_checkpoint, tmp_path
):
    sr, seconds = 22050, 40
    rng = np.random.default_rng(0)
    signal = 0.05 * rng.standard_normal((int(sr * seconds) + 37, 2))
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    sf.write(recordings / "long.flac", signal, sr, subtype="PCM_16")
    out = tmp_path / "out"
    argv = ("-i", str(recordings), "-o", str(out), "-checkpoint", str(tiny_checkpoint))
    assert _run(*argv) == 0  # one thread: recomputed below the same way

    written, written_sr = sf.read(out / "denoised" / "long.wav", always_2d=True)
    assert written.shape == signal.shape and written_sr == sr
    frames = conventions.num_frames(len(signal))
    assert len(overlapping_tile_starts(frames, 256, 0.25)) > 50  # really tiled
    left = read_mask_png(out / "masks" / "long_left.png")
    assert left.shape == (1024, frames) and (out / "masks" / "long_right.png").is_file()
    # The left mask is the blend of overlapping tiles of the left channel (its spectrogram
    # at the normalised level; tiles of noise alone skip the model), thresholded once.
    model, settings = load_model(str(tiny_checkpoint))
    y, _ = audio_io.load_audio(recordings / "long.flac", "left")
    with cpu_threads(1):
        planes = kernel.stft_planes(y)
        image = bsd.planes_to_image(planes, level_gain(planes, sr))
        (expected,) = predict_probabilities(
            model, [image], tile_width=256, overlap=0.25, half_spectrum=True,
            skip_contrast=RECORDING_SKIP_CONTRAST,
        )  # fmt: skip
    np.testing.assert_array_equal(left, expected >= 0.5)
    # Reading and writing on a background thread (--io_thread) gives the same outputs.
    both = [*argv[:3], str(tmp_path / "out2"), *argv[4:], "--threads", "2", "--io_thread"]
    assert infer.main(both) == 0
    assert json.loads((tmp_path / "out2" / "summary.json").read_text())["io_thread"]
    assert not json.loads((out / "summary.json").read_text())["io_thread"]
    for name in ("long_left.png", "long_right.png"):
        one, two = (read_mask_png(o / "masks" / name) for o in (out, tmp_path / "out2"))
        assert np.mean(one != two) < 1e-4  # float32 rounding differs with the thread count
    again, _ = sf.read(tmp_path / "out2" / "denoised" / "long.wav", always_2d=True)
    assert np.abs(again - written).max() < 1e-3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layout"] == "recordings" and summary["audio_seconds"] == pytest.approx(
        2 * len(signal) / sr
    )


def test_box_converts_seconds_and_hertz_and_keeps_the_mask_inside_the_band():
    sr = 48000
    box = bsd.band_box((1.0, 2.0), (2000.0, 12000.0), sr, width=3000)
    # 1 s is the window centred on sample 48000: frame 749; 12 kHz is bin 256.
    np.testing.assert_array_equal(box, [749, 511 - 256, 1500, 511 + 256 + 1])
    half_box = bsd.band_box((1.0, 2.0), (2000.0, 12000.0), sr, width=3000, half_spectrum=True)
    assert half_box[1] == 511 + 42  # 2 kHz is bin 42.7: the band starts at bin 42
    region = bsd.band_region((1.0, 2.0), (2000.0, 12000.0), sr, width=3000)
    rows = np.nonzero(region.any(axis=1))[0]
    assert set(rows) == set(range(511 + 42, 511 + 257)) | set(range(511 - 256, 511 - 41))
    with pytest.raises(ValueError, match="Nyquist"):
        bsd.band_box((0.0, 1.0), (30000.0, 40000.0), sr, width=3000)


def test_box_prompt_on_the_cli_masks_only_the_band(tiny_checkpoint, tmp_path):
    sr = 16000
    y = 0.3 * np.random.default_rng(1).standard_normal(sr * 3)
    path = tmp_path / "song.wav"
    sf.write(path, y, sr)
    out = tmp_path / "out"
    # A low threshold so the random model's mask is not empty inside the band.
    assert _run("-i", str(path), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                "--box", "0.5", "2.0", "1000", "4000", "--threshold", "0.05") == 0  # fmt: skip
    mask = read_mask_png(out / "masks" / "song.png")
    region = bsd.band_region((0.5, 2.0), (1000.0, 4000.0), sr, mask.shape[1])
    assert mask.any() and not (mask & ~region).any()


def test_official_sam_checkpoint_needs_a_model_type_and_a_mismatch_is_named(
    tiny_test_split, tmp_path, capsys
):
    official = tmp_path / "sam_tiny.pth"
    torch.save(build_sam("vit_tiny", seed=0).state_dict(), official)
    image = str(tiny_test_split / "Images" / "syn_test_00001.png")
    assert _run("-i", image, "-o", str(tmp_path / "a"), "-checkpoint", str(official)) == 2
    assert "records no model type" in capsys.readouterr().err
    assert _run("-i", image, "-o", str(tmp_path / "b"), "-checkpoint", str(official),
                "-model_type", "vit_tiny") == 0  # fmt: skip
    budsam = tmp_path / "budsam.pth"
    save_checkpoint({"model": torch.load(official), "args": {"model_type": "vit_tiny"}}, budsam)
    capsys.readouterr()
    assert _run("-i", image, "-o", str(tmp_path / "c"), "-checkpoint", str(budsam),
                "-model_type", "vit_b") == 2  # fmt: skip
    assert "is a vit_tiny model, but -model_type vit_b" in capsys.readouterr().err


def test_unreadable_files_are_skipped_counted_and_the_run_goes_on(
    tiny_test_split, tiny_checkpoint, tmp_path
):
    split = tmp_path / "split"
    shutil.copytree(tiny_test_split, split)
    (split / "Images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    shutil.copy(split / "Masks" / "syn_test_00001.png", split / "Masks" / "broken.png")
    (split / "Raw_audios" / "syn_test_00002.wav").write_bytes(b"RIFF....WAVE nonsense")
    out = tmp_path / "out"
    assert _run("-i", str(split), "-o", str(out), "-checkpoint", str(tiny_checkpoint)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 1 and "broken.png" in summary["skipped_reasons"][0]
    assert summary["n_views"] == 4  # the four good images
    # The unreadable recording costs only that image's audio, with a warning.
    assert not (out / "denoised" / "syn_test_00002.wav").exists()
    assert (out / "masks" / "syn_test_00002.png").is_file()
    assert any("syn_test_00002.wav" in w for w in summary["warnings"])

    recordings = tmp_path / "recordings"
    recordings.mkdir()
    sf.write(recordings / "good.wav", np.random.default_rng(2).standard_normal(8000) * 0.1, 8000)
    (recordings / "bad.mp3").write_bytes(b"not audio at all")
    out = tmp_path / "out_recordings"
    assert _run("-i", str(recordings), "-o", str(out), "-checkpoint", str(tiny_checkpoint)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 1 and summary["n_views"] == 1
    assert (out / "denoised" / "good.wav").is_file()


def test_discover_reads_a_bsd_root_at_its_split_and_refuses_an_empty_folder(
    tiny_test_split, tmp_path
):
    found = discover(tiny_test_split.parent)
    assert found.layout == "bsd split" and found.root == tiny_test_split
    assert found.has_masks and len(found.sources) == 4
    (view,) = load_views(found.sources[0])
    assert view.name == "syn_test_00000_left" and view.reference_kind == "clean"
    with pytest.raises(ValueError, match="found no BSD split"):
        discover(tmp_path)


def test_segmenter_refuses_what_a_prompt_cannot_use(tiny_checkpoint):
    model, settings = load_model(str(tiny_checkpoint))
    view = View("x", np.zeros((1024, 300), np.uint8))
    gt_box = Segmenter(model, settings, prompt="gt_box")
    assert "needs its ground-truth mask" in gt_box.cannot_segment(view)
    band = BandPrompt((0.0, 1.0), (100.0, 2000.0))
    assert "--box needs the sample rate" in Segmenter(
        model, settings, prompt="box", band=band
    ).cannot_segment(view)
    assert (
        Segmenter(model, settings, prompt="box", band=band, default_sr=8000).cannot_segment(view)
        is None
    )


def test_a_box_outside_a_file_skips_that_file_and_a_reversed_box_is_refused(
    tiny_checkpoint, tmp_path, capsys
):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    rng = np.random.default_rng(5)
    sf.write(recordings / "short.wav", 0.1 * rng.standard_normal(8000), 8000)  # 1 s
    sf.write(recordings / "long.wav", 0.1 * rng.standard_normal(8000 * 4), 8000)  # 4 s
    out = tmp_path / "out"
    assert _run("-i", str(recordings), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                "--box", "2", "3", "100", "2000") == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 1 and "past the recording's end" in summary["skipped_reasons"][0]
    assert (out / "masks" / "long.png").is_file() and not (out / "masks" / "short.png").exists()
    with pytest.raises(SystemExit):
        _run("-i", str(recordings), "-o", str(tmp_path / "o2"), "-checkpoint",
             str(tiny_checkpoint), "--box", "3", "2", "100", "2000")  # fmt: skip
    assert "--box needs 0 <= T0 < T1" in capsys.readouterr().err


def test_threads_caps_torch_opencv_and_blas_and_restores_them():
    # In a fresh process, whose caps are the machine's defaults.
    script = (
        "import cv2, threadpoolctl, torch\n"
        "from utils.common.cpu import cpu_threads\n"
        "def caps():\n"
        "    blas = [p['num_threads'] for p in threadpoolctl.threadpool_info()"
        " if p['user_api'] == 'blas']\n"
        "    return torch.get_num_threads(), cv2.getNumThreads(), blas\n"
        "before = caps()\n"
        "with cpu_threads(1):\n"
        "    print(*caps())\n"
        "assert caps() == before, (caps(), before)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    torch_threads, cv2_threads, blas = result.stdout.split(maxsplit=2)
    assert (torch_threads, cv2_threads) == ("1", "1")
    assert blas.strip() != "[]" and set(blas.strip("[]\n").split(", ")) == {"1"}


def test_io_thread_needs_two_threads(tiny_checkpoint, tmp_path, capsys):
    argv = ["-i", str(tmp_path), "-o", str(tmp_path / "out"), "-checkpoint", str(tiny_checkpoint)]
    with pytest.raises(SystemExit) as exit_info:
        infer.main([*argv, "--threads", "1", "--io_thread"])
    assert exit_info.value.code == 2
    assert "--io_thread needs 2 or more --threads" in capsys.readouterr().err


def _tone(sr: int, hertz: float = 3000.0, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return 0.01 * np.sin(2 * np.pi * hertz * t)  # below the image's saturation


def test_a_recording_is_resampled_to_the_models_training_rate(tmp_path, tiny_checkpoint):
    """The same call lands on the same image rows whatever the recorder's rate, and the
    denoised file is written at the model's rate; --keep_rate keeps the file's own rate
    and warns that it differs from training."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    audio_io.write_audio(folder / "low.wav", _tone(22050), 22050)
    audio_io.write_audio(tmp_path / "native.wav", _tone(48000), 48000)
    (low,) = load_views(discover(folder / "low.wav").sources[0], LoadOptions(sample_rate=48000))
    (native,) = load_views(discover(tmp_path / "native.wav").sources[0])
    assert low.sr == 48000 and low.recorded_sr == 22050 and native.recorded_sr is None

    def tone_bin(view: View) -> int:  # the loudest row of the positive frequencies
        return int(np.argmax(view.image[conventions.CENTER_ROW :].mean(axis=1)))

    assert tone_bin(native) == tone_bin(low) == round(conventions.bin_at(3000.0, 48000))
    (own_rate,) = load_views(discover(folder / "low.wav").sources[0])
    assert own_rate.sr == 22050 and tone_bin(own_rate) == round(conventions.bin_at(3000.0, 22050))

    checkpoint = tmp_path / "trained_at_48k.pth"
    record = torch.load(tiny_checkpoint, weights_only=True)
    save_checkpoint({**record, "args": {**record["args"], "sample_rate": 48000}}, checkpoint)
    assert _run("-i", str(folder), "-o", str(tmp_path / "out"), "-checkpoint", str(checkpoint)) == 0
    info = sf.info(str(tmp_path / "out" / "denoised" / "low.wav"))
    assert info.samplerate == 48000 and abs(info.frames - 1.5 * 48000) <= 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["recordings_resampled_to"] == 48000 and not summary["warnings"]

    argv = ["-i", str(folder), "-o", str(tmp_path / "kept"), "-checkpoint", str(checkpoint)]
    assert _run(*argv, "--keep_rate") == 0
    assert sf.info(str(tmp_path / "kept" / "denoised" / "low.wav")).samplerate == 22050
    summary = json.loads((tmp_path / "kept" / "summary.json").read_text())
    assert summary["recordings_resampled_to"] is None
    (warning,) = summary["warnings"]
    assert "recorded at 22050 Hz" in warning and "trained at 48000 Hz" in warning


def test_a_checkpoint_records_how_recordings_are_segmented_and_rendered(tmp_path, tiny_checkpoint):
    """A training preset's inference defaults (tile overlap, rendering of recordings) come
    with its checkpoint: used unless the command line says otherwise, checked on loading,
    and not used for BSD images."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    audio_io.write_audio(folder / "tone.wav", _tone(16000, seconds=4.0), 16000)
    record = torch.load(tiny_checkpoint, weights_only=True)
    fast = "gated,floor=-20,margin=200:30,far=-50,alpha=2,hops=2"
    checkpoint = tmp_path / "fast.pth"
    recorded = {"recording_overlap": 0.0, "recording_render": fast, "recording_time_flip": True}
    save_checkpoint({**record, "args": {**record["args"], **recorded}}, checkpoint)

    def summary(out: str, *argv: str) -> dict:
        assert _run("-i", str(folder), "-o", str(tmp_path / out), "-checkpoint",
                    str(checkpoint), *argv) == 0  # fmt: skip
        return json.loads((tmp_path / out / "summary.json").read_text())

    defaults = summary("defaults")
    assert (defaults["overlap"], defaults["rendering"], defaults["time_flip"]) == (0.0, fast, True)
    told = summary("told", "--overlap", "0.25", "--gate_hops", "4", "--no-time_flip")
    assert told["overlap"] == 0.25 and told["rendering"] == fast.removesuffix(",hops=2")
    assert told["time_flip"] is False
    model, settings = load_model(str(checkpoint))
    images = SegmentOptions().segmenter(model, settings, recordings=False)
    assert images.rendering.is_bsd and images.overlap == DEFAULT_OVERLAP  # BSD images: as ever
    assert not images.time_flip
    recordings = SegmentOptions().segmenter(model, settings, recordings=True)
    assert (recordings.overlap, recordings.rendering.spec) == (0.0, fast)
    assert recordings.time_flip
    assert not SegmentOptions(prompt="gt_box").segmenter(model, settings, True).time_flip
    assert not load_model(tiny_checkpoint)[1].recording_time_flip  # unrecorded: off

    bad = tmp_path / "bad.pth"
    save_checkpoint({**record, "args": {**record["args"], "recording_render": "gated,hops=3"}},
                    bad)  # fmt: skip
    with pytest.raises(ValueError, match=r"bad\.pth: its recorded inference defaults: .*hops"):
        load_model(str(bad))
