"""Audio features aligned to video frames: [T, k, D] with k feature rows per 40 ms frame.

log-mel (default, no weights needed): 10 ms hop, so k = 4 rows per frame at 25 fps.
HuBERT / wav2vec2 (transformers, from a local folder the user points to): 50 Hz, so k = 2.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from hm_talker.errors import InputError


@lru_cache(maxsize=4)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
    import librosa
    import torch

    return torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax))


def log_mel(audio: np.ndarray, num_frames: int, sr: int, fps: int, n_mels: int, hop: int, win: int,
            fmin: float, fmax: float) -> np.ndarray:
    """[S] audio -> [num_frames, k, n_mels] log-mel, row j of frame t centred at (t*k + j) * hop."""
    import torch

    per_frame = sr // fps
    if per_frame % hop:
        raise ValueError(f"mel hop {hop} must divide the samples per frame {per_frame}")
    k = per_frame // hop
    n_fft = 1 << (win - 1).bit_length()
    y = np.zeros(num_frames * per_frame, dtype=np.float32)
    y[: min(len(audio), len(y))] = audio[: len(y)]
    spec = torch.stft(torch.from_numpy(y), n_fft=n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win), center=True, pad_mode="reflect",
                      return_complex=True).abs().pow(2)  # [F, 1 + S/hop]
    mel = _mel_basis(sr, n_fft, n_mels, fmin, fmax) @ spec
    mel = torch.log(mel.clamp_min(1e-5))[:, : num_frames * k]
    return mel.T.reshape(num_frames, k, n_mels).numpy().astype(np.float32)


def ssl_features(audio: np.ndarray, num_frames: int, sr: int, fps: int, model_dir: str,
                 kind: str) -> np.ndarray:
    """HuBERT / wav2vec2 last hidden states, 50 Hz, from local weights -> [num_frames, 2, D].

    Never downloads: a missing folder or missing weights is an error naming the folder.
    """
    if not model_dir:
        raise InputError(None, f"--audio-features {kind} needs --audio-model pointing at local "
                               f"{kind} weights (a transformers folder); none given")
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise InputError(path, f"not a {kind} weights folder (no config.json)")
    try:
        import torch
        from transformers import AutoFeatureExtractor, AutoModel
    except ImportError:
        raise InputError(None, f"{kind} features need transformers: pip install 'hm-talker[ssl]'") from None
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot load {kind} weights ({str(exc).splitlines()[0][:120]})") from None
    try:
        fe = AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        x = fe(audio, sampling_rate=sr, return_tensors="pt").input_values
    except (OSError, ValueError):  # no preprocessor_config.json: the usual zero-mean unit-var input
        a = torch.from_numpy(audio)
        x = ((a - a.mean()) / (a.std() + 1e-7))[None]
    with torch.no_grad():
        h = model(x).last_hidden_state[0].numpy()  # [~50 * seconds, D]
    per_frame = 2  # 20 ms hidden states per 40 ms frame
    need = num_frames * per_frame
    if len(h) < need:  # the conv stack drops the last partial window: repeat the last state
        h = np.concatenate([h, np.repeat(h[-1:], need - len(h), 0)])
    return h[:need].reshape(num_frames, per_frame, -1).astype(np.float32)
