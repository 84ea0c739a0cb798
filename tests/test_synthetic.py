"""The synthetic BSD set: layout, fidelity to the BSD conventions, variety, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from utils.audio import bsd, conventions
from utils.audio import io as audio_io
from utils.data import mask_ops, noises, sounds, synthetic
from utils.data.bsd_layout import (
    CLEAN_AUDIO_DIR,
    DENOISED_AUDIO_DIR,
    IMAGES_DIR,
    MASKS_DIR,
    RAW_AUDIO_DIR,
    split_dir,
)
from utils.data.image_io import read_gray_png, read_mask_png

COUNTS = {"train": 4, "valid": 2, "test": 2}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate_dataset(out, COUNTS, seed=3, workers=1, progress=False)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_layout_and_manifest(small_set):
    rows = synthetic.read_manifest(small_set / "manifest.csv")
    assert [r["split"] for r in rows].count("train") == 4
    assert len(rows) == sum(COUNTS.values())
    for split, count in COUNTS.items():
        root = split_dir(small_set, split)
        for folder in (IMAGES_DIR, MASKS_DIR, DENOISED_AUDIO_DIR):
            assert len(list((root / folder).iterdir())) == count, (split, folder)
        recordings = {r["audio"] for r in rows if r["split"] == split}
        for folder in (RAW_AUDIO_DIR, CLEAN_AUDIO_DIR):
            assert {p.stem for p in (root / folder).iterdir()} == recordings
    assert set(rows[0]) == set(synthetic.MANIFEST_COLUMNS)


def test_images_masks_and_denoised_audio_follow_the_bsd_conventions(small_set):
    for row in synthetic.read_manifest(small_set / "manifest.csv"):
        root = small_set / row["split"]
        raw, sr = audio_io.load_audio(
            root / RAW_AUDIO_DIR / f"{row['audio']}.wav", row["channel"] or None
        )
        assert sr == int(row["sample_rate"])
        image = read_gray_png(root / IMAGES_DIR / f"{row['name']}.png")
        mask = read_gray_png(root / MASKS_DIR / f"{row['name']}.png")
        assert image.shape == mask.shape == (1024, conventions.num_frames(len(raw)))
        # The generator's STFT ran on one BLAS thread, this one may not: float32 products
        # can then round differently, flipping a pixel at a half step now and then.
        step = np.abs(image.astype(int) - bsd.spectrogram_to_image(bsd.stft(raw)))
        assert step.max() <= 1 and np.mean(step > 0) < 1e-5
        assert set(np.unique(mask)) <= {0, 255}
        # Mirror-symmetric about DC (row 511), as BSD masks are.
        np.testing.assert_array_equal(mask[:511], mask[512:1023][::-1])
        denoised, _ = audio_io.load_audio(root / DENOISED_AUDIO_DIR / f"{row['name']}.wav")
        expected = bsd.mask_to_audio(raw, mask)
        assert len(denoised) == len(raw)
        assert np.max(np.abs(denoised - expected)) <= 1 / 32768 + 1e-12  # 16-bit rounding
        assert float(row["mask_fraction"]) == pytest.approx((mask > 0).mean(), abs=1e-6)


def test_clean_audio_is_the_exact_bird_signal_at_the_stated_snr(small_set):
    for row in synthetic.read_manifest(small_set / "manifest.csv"):
        if not row["snr_db"]:
            continue
        root = small_set / row["split"]
        channel = row["channel"] or None
        raw, _ = audio_io.load_audio(root / RAW_AUDIO_DIR / f"{row['audio']}.wav", channel)
        clean, _ = audio_io.load_audio(root / CLEAN_AUDIO_DIR / f"{row['audio']}.wav", channel)
        snr = 10 * np.log10(np.sum(clean**2) / np.sum((raw - clean) ** 2))
        assert snr == pytest.approx(float(row["snr_db"]), abs=0.05)
        assert -5.5 <= snr <= 23.5


def test_mask_covers_the_bird_and_excludes_noise_only_bins():
    rng = np.random.default_rng(0)
    n, sr = 48000, 48000
    clean = np.zeros(n)
    clean[10000:20000] = 0.3 * np.sin(2 * np.pi * 4000 * np.arange(10000) / sr) * np.hanning(10000)
    noise = 0.01 * rng.standard_normal(n)
    clean_half, noise_half = bsd.stft_half(clean), bsd.stft_half(noise)
    mask = mask_ops.label_mask_half(clean_half, noise_half)
    energy = np.abs(clean_half) ** 2
    assert energy[mask].sum() / energy.sum() > 0.95
    assert not mask[:, :100].any()  # before the call: noise only
    assert mask.mean() < 0.05
    assert not mask_ops.label_mask_half(np.zeros_like(noise_half), noise_half).any()


def test_repertoire_noise_rates_and_durations_vary():
    plans = synthetic.plan_split("train", 120, seed=0)
    assert any(p.stereo for p in plans)
    recordings = [synthetic.synthesize(p, seed=0) for p in plans[:70]]
    kinds = {k for r in recordings for k in r["kinds"]}
    noise_kinds = {k for r in recordings for k in r["noise_kinds"]}
    assert kinds == set(sounds.VOCALISATIONS)
    assert noise_kinds == set(noises.NOISES)
    quiet = [r for r in recordings if np.sqrt(np.mean(r["raw"] ** 2)) < 0.01]
    assert quiet and all(r["visible_floor"] < mask_ops.VISIBLE_FLOOR for r in quiet)
    assert {r["sr"] for r in recordings} == set(synthetic.SAMPLE_RATES)
    durations = [r["raw"].shape[1] / r["sr"] for r in recordings]
    assert 2.0 <= min(durations) and max(durations) <= 8.0 and max(durations) - min(durations) > 3
    assert any(not r["kinds"] for r in recordings), "some clips must have no bird at all"
    assert all(np.max(np.abs(r["raw"])) < 1.0 for r in recordings)


def test_stereo_recording_gives_left_and_right_images(tmp_path):
    plan = synthetic.RecordingPlan("train", 0, "stereo_clip", stereo=True)
    for folder in (IMAGES_DIR, MASKS_DIR, RAW_AUDIO_DIR, DENOISED_AUDIO_DIR, CLEAN_AUDIO_DIR):
        (tmp_path / folder).mkdir()
    rows = synthetic.write_recording(plan, seed=0, split_root=tmp_path)
    assert [r["name"] for r in rows] == ["stereo_clip_left", "stereo_clip_right"]
    signals, _ = audio_io.load_audio_channels(tmp_path / RAW_AUDIO_DIR / "stereo_clip.wav")
    assert signals.shape[0] == 2
    left = read_mask_png(tmp_path / MASKS_DIR / "stereo_clip_left.png")
    expected = bsd.spectrogram_to_image(bsd.stft(signals[0]))
    np.testing.assert_array_equal(
        read_gray_png(tmp_path / IMAGES_DIR / "stereo_clip_left.png"), expected
    )
    assert left.shape == expected.shape


def test_same_seed_same_bytes_whatever_the_worker_count(small_set, tmp_path):
    again = tmp_path / "again"
    synthetic.generate_dataset(again, COUNTS, seed=3, workers=2, progress=False)
    assert _digest(again) == _digest(small_set)
    other = tmp_path / "other"
    synthetic.generate_dataset(other, COUNTS, seed=4, workers=1, progress=False)
    assert _digest(other) != _digest(small_set)


def test_existing_set_is_kept_or_refused_never_silently_replaced(tmp_path):
    out = tmp_path / "set"
    counts = {"train": 1, "valid": 0, "test": 0}
    manifest = synthetic.generate_dataset(out, counts, seed=0, workers=1, progress=False)
    stamp = manifest.stat().st_mtime_ns
    assert synthetic.generate_dataset(out, counts, seed=0, workers=1, progress=False) == manifest
    assert manifest.stat().st_mtime_ns == stamp  # same settings: reused as it is
    with pytest.raises(ValueError, match="already holds a synthetic set"):
        synthetic.generate_dataset(out, counts, seed=1, workers=1, progress=False)
    synthetic.generate_dataset(out, counts, seed=1, workers=1, overwrite=True, progress=False)
    assert synthetic.is_generated(out, counts, 1)
    (out / "my_notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to delete"):
        synthetic.generate_dataset(out, counts, seed=2, workers=1, overwrite=True, progress=False)
    assert (out / "my_notes.txt").read_text() == "keep me"


def test_command_line_writes_the_set_and_a_preview(tmp_path, capsys):
    out, preview = tmp_path / "cli", tmp_path / "preview.png"
    argv = ["--out", str(out), "--n_train", "2", "--n_valid", "1", "--n_test", "1"]
    assert synthetic.main(argv + ["--workers", "1", "--preview", str(preview)]) == 0
    assert "4 images" in capsys.readouterr().out
    assert preview.stat().st_size > 10_000
    assert synthetic.main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert synthetic.main(argv[:2] + ["--n_train", "-1"]) == 2


def test_split_dir_accepts_both_spellings(tmp_path):
    (tmp_path / "Training").mkdir()
    (tmp_path / "valid").mkdir()
    assert split_dir(tmp_path, "train") == tmp_path / "Training"
    assert split_dir(tmp_path, "valid") == tmp_path / "valid"
    with pytest.raises(ValueError, match="no test split found"):
        split_dir(tmp_path, "test")
