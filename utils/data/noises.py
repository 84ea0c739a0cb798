"""Synthetic field noises (signals only; no files): weather, water, insects, machines,
and the birds in the background, over the broadband floor of every field recording."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from utils.data.sounds import bird_song, distant, tone

BACKGROUND_BIRD_LEVEL = (0.1, 0.4)  # RMS relative to the rest of the noise


def filtered_noise(
    rng: np.random.Generator, n: int, sr: int, band: tuple[float, float]
) -> np.ndarray:
    """White noise band-passed to ``band`` Hz (a 0 lower edge means low-pass)."""
    low, high = band
    high = min(high, 0.45 * sr)
    if low <= 0:
        sos = sps.butter(4, high, btype="lowpass", fs=sr, output="sos")
    else:
        sos = sps.butter(4, (low, high), btype="bandpass", fs=sr, output="sos")
    return sps.sosfilt(sos, rng.standard_normal(n))


def slow_modulation(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """A positive random envelope that changes about ``rate_hz`` times a second."""
    knots = rng.standard_normal(max(4, int(n / sr * rate_hz) + 2))
    curve = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    return np.exp(0.8 * curve)


def wind(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Gusty wind: low-passed rumble (100-500 Hz) under slow swells, and gusts of 0.3-2 s
    that roar louder and reach up to 1-3 kHz."""
    rumble = filtered_noise(rng, n, sr, (0.0, rng.uniform(100, 500)))
    mix = rumble * slow_modulation(rng, n, sr, rng.uniform(0.5, 2.0))
    roar = filtered_noise(rng, n, sr, (0.0, rng.uniform(1000, 3000)))
    level = np.sqrt(np.mean(mix**2)) / (np.sqrt(np.mean(roar**2)) + 1e-12)
    for _ in range(int(rng.integers(0, 4))):
        length = int(sr * rng.uniform(0.3, 2.0))
        start = int(rng.integers(0, max(1, n - length)))
        gust = np.hanning(length)[: n - start] * rng.uniform(1.0, 4.0) * level
        mix[start : start + len(gust)] += gust * roar[start : start + len(gust)]
    return mix


def rain(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Broadband impulsive rain: drops of many sizes (short decaying bursts, the larger
    ones longer and duller) over a soft hiss."""
    out = 0.05 * filtered_noise(rng, n, sr, (500.0, 20000.0))
    for decay_ms in (2.0, 6.0):  # small sharp drops, large dull ones
        n_drops = int(n / sr * rng.uniform(10, 150))
        drops = np.zeros(n)
        drops[rng.integers(0, n, n_drops)] = rng.lognormal(0, 0.7, n_drops) * rng.choice(
            [-1, 1], n_drops
        )
        burst_n = int(sr * decay_ms / 1000)
        burst = rng.standard_normal(burst_n) * np.exp(-np.linspace(0, 5, burst_n))
        out += sps.fftconvolve(drops, burst)[:n]
    return out


def stream(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Stream or water noise: 200-4000 Hz noise with a bubbling 2-8 Hz modulation."""
    low = rng.uniform(150, 400)
    water = filtered_noise(rng, n, sr, (low, rng.uniform(2500, 5000)))
    return water * slow_modulation(rng, n, sr, rng.uniform(2, 8)) ** 0.5


def crickets(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """A chorus of 1-6 crickets: each a narrow-band carrier at 3-9 kHz, pulsed 10-60 times
    a second in chirps."""
    t = np.arange(n) / sr
    chorus = np.zeros(n)
    smooth = np.hanning(int(sr * 0.003)) / (sr * 0.0015)
    for _ in range(int(rng.integers(1, 7))):
        carrier_hz = rng.uniform(3000, min(9000, 0.42 * sr))
        wobble = 40 * filtered_noise(rng, n, sr, (0.0, 30.0))
        pulse = np.sin(2 * np.pi * rng.uniform(10, 60) * t) > rng.uniform(-0.3, 0.3)
        chirp = np.sin(2 * np.pi * rng.uniform(0.5, 3) * t) > rng.uniform(-0.8, 0.2)
        gate = np.convolve((pulse & chirp).astype(float), smooth, mode="same")
        chorus += rng.uniform(0.3, 1.0) * tone(carrier_hz + wobble, sr, rng) * gate
    return chorus


def cicadas(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Cicadas: a loud broadband buzz of 3-10 kHz, amplitude-modulated 100-500 times a
    second, swelling slowly."""
    band = filtered_noise(rng, n, sr, (rng.uniform(3000, 5000), rng.uniform(7000, 10000)))
    t = np.arange(n) / sr
    buzzing = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(100, 500) * t)
    return band * buzzing * slow_modulation(rng, n, sr, rng.uniform(0.2, 1.0)) ** 0.5


def hum(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Distant electrical or engine hum: 50/60 Hz and a few harmonics."""
    base = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
    freq = np.full(n, base)
    return sum(tone(freq * k, sr, rng) / k for k in range(1, int(rng.integers(2, 6)) + 1))


def traffic(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Road traffic: a low rumble below 0.5-2 kHz, and 1-4 vehicles passing (each a
    swell of a few seconds)."""
    rumble = filtered_noise(rng, n, sr, (0.0, rng.uniform(500, 2000)))
    t = np.arange(n) / sr
    level = np.full(n, rng.uniform(0.2, 0.6))
    for _ in range(int(rng.integers(1, 5))):
        centre, width = rng.uniform(0, n / sr), rng.uniform(0.5, 3.0)
        level += np.exp(-0.5 * ((t - centre) / width) ** 2)
    return rumble * level


def aircraft(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """An aircraft: broadband roar below 1-4 kHz with engine tones (80-400 Hz and their
    harmonics) sliding slowly (Doppler), its level rising and falling over the clip."""
    roar = filtered_noise(rng, n, sr, (0.0, rng.uniform(1000, 4000)))
    roar /= np.sqrt(np.mean(roar**2)) + 1e-12
    fundamental = rng.uniform(80, 400) * np.linspace(1.05, 0.95, n)
    engine = sum(tone(fundamental * k, sr, rng) / k for k in range(1, 6))
    t = np.linspace(-1, 1, n)
    return (roar + rng.uniform(0.2, 1.0) * engine) * np.exp(-((t - rng.uniform(-1, 1)) ** 2))


def background_birds(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Other birds far away: a distant, reverberant bird track (noise, never labelled)."""
    return distant(rng, sr, bird_song(rng, sr, n)[0])


NOISES = {
    "wind": wind,
    "rain": rain,
    "stream": stream,
    "crickets": crickets,
    "cicadas": cicadas,
    "hum": hum,
    "traffic": traffic,
    "aircraft": aircraft,
    "background_birds": background_birds,
}


def ambient(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """The broadband floor of any field recording: noise tilted down above 2-6 kHz."""
    sos = sps.butter(1, rng.uniform(2000, 6000), btype="lowpass", fs=sr, output="sos")
    return sps.sosfilt(sos, rng.standard_normal(n)) + 0.1 * rng.standard_normal(n)


def unit_rms(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to a root-mean-square of 1 (silence stays silence)."""
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def field_noise(rng: np.random.Generator, sr: int, n: int, kinds: list[str]) -> np.ndarray:
    """A mix of the given noise kinds (random weights) over a weaker ambient floor; the
    background birds, if any, are weaker than the rest."""
    mix = np.zeros(n)
    for kind in kinds:
        if kind != "background_birds":
            mix += rng.uniform(0.3, 1.0) * unit_rms(NOISES[kind](rng, sr, n))
    floor = rng.uniform(0.15, 0.5) * np.sqrt(np.mean(mix**2)) if mix.any() else 1.0
    mix += floor * unit_rms(ambient(rng, sr, n))
    if "background_birds" in kinds:
        level = rng.uniform(*BACKGROUND_BIRD_LEVEL) * np.sqrt(np.mean(mix**2))
        mix += level * unit_rms(background_birds(rng, sr, n))
    return mix
