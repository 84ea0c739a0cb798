"""utils.audio follows the BSD dataset's MATLAB conventions exactly."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from utils.audio import align, bsd, conventions, kernel
from utils.audio import io as audio_io
from utils.audio.reference import reference_istft, reference_stft
from utils.data.image_io import read_gray_png, read_mask_png

# ----------------------------------------------------------------------------- the published sample


@pytest.fixture(scope="module")
def xc41136(bsd_sample):
    y, sr = audio_io.load_audio(bsd_sample / "XC41136.wav")
    image = read_gray_png(bsd_sample / "XC41136.png")
    mask = read_mask_png(bsd_sample / "XC41136_mask.png")
    denoised, denoised_sr = audio_io.load_audio(bsd_sample / "XC41136_denoised.wav")
    offset = align.align_to_image(y, image)
    return {"y": y, "sr": sr, "image": image, "mask": mask, "denoised": denoised, "offset": offset}


def test_sample_is_mp3_behind_wav_name_and_decodes(bsd_sample, xc41136):
    assert audio_io.sniff_audio_format(bsd_sample / "XC41136.wav") == "MP3"
    assert xc41136["sr"] == 48000
    assert len(xc41136["y"]) == 195_840  # libsndfile's decode, as measured in the protocol


def test_alignment_finds_the_measured_decoder_offset(xc41136):
    assert xc41136["offset"] == 528


def test_aligned_image_reproduces_published_png(xc41136):
    image = xc41136["image"]
    segment = xc41136["y"][xc41136["offset"] :][: conventions.num_samples(image.shape[1])]
    ours = bsd.spectrogram_to_image(bsd.stft(segment))
    assert ours.shape == image.shape
    error = np.abs(ours.astype(np.float64) - image) / 255.0
    assert error.mean() <= 0.002
    assert np.mean(error <= 1 / 255 + 1e-12) >= 0.99


def test_published_mask_reproduces_published_denoised_audio(xc41136):
    published = xc41136["denoised"]
    segment = xc41136["y"][xc41136["offset"] :][: len(published)]
    ours = bsd.mask_to_audio(segment, xc41136["mask"])
    assert len(ours) == len(published) == 194_112
    snr = 10 * np.log10(np.sum(published**2) / np.sum((published - ours) ** 2))
    assert snr >= 40.0


# ----------------------------------------------------------------------------- STFT conventions


def _assert_float32_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float32 rounding (the STFT is computed in float32): within 1e-6 of the
    largest magnitude, about 10 float32 steps, far below an image's 1/255."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("n_samples", [128, 129, 191, 192, 5000])
def test_stft_kernel_matches_the_plain_fft_reference(n_samples):
    y = np.random.default_rng(n_samples).standard_normal(n_samples)
    S = bsd.stft(y)
    assert S.shape == (1024, (n_samples - 128) // 64 + 1)
    _assert_float32_close(S, reference_stft(y))


def test_centered_row_order_puts_dc_at_row_511_and_mirrors_tones():
    sr, bin_index = 48000, 100
    t = np.arange(4096) / sr
    tone = np.cos(2 * np.pi * (bin_index * sr / 1024) * t)
    magnitude = np.abs(bsd.stft(tone)).mean(axis=1)
    top_two = sorted(np.argsort(magnitude)[-2:])
    assert top_two == [511 - bin_index, 511 + bin_index]
    dc = np.abs(bsd.stft(np.ones(1024))).mean(axis=1)
    assert int(np.argmax(dc)) == conventions.CENTER_ROW == 511


def test_the_plain_fft_reference_follows_the_protocol_definition():
    """DC of a constant frame is the window's sum at row 511, and the reference inverts
    itself exactly (float64)."""
    S = reference_stft(np.ones(128))
    assert S.shape == (1024, 1)
    assert np.isclose(S[conventions.CENTER_ROW, 0], np.hamming(128).sum())
    y = np.random.default_rng(3).standard_normal(1000)
    covered = conventions.num_samples(conventions.num_frames(len(y)))
    np.testing.assert_allclose(reference_istft(reference_stft(y)), y[:covered], atol=1e-12)


def test_masked_inverse_kernel_matches_the_plain_fft_reference():
    rng = np.random.default_rng(4)
    y = rng.standard_normal(6000)
    mask = rng.random((1024, conventions.num_frames(len(y)))) > 0.6
    expected = reference_istft(np.where(mask, reference_stft(y), 0), len(y))
    _assert_float32_close(bsd.mask_to_audio(y, mask), expected)


def test_istft_kernel_matches_the_plain_fft_reference_for_any_spectrum():
    rng = np.random.default_rng(1)
    S = rng.standard_normal((1024, 9)) + 1j * rng.standard_normal((1024, 9))  # not Hermitian
    _assert_float32_close(bsd.istft(S), reference_istft(S))


@pytest.mark.parametrize("n_samples", [128, 1000, 48_000 + 17])
def test_all_ones_mask_reconstructs_at_over_100_db(n_samples):
    y = np.random.default_rng(2).standard_normal(n_samples)
    x = bsd.mask_to_audio(y, np.ones((1024, conventions.num_frames(n_samples)), dtype=bool))
    covered = conventions.num_samples(conventions.num_frames(n_samples))
    assert len(x) == n_samples
    snr = 10 * np.log10(np.sum(y[:covered] ** 2) / np.sum((y[:covered] - x[:covered]) ** 2))
    assert snr >= 100.0
    assert np.all(x[covered:] == 0)


def test_istft_length_pads_and_cuts():
    S = bsd.stft(np.random.default_rng(3).standard_normal(1000))  # natural length 960
    assert len(bsd.istft(S)) == 960
    assert len(bsd.istft(S, length=1000)) == 1000
    assert np.all(bsd.istft(S, length=1000)[960:] == 0)
    assert len(bsd.istft(S, length=500)) == 500


def test_stft_rejects_signal_shorter_than_a_window():
    with pytest.raises(ValueError, match="shorter than one STFT window"):
        bsd.stft(np.zeros(127))


# ----------------------------------------------------------------------------- images and masks


def test_spectrogram_to_image_clips_and_rounds_like_matlab():
    S = np.array([[0.0, 0.5 / 255, 0.3, 1.0, 7.5, -0.2 + 0.0j]])
    # |S| = 0, 0.5/255 (a half rounds up), 0.3 -> 76.5 -> 77, 1 -> 255, saturated, 0.2 -> 51
    np.testing.assert_array_equal(bsd.spectrogram_to_image(S), [[0, 1, 77, 255, 255, 51]])
    assert bsd.spectrogram_to_image(S).dtype == np.uint8


def test_apply_mask_zeroes_masked_bins_and_leaves_input_alone():
    rng = np.random.default_rng(4)
    S = rng.standard_normal((1024, 6)) + 1j * rng.standard_normal((1024, 6))
    mask = rng.random((1024, 6)) > 0.5
    original = S.copy()
    masked = bsd.apply_mask(S, mask.astype(np.uint8) * 255)
    assert np.all(masked[~mask] == 0)
    np.testing.assert_array_equal(masked[mask], S[mask])
    np.testing.assert_array_equal(S, original)


def test_apply_mask_resizes_a_mask_of_another_size():
    S = np.ones((1024, 40), dtype=complex)
    small = np.zeros((256, 10), dtype=np.uint8)
    small[:, 5:] = 255  # right half kept
    masked = bsd.apply_mask(S, small)
    assert np.all(masked[:, :18] == 0)
    assert np.all(masked[:, 22:] == 1)


def test_mask_to_audio_equals_istft_of_masked_stft_for_asymmetric_masks():
    rng = np.random.default_rng(5)
    y = rng.standard_normal(6000)
    for mask in (
        rng.random((1024, conventions.num_frames(6000))) > 0.3,
        rng.random((300, 40)) > 0.5,
    ):
        expected = bsd.istft(bsd.apply_mask(bsd.stft(y), mask), length=len(y))
        _assert_float32_close(bsd.mask_to_audio(y, mask), expected)


def test_mask_to_audio_of_a_birds_mask_keeping_some_frames_and_a_band_of_bins():
    rng = np.random.default_rng(9)
    y = rng.standard_normal(20_000)
    mask = np.zeros((1024, conventions.num_frames(len(y))), dtype=bool)
    mask[conventions.CENTER_ROW + 40 : conventions.CENTER_ROW + 90, 30:80] = (
        True  # a call, upper half only
    )
    mask[conventions.CENTER_ROW - 120 : conventions.CENTER_ROW - 60, 200:230] = (
        rng.random((60, 30)) > 0.5
    )
    expected = bsd.istft(bsd.apply_mask(bsd.stft(y), mask), length=len(y))
    _assert_float32_close(bsd.mask_to_audio(y, mask), expected)


def test_istft_planes_weights_skip_only_what_is_zero():
    planes = kernel.stft_planes(np.random.default_rng(10).standard_normal(9000).astype(np.float32))
    n_frames = planes.shape[1]
    sparse = np.zeros((n_frames, 513), dtype=np.uint8)
    sparse[10:20, 100:140] = 2
    sparse[50, 7] = 1
    band = np.zeros_like(sparse)
    band[:, 60:200] = 1  # every frame, a band of bins
    full = np.full((n_frames, 513), 2, np.uint8)
    for weights in (sparse, band, full, np.zeros_like(sparse)):
        expected = kernel.istft_planes(planes * weights, length=9000)
        _assert_float32_close(kernel.istft_planes(planes, 9000, weights=weights), expected)
    assert not kernel.istft_planes(planes, weights=np.zeros_like(sparse)).any()
    with pytest.raises(ValueError, match="weights must be"):
        kernel.istft_planes(planes, weights=sparse[:-1])


def test_kept_bin_counts_fold_the_mirrored_rows_of_each_bin():
    keep = np.zeros((1024, 3), dtype=bool)
    keep[conventions.CENTER_ROW + 5, 0] = True  # bin +5 only
    keep[[conventions.CENTER_ROW + 7, conventions.CENTER_ROW - 7], 1] = True  # bin 7 and its mirror
    keep[[conventions.CENTER_ROW, 1023], 2] = True  # bin 0 and bin 512 (each shown once)
    counts = bsd.kept_bin_counts(keep)
    assert counts.shape == (3, 513) and counts.dtype == np.uint8
    expected = np.zeros((3, 513), dtype=np.uint8)
    expected[0, 5], expected[1, 7], expected[2, 0], expected[2, 512] = 1, 2, 2, 2
    np.testing.assert_array_equal(counts, expected)


def test_image_from_planes_is_the_stft_image():
    y = np.random.default_rng(8).standard_normal(20_000) * 0.05
    from_planes = bsd.planes_to_image(kernel.stft_planes(y))
    from_stft = bsd.spectrogram_to_image(bsd.stft(y))
    assert from_planes.shape == from_stft.shape and from_planes.flags.c_contiguous
    differ = from_planes != from_stft  # float32 rounding can flip a pixel at a half step
    assert np.abs(from_planes.astype(int) - from_stft).max() <= 1 and differ.mean() < 1e-4


def test_empty_mask_gives_silence():
    y = np.random.default_rng(6).standard_normal(3000)
    assert np.all(bsd.mask_to_audio(y, np.zeros((1024, conventions.num_frames(3000)))) == 0)


@pytest.mark.parametrize("offset", [0, 37, 300, 1500])
def test_align_to_image_recovers_a_known_offset(offset):
    rng = np.random.default_rng(7)
    t = np.arange(60_000) / 48000
    y = 0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * (3000 + 2000 * t) * t)
    image = bsd.spectrogram_to_image(bsd.stft(y[offset:]))
    assert align.align_to_image(y, image) == offset


# ----------------------------------------------------------------------------- loading and names


def test_audio_source_for_image_maps_bsd_channel_names():
    assert audio_io.audio_source_for_image("XC1_left.png") == ("XC1", "left")
    assert audio_io.audio_source_for_image("a_b_right.png") == ("a_b", "right")
    assert audio_io.audio_source_for_image("XC1.png") == ("XC1", None)
    assert audio_io.audio_source_for_image("_left.png") == ("_left", None)


@pytest.mark.parametrize(
    "suffix, subtype",
    [(".wav", "PCM_16"), (".wav", "FLOAT"), (".flac", "PCM_24"), (".ogg", "VORBIS")],
)
def test_load_audio_reads_formats_at_their_own_rate(tmp_path, suffix, subtype):
    y = 0.5 * np.sin(np.linspace(0, 200, 22050))
    path = tmp_path / f"tone{suffix}"
    sf.write(path, y, 22050, subtype=subtype)
    loaded, sr = audio_io.load_audio(path)
    assert sr == 22050 and loaded.dtype == np.float64 and loaded.ndim == 1
    tolerance = 0.05 if subtype == "VORBIS" else 1e-4
    assert np.max(np.abs(loaded[: len(y)] - y)) < tolerance


def test_load_audio_picks_stereo_channels(tmp_path):
    left, right = np.full(1000, 0.25), np.full(1000, -0.5)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    assert np.allclose(audio_io.load_audio(path, "left")[0], left)
    assert np.allclose(audio_io.load_audio(path, "right")[0], right)
    assert np.allclose(audio_io.load_audio(path, 1)[0], right)
    assert np.allclose(audio_io.load_audio(path)[0], -0.125)  # mono mix
    with pytest.raises(ValueError, match="stereo.wav: channel 2"):
        audio_io.load_audio(path, 2)


def test_load_audio_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(ValueError, match="missing.wav: audio file not found"):
        audio_io.load_audio(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match="garbage.wav: cannot decode audio"):
        audio_io.load_audio(garbage)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 8000)
    with pytest.raises(ValueError, match="empty.wav: audio holds no samples"):
        audio_io.load_audio(empty)
    bad = tmp_path / "nan.wav"
    sf.write(bad, np.array([0.0, np.nan, 0.1]), 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match="nan.wav: audio holds NaN"):
        audio_io.load_audio(bad)


def test_write_audio_pcm16_round_trips_exactly_and_leaves_no_temp_file(tmp_path):
    y = np.random.default_rng(8).uniform(-0.9, 0.9, (2, 500))
    path = tmp_path / "out.wav"
    audio_io.write_audio(path, y, 44100)
    stereo, sr = audio_io.load_audio_channels(path)
    assert sr == 44100
    np.testing.assert_array_equal(stereo, audio_io.quantize_pcm16(y) / 32768.0)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
