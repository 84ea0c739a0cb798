"""The Python API (utils/api.py): what budsam_infer.py writes, as arrays, for files and
arrays alike."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import budsam_infer as infer
from tests.test_long_recordings import SR, _recording
from utils.api import BudSAMDenoiser
from utils.audio.conventions import num_frames
from utils.common.cpu import cpu_threads
from utils.data.image_io import read_mask_png
from utils.data.selection_table import write_selection_table


@pytest.fixture(scope="module")
def denoiser(tiny_checkpoint) -> BudSAMDenoiser:
    return BudSAMDenoiser.from_checkpoint(tiny_checkpoint)


@pytest.mark.parametrize("channels", [1, 2])
def test_a_file_gives_what_the_command_line_writes(denoiser, tiny_checkpoint, tmp_path, channels):
    path = _recording(tmp_path / "clip.wav", 12.0, seed=11, channels=channels)
    out = tmp_path / "out"
    assert infer.main(["-i", str(path), "-o", str(out), "-checkpoint", str(tiny_checkpoint),
                       "--device", "cpu", "--threads", "1"]) == 0  # fmt: skip
    with cpu_threads(1):  # as the command line ran
        result = denoiser.denoise(path)

    written, sr = sf.read(out / "denoised" / "clip.wav", dtype="float32", always_2d=True)
    assert result.sr == sr == SR and result.audio.dtype == np.float32
    assert result.audio.shape == ((12 * SR,) if channels == 1 else (channels, 12 * SR))
    # The command line writes 16-bit PCM: one quantisation step apart at most.
    np.testing.assert_allclose(written.T.reshape(result.audio.shape), result.audio, atol=1 / 32768)
    names = ["clip"] if channels == 1 else ["clip_left", "clip_right"]
    masks = [read_mask_png(out / "masks" / f"{name}.png") for name in names]
    np.testing.assert_array_equal(result.mask, masks[0] if channels == 1 else np.stack(masks))
    assert result.mask.dtype == bool and 0 < result.mask.mean() < 1
    write_selection_table(tmp_path / "api.txt", result.regions)
    cli_table = out / "selections" / "clip.selections.txt"
    assert result.regions and (tmp_path / "api.txt").read_text() == cli_table.read_text()


def test_an_array_gives_what_the_same_audio_in_a_file_gives(denoiser, tmp_path):
    rng = np.random.default_rng(12)
    y = (0.1 * rng.standard_normal(5 * SR)).astype(np.float32)
    y[SR : 3 * SR] += np.sin(2 * np.pi * 1800 * np.arange(2 * SR) / SR).astype(np.float32) * 0.3
    sf.write(tmp_path / "clip.wav", y, SR, subtype="FLOAT")
    from_file = denoiser.denoise(tmp_path / "clip.wav")
    from_array = denoiser.denoise(y, sr=SR)
    np.testing.assert_array_equal(from_array.audio, from_file.audio)
    np.testing.assert_array_equal(from_array.mask, from_file.mask)
    assert from_array.regions == from_file.regions and from_array.sr == SR
    # 16-bit PCM samples are scaled as a 16-bit file's are read.
    pcm = np.round(y * 16384).astype(np.int16)
    sf.write(tmp_path / "pcm.wav", pcm, SR, subtype="PCM_16")
    np.testing.assert_array_equal(
        denoiser.denoise(pcm, sr=SR).audio, denoiser.denoise(str(tmp_path / "pcm.wav")).audio
    )


def test_an_array_needs_its_sample_rate_and_a_checkpoint_must_exist(denoiser, tmp_path):
    with pytest.raises(ValueError, match="needs its sample rate"):
        denoiser.denoise(np.zeros(SR, np.float32))
    missing = tmp_path / "nothing.pth"
    with pytest.raises(ValueError) as raised:
        BudSAMDenoiser.from_checkpoint(missing)
    assert infer.main(["-i", str(tmp_path), "-o", str(tmp_path / "o"), "-checkpoint",
                       str(missing), "--device", "cpu"]) == 2  # fmt: skip
    assert str(raised.value) == f"{missing}: checkpoint not found"
    with pytest.raises(TypeError, match="unknown options"):
        BudSAMDenoiser.from_checkpoint(missing, prompt="gt_box")
    for samples in (np.zeros(SR, np.int64), np.zeros(SR, np.uint8)):  # not PCM as files hold it
        with pytest.raises(ValueError, match="int16/int32 PCM"):
            denoiser.denoise(samples, sr=SR)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_without_a_gpu_is_one_clear_error(tiny_checkpoint):
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        BudSAMDenoiser.from_checkpoint(tiny_checkpoint, device="cuda")


def test_a_stereo_array_gives_each_channel_its_audio_and_mask(denoiser):
    rng = np.random.default_rng(13)
    stereo = (0.1 * rng.standard_normal((2, 4 * SR))).astype(np.float32)
    result = denoiser.denoise(stereo, sr=SR)
    assert result.audio.shape == (2, 4 * SR)
    assert result.mask.shape == (2, 1024, num_frames(4 * SR))
    assert {region.channel for region in result.regions} <= {1, 2}
    mono = denoiser.denoise(stereo[1], sr=SR)  # a channel is segmented on its own
    np.testing.assert_array_equal(mono.mask, result.mask[1])
    np.testing.assert_allclose(mono.audio, result.audio[1], atol=1e-6)  # float rounding
    with pytest.raises(ValueError, match="more channels than samples"):
        denoiser.denoise(stereo.T, sr=SR)


def test_a_box_keeps_the_regions_inside_it(tiny_checkpoint, tmp_path):
    # A low threshold: the random model's mask is not empty inside the box.
    denoiser = BudSAMDenoiser.from_checkpoint(tiny_checkpoint, threshold=0.05)
    path = _recording(tmp_path / "clip.wav", 8.0, seed=14)
    everywhere = denoiser.denoise(path).regions
    t0, t1, f0, f1 = 2.0, 4.0, 1000.0, 2500.0
    inside = denoiser.denoise(path, box=[t0, t1, f0, f1]).regions
    assert inside and any(r.begin_s < t0 or r.end_s > t1 for r in everywhere)
    frame, half_bin = 128 / SR, SR / 1024  # a window, and a bin of rounding each side
    for region in inside:
        assert t0 - frame <= region.begin_s < region.end_s <= t1 + frame
        assert f0 - half_bin <= region.low_hz < region.high_hz <= f1 + half_bin
    with pytest.raises(ValueError, match="--box needs 0 <= T0 < T1"):
        denoiser.denoise(path, box=(3.0, 2.0, 100.0, 2000.0))
