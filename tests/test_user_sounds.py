"""A user's own clean calls and site noise mixed into the synthetic training split
(``--bird_dir``/``--noise_dir``): the same layout and labelling rule, exact clean
references, unusable files skipped and counted, and the training options' checks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import budsam_train_multi as train
from tests.conftest import REPO_ROOT
from utils.audio import io as audio_io
from utils.data import recordings, synthetic
from utils.data.bsd_layout import CLEAN_AUDIO_DIR, MASKS_DIR, RAW_AUDIO_DIR
from utils.data.image_io import read_mask_png
from utils.data.recordings import UserSounds, usable_recordings
from utils.train.args import prepare_synthetic_data

SR = 22050
SHARED = REPO_ROOT.parent / "shared" / "realworld"
COUNTS = {"train": 12, "valid": 2, "test": 2}


def _write_user_folders(root: Path) -> tuple[Path, Path]:
    """A 'call library' of one 3.5 kHz whistle and a 'site' noise folder of hiss, plus one
    unreadable and one silent file in each."""
    rng = np.random.default_rng(0)
    birds, noise = root / "my_calls", root / "my_site"
    birds.mkdir()
    noise.mkdir()
    t = np.arange(int(1.0 * SR)) / SR
    audio_io.write_audio(birds / "whistle.wav", 0.3 * np.sin(2 * np.pi * 3500 * t), SR)
    audio_io.write_audio(noise / "hiss.wav", 0.05 * rng.standard_normal(12 * SR), SR)
    for folder in (birds, noise):
        (folder / "broken.wav").write_bytes(b"RIFF not really")
        audio_io.write_audio(folder / "silent.wav", np.zeros(SR), SR)
    return birds, noise


def _manifest(root: Path) -> list[dict]:
    with open(root / synthetic.MANIFEST_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def test_unusable_user_recordings_are_skipped_and_named(tmp_path):
    birds, _ = _write_user_folders(tmp_path)
    usable, skipped = usable_recordings(birds)
    assert [p.name for p in usable] == ["whistle.wav"]
    assert len(skipped) == 2 and any("broken.wav" in line for line in skipped)
    assert any("silent.wav: silent" in line for line in skipped)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="empty: no usable recording"):
        UserSounds.from_folders(str(empty), None)


def test_user_sounds_enter_the_training_split_only_with_exact_clean_references(tmp_path):
    birds, noise = _write_user_folders(tmp_path)
    sounds = UserSounds.from_folders(str(birds), str(noise))
    assert len(sounds.skipped) == 4 and len(sounds.bird_files) == len(sounds.noise_files) == 1
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    synthetic.generate_dataset(plain, COUNTS, seed=5, workers=1, progress=False)
    synthetic.generate_dataset(mixed, COUNTS, seed=5, workers=1, progress=False, sounds=sounds)
    assert synthetic.is_generated(mixed, COUNTS, 5, sounds)
    assert not synthetic.is_generated(mixed, COUNTS, 5)

    rows = _manifest(mixed)
    train_rows = [r for r in rows if r["split"] == "train"]
    assert any(r["vocalisation_types"] == "user_bird" for r in train_rows)
    assert any(r["noise_types"] == "user_noise" for r in train_rows)
    assert not any("user" in r["vocalisation_types"] + r["noise_types"] for r in rows if
                   r["split"] != "train")  # fmt: skip
    for split in ("valid", "test"):  # the evaluation splits stay the built-in ones
        for folder in (RAW_AUDIO_DIR, MASKS_DIR):
            for path in sorted((plain / split / folder).iterdir()):
                assert path.read_bytes() == (mixed / split / folder / path.name).read_bytes()

    row = next(r for r in train_rows if r["vocalisation_types"] == "user_bird" and not r["channel"])
    split_root = mixed / "train"
    clean, sr = audio_io.load_audio(split_root / CLEAN_AUDIO_DIR / f"{row['audio']}.wav")
    raw, _ = audio_io.load_audio(split_root / RAW_AUDIO_DIR / f"{row['audio']}.wav")
    spectrum = np.abs(np.fft.rfft(clean))
    peak_hz = np.argmax(spectrum) * sr / len(clean)
    assert abs(peak_hz - 3500) < 20  # the user's whistle, resampled to the recording's rate
    assert np.max(np.abs(raw - clean)) > 0  # with noise added
    mask = read_mask_png(split_root / MASKS_DIR / f"{row['name']}.png")
    assert mask.any()  # labelled by the same rule as the built-in birds


def test_training_options_need_a_preset_and_get_their_own_folder(tmp_path, capsys):
    birds, noise = _write_user_folders(tmp_path)
    with pytest.raises(SystemExit):
        train.parse_args(["--noise_dir", str(noise)])
    assert "use them with --preset cpu_demo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--preset", "cpu_demo", "--bird_dir", str(tmp_path / "gone")])
    assert "gone: no such folder" in capsys.readouterr().err
    args = train.parse_args(["--preset", "cpu_demo", "--noise_dir", str(noise)])
    assert args.tr_path.startswith("data/synthetic_site-")
    again = train.parse_args(["--preset", "cpu_demo", "--noise_dir", str(noise)])
    assert again.tr_path == args.tr_path  # the same folder on every run (and on resume)
    other = train.parse_args(["--preset", "cpu_demo", "--bird_dir", str(birds)])
    assert other.tr_path != args.tr_path


def test_the_presets_own_set_is_replaced_but_never_a_set_or_files_elsewhere(
    tmp_path, capsys, monkeypatch
):
    _, noise = _write_user_folders(tmp_path)
    monkeypatch.chdir(tmp_path)  # the preset's folder, data/synthetic_site-..., is relative
    args = train.parse_args(["--preset", "cpu_demo", "--noise_dir", str(noise)])
    args.synthetic = {"train": 2, "valid": 1, "test": 1, "seed": 0}
    older = {"train": 1, "valid": 1, "test": 1}
    synthetic.generate_dataset(args.tr_path, older, 0, 1, progress=False)
    prepare_synthetic_data(args)  # the preset's own, made with other settings: replaced
    assert "replacing" in capsys.readouterr().out
    sounds = UserSounds.from_folders(None, str(noise))
    assert synthetic.is_generated(args.tr_path, {"train": 2, "valid": 1, "test": 1}, 0, sounds)
    elsewhere, foreign = tmp_path / "my_set", tmp_path / "mine"
    synthetic.generate_dataset(elsewhere, older, 0, 1, progress=False)
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    for folder in (elsewhere, foreign):
        args.tr_path = str(folder)
        with pytest.raises(ValueError, match="already holds other files"):
            prepare_synthetic_data(args)
    assert synthetic.is_generated(elsewhere, older, 0)
    assert (foreign / "notes.txt").read_text() == "keep"


def test_silent_stretches_of_user_files_fall_back_or_hold_no_bird(tmp_path):
    rng = np.random.default_rng(2)
    birds, noise = tmp_path / "calls", tmp_path / "site"
    birds.mkdir()
    noise.mkdir()
    quiet_then_call = 1e-4 * rng.standard_normal(30 * SR)  # -60 dB background ...
    quiet_then_call[-SR:] += 0.3 * np.sin(2 * np.pi * 3000 * np.arange(SR) / SR)  # ... a call
    audio_io.write_audio(birds / "long_call.wav", quiet_then_call, SR, subtype="FLOAT")
    gap = np.zeros(30 * SR)  # a recorder's digital silence, then a second of noise
    gap[-SR:] = 0.05 * rng.standard_normal(SR)
    audio_io.write_audio(noise / "gap.wav", gap, SR, subtype="FLOAT")
    sounds = UserSounds.from_folders(str(birds), str(noise))
    out = tmp_path / "set"
    counts = {"train": 12, "valid": 0, "test": 0}
    synthetic.generate_dataset(out, counts, 3, 1, progress=False, sounds=sounds)
    rows = _manifest(out)
    assert any("user_noise" in r["noise_types"] and "+" in r["noise_types"] for r in rows)
    assert any(not r["vocalisation_types"] for r in rows)
    for row in rows:  # a stretch of background only is no bird: empty kinds, empty mask
        mask = read_mask_png(out / "train" / MASKS_DIR / f"{row['name']}.png")
        if not row["vocalisation_types"]:
            assert not mask.any(), row["name"]


@pytest.mark.skipif(not (SHARED / "noise_train").is_dir(), reason=f"{SHARED} is absent")
def test_the_shared_training_noise_and_birds_mix_into_a_training_split(tmp_path):
    sounds = UserSounds.from_folders(str(SHARED / "birds_train"), str(SHARED / "noise_train"))
    assert len(sounds.bird_files) > 40 and len(sounds.noise_files) > 10
    assert not any("_eval" in path for path in sounds.bird_files + sounds.noise_files)
    counts = {"train": 6, "valid": 0, "test": 0}
    synthetic.generate_dataset(tmp_path / "set", counts, 1, 1, progress=False, sounds=sounds)
    kinds = {r["vocalisation_types"] + "/" + r["noise_types"] for r in _manifest(tmp_path / "set")}
    assert any("user_" in kind for kind in kinds)


def test_only_the_first_minutes_of_a_long_source_are_decoded_and_kept(tmp_path, monkeypatch):
    path = tmp_path / "long_site.wav"
    audio_io.write_audio(path, 0.1 * np.random.default_rng(1).standard_normal(3 * SR), SR)
    monkeypatch.setattr(recordings, "MAX_SOURCE_SECONDS", 1.0)
    recordings.load_mono_cached.cache_clear()
    try:
        signal = recordings.load_mono_cached(str(path), SR)
        assert len(signal) == SR and not signal.flags.writeable
        assert recordings.load_mono_cached(str(path), SR) is signal  # decoded once
    finally:
        recordings.load_mono_cached.cache_clear()
