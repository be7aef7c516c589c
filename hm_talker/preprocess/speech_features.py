"""Speaker-normalised audio features for predicting the mouth from another person's speech.

Log-mel carries the speaker (voice pitch, vocal tract, microphone, loudness): a predictor of the
mouth opening trained on some speakers transfers poorly to others. These functions remove what is
constant over an utterance, so that what is left is how the sound changes, which is what the mouth
does. All are deterministic, need no weights and work on the project's own arrays:
at training time the identity's log-mel in features.npz ([T, k, D], `audio_features.log_mel`),
at inference the log-mel of the driving waveform computed the same way.

* `cmvn`: per-utterance cepstral-style mean and variance normalisation of each band over time.
  A gain (a constant added to every log band) and a spectral tilt or microphone colouring (a
  constant added per band) vanish exactly; only the spread of each band over time remains.
* `with_deltas`: appends the first time difference of each band (row-to-row, per 10 ms row).
* `frame_energy`: per-row log energy (log of the summed mel power) and spectral flux, normalised
  per utterance: a 2-dim loudness/onset description.
* `mouth_audio_features`: the predictor input by name; `mouth_window_features` the flat window.

Measured with benchmarks/bench_audio_mouth.py (leave-one-speaker-out on the real clips):
"energy" with a 16-frame window and a ridge predicts another speaker's mouth opening best;
log-mel, CMVN log-mel, deltas and pocketsphinx phones transfer worse (see the benchmark's table).
"""
from __future__ import annotations

import numpy as np

EPS = 1e-5
DYNAMIC_RANGE = 18.0  # natural-log units kept below the utterance peak (78 dB)


def relative_floor(feats: np.ndarray, dynamic_range: float = DYNAMIC_RANGE) -> np.ndarray:
    """Log features floored at (utterance maximum - `dynamic_range`) natural-log units.

    log_mel clamps the power at an absolute 1e-5, so a quieter recording loses more of its quiet
    bands to the clamp than a loud one; a floor relative to the utterance's loudest value treats
    every gain alike (18 log units = 78 dB below the peak).
    """
    return np.maximum(feats, feats.max() - dynamic_range)


def cmvn(feats: np.ndarray, std_floor: float = 1e-3, dynamic_range: float = DYNAMIC_RANGE) -> np.ndarray:
    """[T, k, D] log-mel -> same shape, each band at zero mean and unit std over the utterance.

    The log values are first floored relative to the utterance peak (`relative_floor`); statistics
    are taken over all T * k rows of the utterance (the identity's clip at training time, the
    driving speech at inference). `std_floor` (log units) keeps a constant band finite.
    """
    t, k, d = feats.shape
    rows = relative_floor(feats, dynamic_range).reshape(t * k, d).astype(np.float64)
    mean = rows.mean(0)
    std = np.maximum(rows.std(0), std_floor)
    return ((rows - mean) / std).reshape(t, k, d).astype(np.float32)


def with_deltas(feats: np.ndarray) -> np.ndarray:
    """[T, k, D] -> [T, k, 2D]: the features and their difference to the previous 10 ms row."""
    t, k, d = feats.shape
    rows = feats.reshape(t * k, d)
    delta = np.diff(rows, axis=0, prepend=rows[:1])
    return np.concatenate([rows, delta], 1).reshape(t, k, 2 * d).astype(np.float32)


def frame_energy(log_mel_feats: np.ndarray, dynamic_range: float = DYNAMIC_RANGE) -> np.ndarray:
    """[T, k, D] log-mel -> [T, k, 2]: log energy and positive spectral flux per row, z-scored.

    Log energy is log(sum over bands of the mel power); flux is the sum over bands of the
    positive part of the row-to-row log-mel increase (onsets). Both are normalised to zero mean
    and unit std over the utterance, after the relative floor of `relative_floor`, so the
    recording's gain does not matter.
    """
    t, k, d = log_mel_feats.shape
    rows = relative_floor(log_mel_feats, dynamic_range).reshape(t * k, d).astype(np.float64)
    energy = np.log(np.exp(rows).sum(1) + EPS)
    flux = np.maximum(np.diff(rows, axis=0, prepend=rows[:1]), 0).sum(1)
    out = np.stack([energy, flux], 1)
    out = (out - out.mean(0)) / np.maximum(out.std(0), 1e-6)
    return out.reshape(t, k, 2).astype(np.float32)


def mouth_window_features(feats: np.ndarray, window: int) -> np.ndarray:
    """[T, k, D] per-frame features -> [T, window*k*D]: frames [t - window//2, t + window - window//2)
    around each frame t, flattened in time order; frames past either end repeat the edge frame
    (the same window the training datamodule cuts)."""
    t = len(feats)
    idx = np.clip(np.arange(t)[:, None] + np.arange(window)[None] - window // 2, 0, t - 1)
    return feats[idx].reshape(t, -1)


MOUTH_FEATURE_KINDS = ("mel", "cmvn", "energy", "energy+cmvn")


def mouth_audio_features(log_mel_feats: np.ndarray, kind: str = "energy",
                         clip_ids: np.ndarray | None = None) -> np.ndarray:
    """[T, k, 80] log-mel of one utterance -> [T, k, D] the audio input of the AU/mouth predictor.

    `clip_ids` [T] (features.npz "clip_ids"): normalise each clip of an identity on its own, as
    every clip is a separate utterance (recording level, microphone); None: one utterance.
    kind "energy" (recommended, D = 2): `frame_energy`, the per-row log energy and spectral flux
    z-scored over the utterance; "cmvn" (D = 80): `cmvn` log-mel; "energy+cmvn" (D = 82) both;
    "mel" (D = 80): unchanged. Training: pass the identity's features.npz "audio" array (mel
    kind); inference: the `audio_features.log_mel` of the driving speech. Deterministic.
    """
    if clip_ids is not None:
        clip_ids = np.asarray(clip_ids)
        parts = [mouth_audio_features(log_mel_feats[clip_ids == c], kind) for c in np.unique(clip_ids)]
        out = np.empty((len(log_mel_feats), *parts[0].shape[1:]), np.float32)
        for c, part in zip(np.unique(clip_ids), parts):
            out[clip_ids == c] = part
        return out
    if kind == "mel":
        return log_mel_feats.astype(np.float32)
    if kind == "cmvn":
        return cmvn(log_mel_feats)
    if kind == "energy":
        return frame_energy(log_mel_feats)
    if kind == "energy+cmvn":
        return np.concatenate([frame_energy(log_mel_feats), cmvn(log_mel_feats)], -1)
    raise ValueError(f"unknown mouth feature kind {kind!r} ({', '.join(MOUTH_FEATURE_KINDS)})")


SPEECH_KIND = "energy"  # CMMM's speaker-free speech features: per-row log energy and spectral flux, z-scored


def speech_features_of(log_mel_feats: np.ndarray) -> np.ndarray:  # [T, k, n_mels] of one clip -> [T, k, 2]
    """CMMM's speaker-free input of one utterance, from its log-mel: computed from the sound itself for every
    audio-feature kind (mel, HuBERT, wav2vec2), the same way for the identity (preprocessing stores it in
    features.npz as "speech") and for any driving speech (hm_talker.driving.speech)."""
    return mouth_audio_features(log_mel_feats, SPEECH_KIND)


def formants_of(audio: np.ndarray, num_frames: int, sample_rate: int, fps, hop: int) -> np.ndarray:
    """[S] one utterance -> [T, k, 4]: its formant rows (hm_talker/preprocess/formants.py) on the log-mel's
    rows, computed the same way for the identity (preprocessing stores them in features.npz as "formants")
    and for any driving speech. A sound too short for Praat's analysis window has no formants (zeros)."""
    import parselmouth

    from hm_talker.preprocess.formants import formant_features

    try:
        return formant_features(audio, num_frames, sample_rate, fps, hop)
    except parselmouth.PraatError:  # shorter than one analysis window
        from hm_talker.constants import FORMANT_DIM
        from hm_talker.preprocess.audio_features import rows_per_frame

        return np.zeros((num_frames, rows_per_frame(sample_rate / hop), FORMANT_DIM), np.float32)
