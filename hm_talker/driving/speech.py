"""Any sound -> the model's audio inputs on the identity's frame clock, and the speaker's statistics.

One frame per 1/fps s of sound, the last partial one included (3.3 s at 25 fps -> 83 frames). The
features are of the kind and shape the model was trained on (mel, or HuBERT / wav2vec2 from local
weights); the speaker-free speech window (energy, flux) CMMM's AU head reads comes with them. A
speech other than the training identity's is normalised by its own band statistics and its predicted
AUs are calibrated by its own prediction statistics (`speaker_stats`), as training did for the identity.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hm_talker.data.windows import Windows, band_stats, speech_features
from hm_talker.errors import InputError

CALIBRATION_BATCH = 256  # windows per forward pass of the calibration pass


def num_frames(num_samples: int, sample_rate: int, fps) -> int:
    """Frames of a sound: one per 1/fps s (frame i starts at sample round(i * sr / fps), any fps), a partial
    last one included, at least one."""
    from hm_talker.preprocess.audio_features import frame_start

    n = max(1, math.ceil(num_samples * fps / sample_rate) - 1)
    while frame_start(n, sample_rate, fps) < num_samples:
        n += 1
    return n


def driving_features(audio: np.ndarray, n: int, manifest: dict, audio_model: str | None,
                     expected: tuple[int, int], ckpt_path=None) -> np.ndarray:  # -> [n, k, D]
    """Features of the driving speech, of the kind and shape the checkpoint was trained on."""
    from hm_talker.preprocess.audio_features import log_mel, ssl_features

    pc = manifest["config"]
    kind = manifest["features"]["audio"]["kind"]
    if kind == "mel":
        feats = log_mel(audio, n, pc["sample_rate"], pc["fps"], pc["n_mels"], pc["mel_hop"],
                        pc["mel_win"], pc["mel_fmin"], pc["mel_fmax"])
    else:
        feats = ssl_features(audio, n, pc["sample_rate"], pc["fps"], audio_model or pc.get("audio_model", ""), kind)
    if tuple(feats.shape[1:]) != tuple(expected):
        raise InputError(ckpt_path, f"checkpoint was trained on audio features of shape {list(expected)}, "
                                    f"the driving audio gives {list(feats.shape[1:])} ({kind})")
    return feats


def speech_windows(audio: np.ndarray, manifest: dict, cfg, audio_model: str | None = None, ckpt_path=None) -> Windows:
    """The model's audio inputs for a sound (float32 mono at the identity's sample rate): its features
    and speaker-free speech features, windowed around each of its frames."""
    n = num_frames(len(audio), manifest["sample_rate"], manifest["fps"])
    expected = (cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim)
    feats = driving_features(audio, n, manifest, audio_model, expected, ckpt_path)
    from hm_talker.preprocess.audio_features import log_mel
    from hm_talker.preprocess.speech_features import speech_features_of

    pc = manifest["config"]  # CMMM's speaker-free input (energy, flux), from the sound itself, any feature kind
    mel = feats if manifest["features"]["audio"]["kind"] == "mel" else log_mel(
        audio, n, pc["sample_rate"], pc["fps"], pc["n_mels"], pc["mel_hop"], pc["mel_win"], pc["mel_fmin"],
        pc["mel_fmax"], pc.get("audio_rows_fps", 25))
    speech = speech_features_of(mel)
    return Windows(feats, np.zeros((n, 17), np.float32), np.zeros(n, np.int64), cfg.data.window,
                   speech, cfg.cmmm.net.speech_window)


def load_speech(path, manifest: dict) -> np.ndarray:
    """A sound file in any format librosa reads, any rate -> float32 mono at the identity's rate."""
    from hm_talker.preprocess.media import load_audio

    return load_audio(path, manifest["sample_rate"])


def identity_windows(root: Path, manifest: dict, cfg) -> Windows:
    """The identity's own audio inputs (its features.npz, speech features normalised per clip), as the
    training loader cuts them: what drives its held-out frames in the self-driven protocol."""
    from hm_talker.data.identity import load_features

    arrays = load_features(root)
    return Windows(arrays["audio"], arrays["aus"], arrays["clip_ids"], cfg.data.window,
                   *speech_features(manifest, arrays, cfg.cmmm.net.speech_window))


def speaker_stats(model, windows: Windows, normalise: bool = True):
    """The SpeakerStats of a driving speech: its band statistics (when the model normalises per speaker)
    and the statistics of CMMM's raw predictions over all its windows (a first pass, when the model
    calibrates), so the calibrated AUs of another speaker span the identity's measured range."""
    import torch

    from hm_talker.model.cmmm import SpeakerStats

    device = model.head.face.means.device
    stats = SpeakerStats()
    if normalise and model.cfg.cmmm.speaker_norm:
        mean, std = band_stats(windows.audio)
        stats.audio_mean = torch.as_tensor(mean, dtype=torch.float32, device=device)
        stats.audio_std = torch.as_tensor(std, dtype=torch.float32, device=device).clamp_min(1e-3)
    n = len(windows)
    if not model.cmmm.cfg.calibrate or n < 2:
        return stats
    pred = []
    with torch.no_grad():
        for k0 in range(0, n, CALIBRATION_BATCH):
            b = {k: v.to(device) for k, v in windows.speech_batch(range(k0, min(n, k0 + CALIBRATION_BATCH))).items()}
            pred.append(model.cmmm(b["audio_window"], b.get("speech_window"), stats)["raw_aus"])
    pred = torch.cat(pred)
    stats.pred_mean, stats.pred_std = pred.mean(0), pred.std(0)
    return stats
