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
    if cfg.cmmm.net.formant_share > 0:  # the formant head's rows, from the sound itself as preprocessing made them
        from hm_talker.preprocess.speech_features import formants_of

        speech = np.concatenate([speech, formants_of(audio, n, pc["sample_rate"], pc["fps"], pc["mel_hop"])], -1)
    return Windows(feats, np.zeros((n, 17), np.float32), np.zeros(n, np.int64), cfg.data.window,
                   speech, cfg.cmmm.net.speech_window)


def load_speech(path, manifest: dict) -> np.ndarray:
    """A sound file in any format librosa reads, any rate -> float32 mono at the identity's rate."""
    from hm_talker.preprocess.media import load_audio

    return load_audio(path, manifest["sample_rate"])


def sound_of_frames(root: Path, fps, first: int, last: int) -> np.ndarray | None:
    """The sound of frames first..last of a preprocessed identity (its audio.wav, float32 mono at the file's
    rate; frame i starts at sample round(i * sr / fps), so 30 fps does not drift), None where the identity
    has no audio.wav (preprocessed by an older version)."""
    import soundfile as sf

    from hm_talker.preprocess.audio_features import frame_start

    path = Path(root) / "audio.wav"
    if not path.is_file():
        return None
    wav, sr = sf.read(path, dtype="float32")
    return wav[frame_start(first, sr, fps):frame_start(last + 1, sr, fps)]


def held_out_speech(model, root: Path, manifest: dict):
    """What drives the self-driven protocol's held-out frames: their own sound taken as any driving speech
    is taken (`speech_windows` and `speaker_stats`: the road `infer` takes with that sound), so `evaluate
    --data` and `infer` of the same sound predict the same mouth. The identity's statistics would be the
    wrong ones for a stretch of it: a quieter tail is predicted below the identity's mean, and the
    calibration's clamp at 0 cuts off the lower half of its mouth motion.

    Returns (windows, speaker, offset): window j drives held-out frame offset + j. Without audio.wav
    (preprocessed by an older version): the identity's features.npz windows (offset 0), its statistics."""
    from hm_talker.data.identity import held_out_frames

    frames = held_out_frames(manifest)
    sound = sound_of_frames(root, manifest["fps"], frames[0], frames[-1]) if len(frames) else None
    if sound is None or not len(sound):
        return identity_windows(root, manifest, model.cfg), None, 0
    windows = speech_windows(sound, manifest, model.cfg)
    return windows, speaker_stats(model, windows), frames[0]


def identity_windows(root: Path, manifest: dict, cfg) -> Windows:
    """The identity's own audio inputs (its features.npz, speech features normalised per clip), as the
    training loader cuts them (calibration on the identity, and the self-driven protocol without audio.wav)."""
    from hm_talker.data.identity import load_features

    arrays = load_features(root)
    return Windows(arrays["audio"], arrays["aus"], arrays["clip_ids"], cfg.data.window,
                   *speech_features(manifest, arrays, cfg.cmmm.net.speech_window, cfg.cmmm.net.formant_share > 0))


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
