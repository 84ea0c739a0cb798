"""Rendering probabilities into audio (utils.audio.render), and the recording level
(utils.audio.level)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from utils.audio import bsd, level
from utils.audio.conventions import num_samples
from utils.audio.kernel import stft_planes
from utils.audio.render import BSD_RENDERING, Rendering, apply_gains, parse_rendering

SR = 48000


@pytest.fixture(scope="module")
def signal_and_map():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(SR)
    planes = stft_planes(y)
    probabilities = rng.random((1024, planes.shape[1])).astype(np.float32)
    return y, planes, probabilities


def test_the_binary_rendering_is_the_data_sets_mask(signal_and_map):
    y, planes, probabilities = signal_and_map
    mask = probabilities >= 0.5
    gains = BSD_RENDERING.gains(probabilities, SR)
    np.testing.assert_array_equal(gains, mask.astype(np.float32))
    np.testing.assert_array_equal(
        apply_gains(y, gains, planes), bsd.mask_to_audio(y, mask, planes=planes)
    )
    assert BSD_RENDERING.is_bsd and not parse_rendering("binary,floor=-20").is_bsd


def test_a_floor_of_minus_infinity_is_the_binary_mask_and_0_db_the_input(signal_and_map):
    y, planes, probabilities = signal_and_map
    floor_inf = Rendering("binary", floor_db=-math.inf).gains(probabilities, SR)
    np.testing.assert_array_equal(floor_inf, (probabilities >= 0.5).astype(np.float32))
    for kind in ("binary", "soft"):
        gains = Rendering(kind, floor_db=0.0).gains(probabilities, SR)
        assert np.all(gains == 1.0)
        out = apply_gains(y, gains, planes)
        n = num_samples(planes.shape[1])  # samples past the last whole frame are zero
        np.testing.assert_allclose(out[:n], y[:n], atol=1e-5)


def test_a_floor_attenuates_the_dropped_bins_by_its_level(signal_and_map):
    y, planes, probabilities = signal_and_map
    gains = Rendering("binary", floor_db=-20.0).gains(probabilities, SR)
    np.testing.assert_allclose(np.unique(gains), [0.1, 1.0], rtol=1e-6)
    nothing = np.zeros_like(probabilities)
    quiet = apply_gains(y, Rendering("binary", floor_db=-20.0).gains(nothing, SR), planes)
    n = num_samples(planes.shape[1])
    np.testing.assert_allclose(quiet[:n], 0.1 * y[:n], atol=1e-5)


def test_soft_gains_are_the_probabilities_and_a_margin_widens_what_is_kept():
    probabilities = np.zeros((1024, 200), np.float32)
    probabilities[600:610, 100:105] = 0.8
    soft = Rendering("soft").gains(probabilities, SR)
    np.testing.assert_array_equal(soft, probabilities)
    wide = Rendering("binary", margin_hz=470.0, margin_ms=20.0).gains(probabilities, SR)
    bins, frames = Rendering(margin_hz=470.0, margin_ms=20.0).margin_size(SR)
    assert (bins, frames) == (10, 15)  # 470 Hz at 46.9 Hz per bin, 20 ms at 1.33 ms per frame
    kept_rows, kept_cols = np.nonzero(wide)
    assert (kept_rows.min(), kept_rows.max()) == (600 - bins, 609 + bins)
    assert (kept_cols.min(), kept_cols.max()) == (100 - frames, 104 + frames)


def test_renderings_read_back_from_their_spec():
    for spec in ("binary", "soft,floor=-20", "binary,floor=-12,margin=300:40"):
        assert parse_rendering(spec).spec == spec
    with pytest.raises(ValueError, match="cannot read 'flor=-20'"):
        parse_rendering("soft,flor=-20")
    with pytest.raises(ValueError, match="unknown rendering"):
        parse_rendering("hard")
    with pytest.raises(ValueError, match="at most 0 dB"):
        parse_rendering("soft,floor=6")


def test_the_level_gain_makes_the_image_independent_of_the_recorders_gain():
    rng = np.random.default_rng(1)
    t = np.arange(2 * SR) / SR
    call = np.sin(2 * np.pi * (3000 + 800 * np.sin(2 * np.pi * 3 * t)) * t) * (t % 0.5 < 0.2)
    y = 0.3 * call + 0.05 * rng.standard_normal(t.size)
    images, as_the_data_set = [], []
    for gain in (1.0, 0.3, 0.1, 0.03):
        planes = stft_planes(gain * y)
        images.append(bsd.planes_to_image(planes, level.level_gain(planes, SR)))
        as_the_data_set.append(bsd.planes_to_image(planes))
    assert as_the_data_set[-1].mean() < 0.2 * as_the_data_set[0].mean()  # darkens with gain
    for image in images[1:]:
        assert np.abs(image.astype(int) - images[0]).max() <= 1
    silent = stft_planes(np.zeros(SR))
    assert level.level_gain(silent, SR) == 1.0
    assert level.level_gain(stft_planes(rng.standard_normal(4000)), 1000) == 1.0  # no band


def test_a_box_prompt_lets_nothing_outside_the_box_through_any_rendering(signal_and_map):
    from utils.data.inputs import View
    from utils.inference.segmenter import BandPrompt, ModelSettings, Segmenter

    y, planes, probabilities = signal_and_map
    band = BandPrompt((0.2, 0.6), (2000.0, 6000.0))
    view = View("v", bsd.planes_to_image(planes), audio=y, sr=SR, spectrum=planes)
    region = bsd.band_region(band.seconds, band.hertz, SR, planes.shape[1])
    rendering = parse_rendering("soft,floor=-20,margin=200:30")
    segmenter = Segmenter(None, ModelSettings("none"), prompt="box", band=band, rendering=rendering)
    _, audio, gains = segmenter.render(view, probabilities)
    assert np.all(gains[~region] == 0) and np.all(gains[region] >= 0.1 - 1e-6)
    np.testing.assert_allclose(audio, apply_gains(y, gains, planes))


# The gated rendering (utils.audio.gated): a soft mask and a noise gate in a finer STFT.


def _tone_in_noise(seconds: float = 3.0, seed: int = 1):
    """A 3 kHz whistle in its middle second, under white noise; and a probability map that
    marks the whistle's bins in its second (bins 0 ... 512 of the BSD frames)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    clean = np.where((t >= 1.0) & (t < 2.0), 0.5 * np.sin(2 * np.pi * 3000 * t), 0.0)
    noisy = (clean + 0.3 * rng.standard_normal(n)).astype(np.float32)
    frames = stft_planes(noisy).shape[1]
    probability = np.zeros((513, frames), np.float32)
    seconds_of_frame = (np.arange(frames) * 64 + 64) / SR
    row = round(3000 * 1024 / SR)
    probability[row - 2 : row + 3, (seconds_of_frame >= 1.0) & (seconds_of_frame < 2.0)] = 0.9
    return clean.astype(np.float32), noisy, probability


@pytest.mark.parametrize("hops", [4, 2])
def test_gated_floors_of_0_db_return_the_input_and_the_gate_beats_the_soft_mask(hops):
    from utils.scoring.metrics import si_sdr

    clean, noisy, probability = _tone_in_noise()
    two_sided = bsd.two_sided(probability)
    identity = parse_rendering(f"gated,floor=0,far=0,hops={hops}")
    passed = apply_gains(noisy, identity.signal_gains(noisy, two_sided, SR))
    np.testing.assert_allclose(passed, noisy, atol=1e-5)
    soft = parse_rendering("soft,floor=-20,margin=200:30")
    gated = parse_rendering(f"gated,floor=-20,far=-50,alpha=2,margin=200:30,hops={hops}")
    scores = {
        r.kind: si_sdr(clean, apply_gains(noisy, r.signal_gains(noisy, two_sided, SR)))
        for r in (soft, gated)
    }
    # The whistle's 5 BSD bins (235 Hz) hold far more noise than its finer-STFT bins.
    assert scores["gated"] > scores["soft"] + 3.0, scores
    assert scores["gated"] > si_sdr(clean, noisy) + 10.0, scores


def test_gated_far_floor_is_reached_away_from_the_bird_and_the_near_floor_beside_it():
    _, noisy, probability = _tone_in_noise()
    gated = parse_rendering("gated,floor=-20,far=-50,alpha=2")
    gains = gated.signal_gains(noisy, bsd.two_sided(probability), SR)
    seconds = (np.arange(len(gains.gains)) * gains_hop(SR) + gains_hop(SR) - 1024) / SR
    hertz = np.arange(gains.gains.shape[1]) * SR / 2048
    far = gains.gains[np.ix_(seconds < 0.5, hertz > 10000)]
    near = gains.gains[np.ix_((seconds > 1.2) & (seconds < 1.8), np.abs(hertz - 3300) < 100)]
    np.testing.assert_allclose(far, 10 ** (-50 / 20), rtol=1e-4)
    assert near.min() >= 10 ** (-20 / 20) - 1e-6


def gains_hop(sr: int) -> int:
    from utils.audio.gated import fine_grid

    return fine_grid(sr)[1]


@pytest.mark.parametrize("hops, smooth", [(4, ""), (2, ""), (4, ",smooth=50:20")])
def test_gated_rendering_a_block_at_a_time_equals_rendering_it_whole(hops, smooth):
    from utils.audio.gated import block_gains, context_samples, source_frames

    _, noisy, probability = _tone_in_noise(seconds=14.0, seed=2)
    gated = parse_rendering(f"gated,floor=-20,far=-50,alpha=2,margin=200:30,hops={hops}{smooth}")
    whole = apply_gains(noisy, gated.signal_gains(noisy, bsd.two_sided(probability), SR))
    context = context_samples(gated.gate, SR)
    assert context > 5 * SR  # the noise is measured 5 s either side
    blocks = []
    for start in range(0, len(noisy), 100_000):
        keep = (start, min(start + 100_000, len(noisy)))
        first = max(0, keep[0] - context)  # only the block and its context are given
        samples = noisy[first : keep[1] + context]
        frames = source_frames(gated.gate, SR, keep, len(noisy))
        assert frames.min() >= max(0, first // 64 - 1)  # within the block and its context
        assert frames.max() < (keep[1] + context) // 64 + 2
        gains = block_gains(samples, first, probability[:, frames], SR, gated.gate, keep,
                            len(noisy))  # fmt: skip
        blocks.append(gains.rendered())
        np.testing.assert_allclose(blocks[-1], gains.apply(samples, first), atol=1e-7)
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)
    keep = (SR, 2 * SR)
    frames = probability[:, source_frames(gated.gate, SR, keep, len(noisy))]
    with pytest.raises(ValueError, match="do not cover"):
        block_gains(noisy[SR:], SR, frames, SR, gated.gate, keep, len(noisy))
    with pytest.raises(ValueError, match="probabilities must be"):
        block_gains(noisy, 0, frames[:, 1:], SR, gated.gate, keep, len(noisy))


def test_where_the_model_calls_nothing_noise_the_gate_still_removes_the_steady_noise():
    """A band the model marks for the whole recording (a cicada chorus taken for a bird)
    has no noise bins to measure; the gate then measures the band's own geometric mean
    power, so its steady noise drops to the floor and the whistle in it still passes."""
    _, noisy, probability = _tone_in_noise(seconds=14.0, seed=3)
    band = slice(round(2000 * 1024 / SR), round(4000 * 1024 / SR))
    probability[band, :] = 0.9
    gated = parse_rendering("gated,floor=-20,far=-50,alpha=2,margin=200:30")
    gains = gated.signal_gains(noisy, bsd.two_sided(probability), SR)
    seconds = (np.arange(len(gains.gains)) * gains_hop(SR) + gains_hop(SR) - 1024) / SR
    hertz = np.arange(gains.gains.shape[1]) * SR / 2048
    noise_only = gains.gains[np.ix_(seconds > 3.0, (hertz > 2300) & (hertz < 2700))]
    whistle = gains.gains[np.ix_((seconds > 1.2) & (seconds < 1.8), np.abs(hertz - 3000) < 5)]
    assert np.median(noise_only) < 10 ** (-20 / 20) * 1.01  # was 1: not gated at all
    assert whistle.min() > 0.75  # 0.1 + 0.9 x 0.9 at most, with the probability 0.9
    # Measured within the same 5 s either side, so a block at a time renders the same.
    _assert_a_block_renders_as_the_whole(gated, noisy, probability, gains)


def _assert_a_block_renders_as_the_whole(rendering, noisy, probability, gains):
    """Seconds 6 ... 7 of ``noisy`` rendered from that block and its context alone equal
    the whole recording's rendering with ``gains``."""
    from utils.audio.gated import block_gains, context_samples, source_frames

    context = context_samples(rendering.gate, SR)
    keep = (6 * SR, 7 * SR)
    first = keep[0] - context
    frames = source_frames(rendering.gate, SR, keep, len(noisy))
    block = block_gains(noisy[first : keep[1] + context], first, probability[:, frames], SR,
                        rendering.gate, keep, len(noisy))  # fmt: skip
    whole = apply_gains(noisy, gains)
    np.testing.assert_allclose(block.rendered(), whole[keep[0] : keep[1]], atol=1e-6)


def test_gamma_raises_the_gain_of_the_bins_the_model_is_unsure_of():
    """The gain is floor + (1 - floor) * P ** gamma * G: at P = 0.25 the gate's share is
    0.5 G with gamma 0.5, against 0.25 G with gamma 1, and the same where P = 1."""
    _, noisy, probability = _tone_in_noise()
    shares = {}
    for value in (0.25, 1.0):
        probability[probability > 0] = value
        for gamma in (1.0, 0.5):
            gated = parse_rendering(f"gated,floor=-20,far=-50,alpha=2,gamma={gamma:g}")
            gains = gated.signal_gains(noisy, bsd.two_sided(probability), SR)
            seconds = (np.arange(len(gains.gains)) * gains_hop(SR) + gains_hop(SR) - 1024) / SR
            hertz = np.arange(gains.gains.shape[1]) * SR / 2048
            whistle = gains.gains[np.ix_((seconds > 1.2) & (seconds < 1.8),
                                         np.abs(hertz - 3000) < 5)]  # fmt: skip
            floor = 10 ** ((-20 if value >= 0.5 else -50) / 20)  # near only at P >= 0.5
            shares[value, gamma] = (whistle - floor) / (1 - floor)
    np.testing.assert_allclose(shares[0.25, 0.5], 2 * shares[0.25, 1.0], rtol=1e-4)
    np.testing.assert_allclose(shares[1.0, 0.5], shares[1.0, 1.0], rtol=1e-6)
    assert shares[0.25, 1.0].min() > 0.2  # the whistle passes the gate


def test_the_smoothed_gate_is_the_box_mean_of_the_gate():
    """With P = 0.1 everywhere (all of it noise to the gate) and no floor the gain is 0.1
    times the gate; ``smooth=50:20`` at 48 kHz averages the gate over 2 fine frames (10.7 ms
    each) and 2 fine bins (23.4 Hz) either side, the edges repeated."""
    from scipy.ndimage import uniform_filter

    _, noisy, probability = _tone_in_noise()
    probability[:] = 0.1
    plain = parse_rendering("gated,alpha=2").signal_gains(noisy, bsd.two_sided(probability), SR)
    smoothed = parse_rendering("gated,alpha=2,smooth=50:20").signal_gains(
        noisy, bsd.two_sided(probability), SR
    )
    assert 0.01 < (plain.gains > 0).mean() < 0.99  # the gate passes some bins, not others
    expected = uniform_filter(plain.gains.astype(np.float64), size=(5, 5), mode="nearest")
    np.testing.assert_allclose(smoothed.gains, expected, atol=1e-5)
    flicker = {name: np.abs(np.diff(g.gains, axis=0)).mean() for name, g in
               (("plain", plain), ("smoothed", smoothed))}  # fmt: skip
    assert flicker["smoothed"] < flicker["plain"]


def test_gated_renderings_read_back_and_check_their_floors():
    spec = "gated,floor=-20,margin=200:30,far=-50,alpha=2"
    assert parse_rendering(spec).spec == spec
    assert parse_rendering(f"{spec},hops=2").spec == f"{spec},hops=2"
    assert parse_rendering(f"{spec},hops=4").spec == spec  # the default, left out
    assert parse_rendering(f"{spec},gamma=0.5").spec == f"{spec},gamma=0.5"
    assert parse_rendering(f"{spec},gamma=1").spec == spec  # the default, left out
    assert parse_rendering(f"{spec},smooth=50:20").spec == f"{spec},smooth=50:20"
    assert parse_rendering(f"{spec},smooth=0:0").spec == spec  # the default, left out
    for bad in ("-1:20", "50:inf", "x"):
        with pytest.raises(ValueError, match="smoothing must be finite|cannot read"):
            parse_rendering(f"gated,smooth={bad}")
    for bad in ("0", "1.5", "nan"):
        with pytest.raises(ValueError, match="gamma must be in"):
            parse_rendering(f"gated,gamma={bad}")
    with pytest.raises(ValueError, match="hops must be one of"):
        parse_rendering("gated,hops=3")
    assert parse_rendering("gated").gate.far_floor_db == -math.inf  # far defaults to the floor
    with pytest.raises(ValueError, match="far floor must be at most the floor"):
        parse_rendering("gated,floor=-20,far=-10")
    with pytest.raises(ValueError, match="alpha must be positive"):
        parse_rendering("gated,alpha=0")
    with pytest.raises(ValueError, match="use signal_gains"):
        parse_rendering("gated").gains(np.zeros((1024, 4), np.float32), SR)


def test_a_box_prompt_lets_nothing_outside_the_box_through_the_gated_rendering():
    from utils.data.inputs import View
    from utils.inference.segmenter import BandPrompt, ModelSettings, Segmenter

    _, noisy, probability = _tone_in_noise()
    planes = stft_planes(noisy)
    band = BandPrompt((0.5, 2.5), (2000.0, 6000.0))
    view = View("v", bsd.planes_to_image(planes), audio=noisy, sr=SR, spectrum=planes)
    rendering = parse_rendering("gated,floor=-20,far=-30,margin=200:30")
    segmenter = Segmenter(None, ModelSettings("none"), prompt="box", band=band, rendering=rendering)
    _, audio, gains = segmenter.render(view, bsd.two_sided(probability))
    hertz = np.arange(gains.gains.shape[1]) * SR / 2048
    assert np.all(gains.gains[:, (hertz < 1900) | (hertz > 6100)] == 0)
    outside = bsd.band_region(band.seconds, band.hertz, SR, planes.shape[1])[511:] == 0
    after = np.hypot(*stft_planes(audio.astype(np.float32))).T
    before = np.hypot(*planes).T
    assert after[outside].mean() < 0.02 * before[outside].mean()


def test_recordings_default_to_gated_and_render_soft_gives_the_previous_default():
    from utils.inference.options import SegmentOptions

    default = "gated,floor=-20,margin=200:30,far=-50,alpha=2"
    recordings = f"{default},gamma=0.5,smooth=50:20,chorus=0.5"
    assert SegmentOptions().rendering(True).spec == recordings
    unsmoothed = SegmentOptions(gate_gamma=1.0, gate_smooth_hz=0.0, gate_smooth_ms=0.0)
    assert unsmoothed.rendering(True).spec == f"{default},chorus=0.5"
    assert SegmentOptions(gate_chorus_share=1.0).rendering(True).gate.chorus_share == 1.0
    assert SegmentOptions(render="soft").rendering(True).spec == "soft,floor=-20,margin=200:30"
    assert SegmentOptions().rendering(False).is_bsd  # BSD images keep the data set's mask
    with pytest.raises(ValueError, match="set --far_floor_db too"):
        SegmentOptions(floor_db=-60.0)


def test_the_energy_cue_reads_back_and_only_the_gated_rendering_uses_it():
    spec = "gated,floor=-20,margin=200:30,far=-50,alpha=2,energy=7.5"
    assert parse_rendering(spec).spec == spec
    assert parse_rendering(spec).energy_cue_db == 7.5
    assert parse_rendering("soft,energy=7.5").energy_cue_db is None  # ignored, as alpha is
    for bad in ("-1", "inf", "nan"):
        with pytest.raises(ValueError, match="energy margin"):
            parse_rendering(f"gated,energy={bad}")


def test_a_bin_is_loud_from_the_margin_above_its_rows_lower_median():
    image = np.array([[10, 20, 19, 0], [0, 0, 0, 5]], np.uint8)
    floors = level.lower_medians(image)
    np.testing.assert_array_equal(floors, [10, 0])  # the 2nd smallest of 4
    loud = level.loud_bins(image, floors, 6.0)  # x 1.995: 20 passes, 19 does not
    np.testing.assert_array_equal(loud, [[False, True, False, False], [False, False, False, True]])
    # An order statistic: the floors of an image are the pixels of the magnitudes' medians.
    magnitudes = np.random.default_rng(3).random((5, 101)).astype(np.float32) * 0.6
    pixels = bsd.magnitude_pixels(magnitudes.copy(), 1.7)
    medians = level.lower_medians(magnitudes)
    np.testing.assert_array_equal(level.lower_medians(pixels), bsd.magnitude_pixels(medians, 1.7))
    # Past MAX_FRAMES frames, every s-th frame is measured, as for the level gain.
    wide = np.tile(np.array([5, 0, 0], np.uint8), (1, level.MAX_FRAMES))  # s = 3: every 5
    assert level.lower_medians(wide)[0] == 0 and level.image_floors(wide)[0] == 5


def _chorus_and_whistle(seconds: float = 14.0):
    """Cricket-like 5 kHz chirps (0.6 s of every second) all through, a louder 5 kHz call
    and a 3 kHz whistle in 6 ... 7 s, under faint white noise; and a probability map that
    takes the pulses for a bird (0.9 where they sound), as a model fooled by them does."""
    rng = np.random.default_rng(4)
    t = np.arange(int(seconds * SR)) / SR
    pulsing = (t % 1.0) < 0.6
    calling = (t >= 6.0) & (t < 7.0)
    chorus = np.where(pulsing, 0.3 * np.sin(2 * np.pi * 5000 * t), 0.0)
    call = np.where(calling, 3.0 * np.sin(2 * np.pi * 5000 * t + 1.0), 0.0)
    whistle = np.where(calling, 0.5 * np.sin(2 * np.pi * 3000 * t), 0.0)
    noisy = (chorus + call + whistle + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    frames = stft_planes(noisy).shape[1]
    frame_samples = np.minimum(np.arange(frames) * 64 + 64, len(t) - 1)
    probability = np.zeros((513, frames), np.float32)
    for hertz, on in ((5000, pulsing | calling), (3000, calling)):
        row = round(hertz * 1024 / SR)
        probability[row - 2 : row + 3, on[frame_samples]] = 0.9
    return noisy, probability


def test_a_band_the_model_keeps_most_of_the_time_is_gated_as_a_chorus():
    """With ``chorus=0.5`` the pulses the model keeps in over half the frames are gated
    against their band's mean power and fall to the floor; the call standing out of them
    still passes, and the whistle the model keeps for 1 s of 10 is rendered as before."""
    noisy, probability = _chorus_and_whistle()
    two_sided = bsd.two_sided(probability)
    base = "gated,floor=-20,far=-50,alpha=2,margin=200:30"
    plain, off = (parse_rendering(f"{base}{extra}").signal_gains(noisy, two_sided, SR)
                  for extra in ("", ",chorus=1"))  # fmt: skip
    chorus = parse_rendering(f"{base},chorus=0.5")
    gains = chorus.signal_gains(noisy, two_sided, SR)
    np.testing.assert_array_equal(off.gains, plain.gains)  # a share of 1 is never exceeded
    seconds = (np.arange(len(gains.gains)) * gains_hop(SR) + gains_hop(SR) - 1024) / SR
    hertz = np.arange(gains.gains.shape[1]) * SR / 2048
    pulses = np.ix_((seconds > 1.0) & (seconds < 5.0), np.abs(hertz - 5000) < 12)
    call = np.ix_((seconds > 6.2) & (seconds < 6.8), np.abs(hertz - 5000) < 12)
    whistle = np.ix_((seconds > 6.2) & (seconds < 6.8), np.abs(hertz - 3000) < 5)
    assert np.median(plain.gains[pulses]) > 0.5  # the gaps' noise is all the plain gate sees
    assert np.median(gains.gains[pulses]) < 10 ** (-20 / 20) * 1.01
    assert np.median(gains.gains[call]) > 0.6
    np.testing.assert_array_equal(gains.gains[whistle], plain.gains[whistle])
    # Measured within the noise window, so a block at a time renders the same.
    _assert_a_block_renders_as_the_whole(chorus, noisy, probability, gains)


def test_the_chorus_share_reads_back_and_is_checked():
    spec = "gated,floor=-20,margin=200:30,far=-50,alpha=2,gamma=0.5,smooth=50:20,chorus=0.5"
    assert parse_rendering(spec).spec == spec
    assert parse_rendering(spec).gate.chorus_share == 0.5
    assert parse_rendering("gated").gate.chorus_share is None
    for bad in ("0", "1.5", "nan", "x"):
        with pytest.raises(ValueError, match="chorus share must be in|cannot read"):
            parse_rendering(f"gated,chorus={bad}")
