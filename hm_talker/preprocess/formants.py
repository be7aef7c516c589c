"""Formant features from speech with Praat's Burg formant tracker (praat-parselmouth, a wheel; offline).

The first formant rises as the jaw opens and the second follows the tongue and lips, so formants are
the articulatory reading of a vowel that a loudness envelope lacks. `formant_features` returns, per
10 ms feature row, log F1, F2, F3 z-scored over the utterance's voiced rows (a speaker's own formant
range removed: Lobanov's vowel normalisation), 0 where unvoiced, plus a voicing flag. Measured as a
predictor of an unheard speaker's mouth opening in `benchmarks/bench_audio_mouth.py`.
"""
from __future__ import annotations

import numpy as np

MAX_FORMANT_HZ = 5500.0  # Praat's ceiling for five formants of an adult voice (5000 is its male setting)
WINDOW_S = 0.025  # Praat's effective analysis window (seconds)


def _sound(audio: np.ndarray, sr: int):
    import parselmouth

    return parselmouth.Sound(np.asarray(audio, dtype=np.float64), sampling_frequency=sr)


def formant_tracks(audio: np.ndarray, sr: int, times: np.ndarray, step: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """[S] audio, [R] times (s) -> ([R, 3] F1..F3 in Hz, nan where none, [R] voiced: a pitch was found),
    analysed every `step` seconds and read at `times`."""
    snd = _sound(audio, sr)
    fm = snd.to_formant_burg(time_step=step, max_number_of_formants=5, maximum_formant=MAX_FORMANT_HZ,
                             window_length=WINDOW_S)
    pitch = snd.to_pitch(time_step=step)
    f = np.array([[fm.get_value_at_time(i, t) for i in (1, 2, 3)] for t in times], dtype=np.float64)
    voiced = np.array([np.isfinite(pitch.get_value_at_time(t)) for t in times])
    return f, voiced


def formant_features(audio: np.ndarray, num_frames: int, sr: int, fps: int, hop: int) -> np.ndarray:
    """[S] audio -> [num_frames, k, 4]: z-scored log F1, F2, F3 (0 where unvoiced or untracked) and the
    voicing flag, row j of frame t at time (t + j / k) / fps as in `audio_features.log_mel`."""
    from hm_talker.preprocess.audio_features import row_positions, rows_per_frame

    k = rows_per_frame(sr / hop)
    base, frac = row_positions(num_frames, k, sr, fps, hop)
    times = (base + frac) * hop / sr  # log_mel's row r is the STFT frame centred at sample r * hop
    f, voiced = formant_tracks(audio, sr, times, hop / sr)
    with np.errstate(invalid="ignore", divide="ignore"):
        logf = np.log(f)
    out = np.zeros((len(times), 4), np.float32)
    for i in range(3):
        ok = voiced & np.isfinite(logf[:, i])
        if ok.sum() > 1:
            mu, sd = logf[ok, i].mean(), logf[ok, i].std() + 1e-6
            out[ok, i] = (logf[ok, i] - mu) / sd
    out[:, 3] = voiced
    return out.reshape(num_frames, k, 4)
