"""Synthetic bird vocalisations and singers (signals only; no files).

A call is a 1-D float signal at a sample rate ``sr``, drawn from a numpy generator;
:func:`bird_song` arranges calls of one to three singers into a recording's bird track.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps
from scipy.interpolate import PchipInterpolator

BIRD_BAND_HZ = (1000.0, 10000.0)
FAINT_CALL_PROB = 0.2  # a call this often sings near the noise floor (-20 to -30 dB)
DISTANT_SINGER_PROB = 0.3  # a singer this often is distant: reverberant and dulled
MAX_SINGERS = 3


def envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth call envelope: quick attack, longer decay, zero at both ends."""
    attack = max(2, int(n * rng.uniform(0.05, 0.3)))
    decay = max(2, n - attack)
    return np.concatenate(
        [
            np.sin(np.linspace(0, np.pi / 2, attack)) ** 2,
            np.cos(np.linspace(0, np.pi / 2, decay)) ** 2,
        ]
    )


def tone(freq: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A sinusoid following the instantaneous frequency track ``freq`` (Hz per sample)."""
    return np.sin(2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi))


def top_hz(sr: int) -> float:
    """The highest frequency a call may reach at ``sr``."""
    return min(BIRD_BAND_HZ[1], 0.45 * sr)


def contour(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """A smooth random frequency track of ``n`` samples between ``low`` and ``high`` Hz:
    a monotone-piecewise curve through 2-6 random knots."""
    knots = rng.uniform(low, high, int(rng.integers(2, 7)))
    curve = PchipInterpolator(np.linspace(0, 1, len(knots)), knots)
    return curve(np.linspace(0, 1, n))


def sweep(rng: np.random.Generator, sr: int, upward: bool) -> np.ndarray:
    """A frequency-modulated sweep of 0.1-0.5 s, up or down, linear or curved."""
    n = int(sr * rng.uniform(0.1, 0.5))
    low = rng.uniform(BIRD_BAND_HZ[0] + 500, 5000)
    high = min(low + rng.uniform(1000, 4000), top_hz(sr))
    shape = np.linspace(0, 1, n) ** rng.uniform(0.5, 2.0)
    freq = low + (high - low) * (shape if upward else 1 - shape)
    return envelope(n, rng) * tone(freq, sr, rng)


def harmonic_stack(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A harmonic call of 0.2-1 s: a fundamental of 0.7-3 kHz on a smooth random contour
    with 2-6 harmonics of uneven energy (the fundamental may be the weakest), each
    swelling and fading on its own."""
    n = int(sr * rng.uniform(0.2, 1.0))
    f0 = contour(rng, n, 700, 3000)
    call = np.zeros(n)
    for harmonic in range(1, int(rng.integers(2, 7)) + 1):
        if f0.max() * harmonic < top_hz(sr):
            swell = 0.3 + contour(rng, n, 0, 1)
            call += rng.lognormal(0, 1) * swell * tone(f0 * harmonic, sr, rng)
    return envelope(n, rng) * call / np.max(np.abs(call))


def contour_whistle(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A pure whistle of 0.2-1.5 s on a smooth random contour of 1.5-8 kHz."""
    n = int(sr * rng.uniform(0.2, 1.5))
    low = rng.uniform(1500, 5000)
    freq = contour(rng, n, low, min(low + rng.uniform(500, 3000), top_hz(sr)))
    return envelope(n, rng) * tone(freq, sr, rng)


def trill(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A trill: 5-40 repeats of one short (10-50 ms) downward note at 10-40 notes a
    second, its pitch drifting over the trill."""
    rate = rng.uniform(10, 40)
    period_n = int(sr / rate)
    note_n = int(period_n * rng.uniform(0.4, 0.8))
    repeats = int(rng.integers(5, 41))
    start = contour(rng, repeats, 3000, top_hz(sr))
    drop = rng.uniform(500, 2000)
    train = np.zeros(period_n * repeats)
    for k in range(repeats):
        freq = np.linspace(start[k], start[k] - drop, note_n)
        train[k * period_n : k * period_n + note_n] = envelope(note_n, rng) * tone(freq, sr, rng)
    return train


def vibrato_whistle(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A whistle of 0.3-1.2 s at 2-7 kHz with 5-30 Hz vibrato of 100-600 Hz depth."""
    n = int(sr * rng.uniform(0.3, 1.2))
    t = np.arange(n) / sr
    centre = rng.uniform(2000, min(7000, top_hz(sr) - 700))
    freq = centre + rng.uniform(100, 600) * np.sin(2 * np.pi * rng.uniform(5, 30) * t)
    return envelope(n, rng) * tone(freq, sr, rng)


def chip(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A chip: a 10-30 ms steep downward sweep across several kHz."""
    n = int(sr * rng.uniform(0.01, 0.03))
    high = rng.uniform(5000, top_hz(sr))
    freq = np.linspace(high, high - rng.uniform(2000, 4000), n)
    decay = np.exp(-np.linspace(0, rng.uniform(3, 6), n))
    return envelope(n, rng) * decay * tone(freq, sr, rng)


def buzz(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A buzz of 0.15-0.8 s: a 2-7 kHz carrier pulsed 80-300 times a second, which
    spreads it into a dense comb of sidebands several kHz wide."""
    n = int(sr * rng.uniform(0.15, 0.8))
    t = np.arange(n) / sr
    carrier = contour(rng, n, 2000, min(7000, top_hz(sr) - 1000))
    pulses = (0.5 + 0.5 * np.cos(2 * np.pi * rng.uniform(80, 300) * t)) ** rng.uniform(2, 8)
    return envelope(n, rng) * pulses * tone(carrier, sr, rng)


def note_train(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A phrase: 3-10 repeats of one note type (sweep, whistle or harmonic note) 50-300 ms
    apart, each a little higher or lower than the last."""
    kind = rng.choice(["sweep_up", "sweep_down", "vibrato_whistle", "harmonic_stack"])
    note = VOCALISATIONS[str(kind)](rng, sr)[: int(0.25 * sr)]
    gap_n = int(sr * rng.uniform(0.05, 0.3))
    step = rng.uniform(-0.05, 0.02)  # relative pitch change per note
    notes = []
    for k in range(int(rng.integers(3, 11))):
        factor = min((1 + step) ** k, 1.1)  # at most 10 % up: stays below Nyquist
        shifted = sps.resample(note, max(8, int(len(note) / factor)))
        notes += [shifted * rng.uniform(0.6, 1.0), np.zeros(gap_n)]
    return np.concatenate(notes)


VOCALISATIONS = {
    "sweep_up": lambda rng, sr: sweep(rng, sr, upward=True),
    "sweep_down": lambda rng, sr: sweep(rng, sr, upward=False),
    "harmonic_stack": harmonic_stack,
    "contour_whistle": contour_whistle,
    "trill": trill,
    "vibrato_whistle": vibrato_whistle,
    "chip": chip,
    "buzz": buzz,
    "note_train": note_train,
}


def distant(rng: np.random.Generator, sr: int, sound: np.ndarray) -> np.ndarray:
    """``sound`` heard from afar: reverberant (a decaying noise tail, RT60 0.2-1.2 s, below
    a weakened direct sound) and dulled above 3-9 kHz, as long as the input."""
    rt60 = rng.uniform(0.2, 1.2)
    tail_n = int(sr * rt60)
    response = rng.standard_normal(tail_n) * np.exp(-6.9 * np.arange(tail_n) / tail_n)
    response *= rng.uniform(1.0, 3.0) / np.sqrt(np.sum(response**2))
    response[0] += rng.uniform(0.3, 1.0)  # the direct sound
    wet = sps.fftconvolve(sound, response)[: len(sound)]
    cutoff = min(rng.uniform(3000, 9000), 0.45 * sr)
    return sps.sosfilt(sps.butter(2, cutoff, btype="lowpass", fs=sr, output="sos"), wet)


def singer(rng: np.random.Generator, sr: int, n: int) -> tuple[np.ndarray, list[str]]:
    """One bird: 1-6 calls of random types at random times (overlaps allowed), some of
    them faint; distant (reverberant) now and then. Returns its track and call kinds."""
    track = np.zeros(n)
    kinds = [str(k) for k in rng.choice(list(VOCALISATIONS), size=int(rng.integers(1, 7)))]
    for kind in kinds:
        call = VOCALISATIONS[kind](rng, sr)[: n // 2]
        level = rng.uniform(0.03, 0.1) if rng.random() < FAINT_CALL_PROB else rng.uniform(0.3, 1.0)
        start = int(rng.integers(0, n - len(call)))
        track[start : start + len(call)] += level * call / (np.max(np.abs(call)) + 1e-12)
    if rng.random() < DISTANT_SINGER_PROB:
        track = distant(rng, sr, track)
    return track, kinds


def bird_song(rng: np.random.Generator, sr: int, n: int) -> tuple[np.ndarray, list[str]]:
    """The birds of a recording, peak 1: a main singer and now and then one or two other
    species 4-16 dB weaker, overlapping it. Returns the track and all call kinds."""
    song, kinds = singer(rng, sr, n)
    song /= np.max(np.abs(song)) + 1e-12
    for _ in range(int(rng.choice(MAX_SINGERS, p=(0.6, 0.3, 0.1)))):
        other, other_kinds = singer(rng, sr, n)
        song += rng.uniform(0.16, 0.6) * other / (np.max(np.abs(other)) + 1e-12)
        kinds += other_kinds
    return song / np.max(np.abs(song)), kinds
