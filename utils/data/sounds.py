"""Synthetic bird vocalisations and field noises (signals only; no files)."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

BIRD_BAND_HZ = (1000.0, 10000.0)


def _envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth call envelope: quick attack, longer decay, zero at both ends."""
    attack = max(2, int(n * rng.uniform(0.05, 0.3)))
    decay = max(2, n - attack)
    return np.concatenate(
        [
            np.sin(np.linspace(0, np.pi / 2, attack)) ** 2,
            np.cos(np.linspace(0, np.pi / 2, decay)) ** 2,
        ]
    )


def _tone(freq: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A sinusoid following the instantaneous frequency track ``freq`` (Hz per sample)."""
    return np.sin(2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi))


def _top_hz(sr: int) -> float:
    return min(BIRD_BAND_HZ[1], 0.45 * sr)


def sweep(rng: np.random.Generator, sr: int, upward: bool) -> np.ndarray:
    """A frequency-modulated sweep of 0.1-0.5 s, up or down, linear or curved."""
    n = int(sr * rng.uniform(0.1, 0.5))
    low = rng.uniform(BIRD_BAND_HZ[0] + 500, 5000)
    high = min(low + rng.uniform(1000, 4000), _top_hz(sr))
    shape = np.linspace(0, 1, n) ** rng.uniform(0.5, 2.0)
    freq = low + (high - low) * (shape if upward else 1 - shape)
    return _envelope(n, rng) * _tone(freq, sr, rng)


def harmonic_stack(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A harmonic call: a slowly bending fundamental of 1-2.5 kHz with 2-4 harmonics."""
    n = int(sr * rng.uniform(0.2, 0.6))
    t = np.arange(n) / sr
    f0 = rng.uniform(BIRD_BAND_HZ[0], 2500) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    call = np.zeros(n)
    for harmonic in range(1, int(rng.integers(2, 5)) + 1):
        if f0.max() * harmonic < _top_hz(sr):
            call += _tone(f0 * harmonic, sr, rng) / harmonic
    return _envelope(n, rng) * call / np.max(np.abs(call))


def trill(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A trill: 5-15 repeats of one short (20-50 ms) downward note with short gaps."""
    note_n = int(sr * rng.uniform(0.02, 0.05))
    gap_n = int(sr * rng.uniform(0.01, 0.04))
    start = rng.uniform(3000, _top_hz(sr))
    freq = np.linspace(start, start - rng.uniform(500, 2000), note_n)
    note = _envelope(note_n, rng) * _tone(freq, sr, rng)
    period = np.concatenate([note, np.zeros(gap_n)])
    return np.tile(period, int(rng.integers(5, 16)))


def vibrato_whistle(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A whistle of 0.3-1.2 s at 2-7 kHz with 5-30 Hz vibrato of 100-600 Hz depth."""
    n = int(sr * rng.uniform(0.3, 1.2))
    t = np.arange(n) / sr
    centre = rng.uniform(2000, min(7000, _top_hz(sr) - 700))
    freq = centre + rng.uniform(100, 600) * np.sin(2 * np.pi * rng.uniform(5, 30) * t)
    return _envelope(n, rng) * _tone(freq, sr, rng)


def chip(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A chip: a 10-30 ms steep downward sweep across several kHz."""
    n = int(sr * rng.uniform(0.01, 0.03))
    high = rng.uniform(5000, _top_hz(sr))
    freq = np.linspace(high, high - rng.uniform(2000, 4000), n)
    decay = np.exp(-np.linspace(0, rng.uniform(3, 6), n))
    return _envelope(n, rng) * decay * _tone(freq, sr, rng)


VOCALISATIONS = {
    "sweep_up": lambda rng, sr: sweep(rng, sr, upward=True),
    "sweep_down": lambda rng, sr: sweep(rng, sr, upward=False),
    "harmonic_stack": harmonic_stack,
    "trill": trill,
    "vibrato_whistle": vibrato_whistle,
    "chip": chip,
}


def bird_song(rng: np.random.Generator, sr: int, n: int) -> tuple[np.ndarray, list[str]]:
    """1-6 calls of random types at random times (overlaps allowed), peak 1."""
    song = np.zeros(n)
    kinds = list(rng.choice(list(VOCALISATIONS), size=int(rng.integers(1, 7))))
    for kind in kinds:
        call = VOCALISATIONS[kind](rng, sr)[: n // 2] * rng.uniform(0.3, 1.0)
        start = int(rng.integers(0, n - len(call)))
        song[start : start + len(call)] += call
    return song / np.max(np.abs(song)), kinds


def _filtered_noise(
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


def _slow_modulation(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """A positive random envelope that changes about ``rate_hz`` times a second."""
    knots = rng.standard_normal(max(4, int(n / sr * rate_hz) + 2))
    curve = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    return np.exp(0.8 * curve)


def wind(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Gusty low-frequency wind: low-passed noise (100-500 Hz) under slow gusts."""
    rumble = _filtered_noise(rng, n, sr, (0.0, rng.uniform(100, 500)))
    return rumble * _slow_modulation(rng, n, sr, rng.uniform(0.5, 2.0))


def rain(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Broadband impulsive rain: random drops (short decaying bursts) over a soft hiss."""
    drops = np.zeros(n)
    n_drops = int(n / sr * rng.uniform(20, 200))
    drops[rng.integers(0, n, n_drops)] = rng.lognormal(0, 0.7, n_drops) * rng.choice(
        [-1, 1], n_drops
    )
    burst_n = int(sr * 0.004)
    burst = rng.standard_normal(burst_n) * np.exp(-np.linspace(0, 5, burst_n))
    hiss = 0.05 * _filtered_noise(rng, n, sr, (500.0, 20000.0))
    return sps.fftconvolve(drops, burst)[:n] + hiss


def stream(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Stream or water noise: 200-4000 Hz noise with a bubbling 2-8 Hz modulation."""
    low = rng.uniform(150, 400)
    water = _filtered_noise(rng, n, sr, (low, rng.uniform(2500, 5000)))
    return water * _slow_modulation(rng, n, sr, rng.uniform(2, 8)) ** 0.5


def insect(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Narrow-band pulsed insect song at 3-9 kHz, overlapping the bird band."""
    t = np.arange(n) / sr
    carrier_hz = rng.uniform(3000, min(9000, 0.42 * sr))
    jitter = 40 * _filtered_noise(rng, n, sr, (0.0, 30.0))  # slight frequency wobble
    carrier = _tone(carrier_hz + jitter, sr, rng)
    pulse = (np.sin(2 * np.pi * rng.uniform(10, 60) * t) > rng.uniform(-0.3, 0.3)).astype(float)
    pulse = np.convolve(pulse, np.hanning(int(sr * 0.003)) / (sr * 0.0015), mode="same")
    return carrier * pulse


def hum(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Distant electrical or engine hum: 50/60 Hz and a few harmonics."""
    base = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
    freq = np.full(n, base)
    return sum(_tone(freq * k, sr, rng) / k for k in range(1, int(rng.integers(2, 6)) + 1))


NOISES = {"wind": wind, "rain": rain, "stream": stream, "insect": insect, "hum": hum}


def ambient(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """The broadband floor of any field recording: noise tilted down above 2-6 kHz."""
    sos = sps.butter(1, rng.uniform(2000, 6000), btype="lowpass", fs=sr, output="sos")
    return sps.sosfilt(sos, rng.standard_normal(n)) + 0.1 * rng.standard_normal(n)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def field_noise(rng: np.random.Generator, sr: int, n: int, kinds: list[str]) -> np.ndarray:
    """A mix of the given noise kinds (random weights) over a weaker ambient floor."""
    mix = np.zeros(n)
    for kind in kinds:
        mix += rng.uniform(0.3, 1.0) * _unit_rms(NOISES[kind](rng, sr, n))
    return mix + rng.uniform(0.15, 0.5) * np.sqrt(np.mean(mix**2)) * _unit_rms(ambient(rng, sr, n))
