"""Speech-like sound and its mouth-opening envelope.

Why synthetic speech: the demo and the tests must run without any recording
outside the repository, yet they need sound whose loudness carries the same
structure as talking (syllables, pauses, a voiced source with pitch and
vowel formants) so audio features, lip-sync metrics and the audio->motion path
see something realistic. Everything here is deterministic for a given seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import lfilter

# Rough (F1, F2, F3) in Hz of five cardinal vowels; each syllable jitters one.
_VOWELS = np.array(
    [
        [730.0, 1090.0, 2440.0],  # a
        [530.0, 1840.0, 2480.0],  # e
        [300.0, 2200.0, 2950.0],  # i
        [570.0, 840.0, 2410.0],  # o
        [320.0, 900.0, 2250.0],  # u
    ]
)
_BANDWIDTHS = np.array([80.0, 110.0, 160.0])


def _syllable_plan(seconds: float, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Return (start_s, duration_s, peak_amplitude) for each syllable.

    Phrases of 3-9 syllables at ~4-6 syllables/s are separated by 0.25-0.7 s
    pauses, the rhythm of conversational speech; a short lead-in silence
    keeps the first frames closed-mouth like a real clip.
    """
    plan = []
    t = float(rng.uniform(0.15, 0.35))
    while t < seconds:
        for _ in range(int(rng.integers(3, 10))):
            dur = float(rng.uniform(0.11, 0.20))
            if t + dur > seconds - 0.05:
                return plan
            plan.append((t, dur, float(rng.uniform(0.45, 1.0))))
            t += dur + float(rng.uniform(0.015, 0.06))
        t += float(rng.uniform(0.25, 0.7))
    return plan


def _glottal_source(f0: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Glottal-flow-derivative-like pulse train following the pitch track f0.

    A Rosenberg-style pulse shape (slow opening, faster closing, closed phase)
    is evaluated on the accumulated phase, then differentiated (lip radiation),
    which gives the falling harmonic spectrum of a voice rather than a pure
    buzz. A little breath noise avoids a perfectly periodic signal.
    """
    phase = np.cumsum(f0 / sample_rate) % 1.0
    open_q, close_q = 0.45, 0.18
    flow = np.zeros_like(phase)
    rising = phase < open_q
    flow[rising] = 0.5 * (1.0 - np.cos(np.pi * phase[rising] / open_q))
    closing = (~rising) & (phase < open_q + close_q)
    flow[closing] = np.cos(0.5 * np.pi * (phase[closing] - open_q) / close_q)
    src = np.diff(flow, prepend=0.0)
    src /= np.abs(src).max() + 1e-9
    return src + 0.03 * rng.standard_normal(src.shape)


def _formant_filter(x: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cascade of two-pole resonators: the vocal tract shaping a vowel."""
    for f, bw in zip(formants, _BANDWIDTHS):
        r = np.exp(-np.pi * bw / sample_rate)
        theta = 2.0 * np.pi * f / sample_rate
        a = [1.0, -2.0 * r * np.cos(theta), r * r]
        x = lfilter([1.0 - r], a, x)
    return x


def synthesize_speech(seconds: float = 6.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Return a float32 mono speech-like signal of round(seconds*sample_rate) samples.

    Syllables are voiced vowels with their own formants, an attack/decay
    loudness contour and a pitch that drifts per phrase (~100-200 Hz with
    declination and per-syllable accents); pauses are near-silent.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EEC4]))
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    base = float(rng.uniform(105.0, 170.0))
    # Smooth pitch: base * slow wobble * gentle declination, kept in ~100-200 Hz.
    wobble = 1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6.3))
    wobble += 0.05 * np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t + rng.uniform(0, 6.3))
    f0 = np.clip(base * wobble * (1.0 - 0.05 * ((t % 3.0) / 3.0)), 95.0, 210.0)
    source = _glottal_source(f0, sample_rate, rng)

    out = np.zeros(n)
    for start, dur, amp in _syllable_plan(seconds, rng):
        i0, i1 = int(start * sample_rate), min(n, int((start + dur) * sample_rate))
        m = i1 - i0
        if m < 16:
            continue
        # Onset ~25% of the syllable then a decay: a consonant-vowel shape.
        u = np.linspace(0.0, 1.0, m)
        attack = np.clip(u / 0.25, 0.0, 1.0)
        env = np.sin(0.5 * np.pi * attack) ** 2 * np.cos(0.5 * np.pi * np.clip((u - 0.25) / 0.75, 0, 1)) ** 1.2
        formants = _VOWELS[int(rng.integers(len(_VOWELS)))] * rng.uniform(0.92, 1.08, 3)
        seg = _formant_filter(source[i0:i1] * env, formants, sample_rate)
        # Equalise loudness across vowels (formant gains differ a lot) so the
        # envelope follows the planned amplitude, not the vowel identity.
        seg *= amp / (np.sqrt(np.mean(seg[env > 0.5] ** 2)) + 1e-9)
        out[i0:i1] += seg
    out += 1e-3 * rng.standard_normal(n)  # room noise floor
    # Peak-normalise to 0.5; the floor of 1.0 (syllable peaks are ~2-5) keeps a
    # clip too short to hold a syllable quiet instead of amplifying its noise.
    out *= 0.5 / max(float(np.abs(out).max()), 1.0)
    return out.astype(np.float32)


def frame_rms(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS of the samples that fall in each video frame's time span."""
    bounds = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(int)
    bounds = np.clip(bounds, 0, len(audio))
    sq = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    counts = np.maximum(bounds[1:] - bounds[:-1], 1)
    return np.sqrt((sq[bounds[1:]] - sq[bounds[:-1]]) / counts)


def mouth_envelope(
    audio: np.ndarray, sample_rate: int, fps: float, num_frames: int, lead_frames: int = 0
) -> np.ndarray:
    """Per-frame mouth opening in [0, 1] from the sound's loudness.

    Per-frame RMS is smoothed with a short [1, 2, 1] kernel (lips cannot
    jump between frames), the room-noise floor is removed and the result is
    scaled by its 98th percentile (at least -60 dBFS RMS), then clipped. ``lead_frames`` > 0 shifts
    the mouth earlier than the sound, as real articulators lead acoustics by
    roughly 0-100 ms; the default 0 keeps mouth and sound exactly aligned.
    """
    rms = frame_rms(audio, sample_rate, fps, num_frames)
    smooth = np.convolve(np.pad(rms, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    floor = np.percentile(smooth, 5)
    smooth = np.maximum(smooth - floor, 0.0)
    peak = max(float(np.percentile(smooth, 98)), 1e-3)  # -60 dBFS: silence stays closed
    mouth = np.clip(smooth / peak, 0.0, 1.0)
    if lead_frames > 0:
        mouth = np.concatenate([mouth[lead_frames:], np.zeros(lead_frames)])
    return mouth.astype(np.float32)


def make_synthetic_speech(
    out_path: str | Path | None = None, seconds: float = 6.0, sample_rate: int = 16000, seed: int = 0
) -> np.ndarray:
    """Synthesize speech-like audio and, if ``out_path`` is given, write it as a 16-bit wav.

    Used to drive inference in the demo without any external recording.
    """
    audio = synthesize_speech(seconds, sample_rate, seed)
    if out_path is not None:
        import soundfile as sf

        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out_path), audio, sample_rate, subtype="PCM_16")
    return audio
