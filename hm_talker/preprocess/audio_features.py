"""Audio features aligned to video frames: [T, k, D] with k feature rows per video frame.

log-mel (default, no weights needed): 10 ms hop; HuBERT / wav2vec2 (transformers, from a local
folder the user points to): 50 Hz. k is what one frame at `rows_fps` (25 fps, 40 ms) holds at the
feature's own rate: 4 mel rows, 2 HuBERT states, whatever the identity's fps, so identities of any
frame rate have features of one shape (the model's `rows_per_frame`). Row j of frame t lies at
time (t + j / k) / fps: at 25 fps exactly on the feature's own rows (taken as they are); at another
fps (30: 533.3 samples per frame, not a whole number of 160-sample hops) the rows are interpolated
linearly between the two nearest feature rows, on the frame clock.

The audio samples of frame t are [frame_start(t), frame_start(t + 1)), frame_start(t) =
round(t * sr / fps) exactly: `sr // fps` drifts by a third of a sample per frame at 30 fps.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from hm_talker.errors import InputError

ROWS_FPS = 25  # default of PreprocessConfig.audio_rows_fps: k = feature rate / 25 (40 ms frames)


def frame_start(i, sr: int, fps) -> int | np.ndarray:
    """First audio sample of video frame `i` (an int or an int array): round(i * sr / fps), exact
    (integer arithmetic; halves round up), so frame `i` spans [frame_start(i), frame_start(i + 1))
    and `frame_start(n)` samples hold n frames. Any fps: 25 -> i * 640, 30 -> 0, 533, 1067, 1600."""
    f = Fraction(str(fps)) if not isinstance(fps, (int, np.integer)) else Fraction(int(fps))
    num, den = f.denominator * int(sr), f.numerator  # i * sr / fps = i * num / den
    i = np.asarray(i, dtype=np.int64)
    out = (2 * i * num + den) // (2 * den)
    return int(out) if out.ndim == 0 else out


def frames_in(num_samples: int, sr: int, fps) -> int:
    """Whole frames whose samples `num_samples` covers, a last partial frame counting when over
    half of it is there (the inverse of `frame_start`)."""
    return int(round(num_samples * Fraction(str(fps)) / sr))


def rows_per_frame(feature_hz: float, rows_fps: int = ROWS_FPS) -> int:
    """k: feature rows per video frame, those of one frame at `rows_fps` (100 Hz mel: 4)."""
    return max(1, int(round(feature_hz / rows_fps)))


def row_positions(num_frames: int, k: int, sr: int, fps, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Where row j of frame t, at time (t + j / k) / fps, falls among feature rows spaced `hop`
    samples: (index of the row at or before it, fraction of the way to the next), both [T * k],
    exact (integer arithmetic): at 25 fps with k = 4, hop 160, every fraction is exactly 0."""
    f = Fraction(str(fps)) if not isinstance(fps, (int, np.integer)) else Fraction(int(fps))
    num, den = f.denominator * int(sr), f.numerator * k * hop  # row r: (r / k) / fps * sr / hop
    r = np.arange(num_frames * k, dtype=np.int64) * num
    return r // den, (r % den) / den


def resample_rows(rows: np.ndarray, base: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """[R, D] feature rows -> [len(base), D] rows at positions base + frac (linear, past the last
    row: the last row). Rows at a whole position are copied as they are (bit for bit)."""
    last = len(rows) - 1
    lo = rows[np.minimum(base, last)]
    hi = rows[np.minimum(base + 1, last)]
    w = frac[:, None].astype(rows.dtype)
    out = lo + (hi - lo) * w
    whole = frac == 0
    out[whole] = lo[whole]
    return out


@lru_cache(maxsize=4)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
    import librosa
    import torch

    return torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax))


def log_mel(audio: np.ndarray, num_frames: int, sr: int, fps: int, n_mels: int, hop: int, win: int,
            fmin: float, fmax: float, rows_fps: int = ROWS_FPS) -> np.ndarray:
    """[S] audio -> [num_frames, k, n_mels] log-mel, k = rows_per_frame(sr / hop, rows_fps); row j
    of frame t at time (t + j / k) / fps (see the module docstring). When a frame holds exactly k
    hops (25 fps: 640 samples = 4 x 160), row j of frame t is the STFT row centred at (t*k + j) * hop."""
    import torch

    k = rows_per_frame(sr / hop, rows_fps)
    n_samples = frame_start(num_frames, sr, fps)
    n_fft = 1 << (win - 1).bit_length()
    y = np.zeros(n_samples, dtype=np.float32)
    y[: min(len(audio), len(y))] = audio[: len(y)]
    spec = torch.stft(torch.from_numpy(y), n_fft=n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win), center=True, pad_mode="reflect",
                      return_complex=True).abs().pow(2)  # [F, 1 + S/hop]
    mel = _mel_basis(sr, n_fft, n_mels, fmin, fmax) @ spec
    if sr % fps == 0 and sr // fps == k * hop:  # the frame clock is the hop clock: rows as they are
        mel = torch.log(mel.clamp_min(1e-5))[:, : num_frames * k]
        return mel.T.reshape(num_frames, k, n_mels).numpy().astype(np.float32)
    rows = torch.log(mel.clamp_min(1e-5)).T.numpy().astype(np.float32)  # [1 + S/hop, n_mels]
    base, frac = row_positions(num_frames, k, sr, fps, hop)
    return resample_rows(rows, base, frac).reshape(num_frames, k, n_mels)


SSL_HZ = 50  # HuBERT / wav2vec2 hidden states per second (20 ms stride of their conv stack)


def ssl_features(audio: np.ndarray, num_frames: int, sr: int, fps: int, model_dir: str,
                 kind: str, rows_fps: int = ROWS_FPS) -> np.ndarray:
    """HuBERT / wav2vec2 last hidden states, 50 Hz, from local weights -> [num_frames, k, D]
    (k = 2 at the default rows_fps; at 25 fps states 2t and 2t + 1, elsewhere interpolated).

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
    k = rows_per_frame(SSL_HZ, rows_fps)
    # the conv stack drops the last partial window: positions past the end repeat the last state
    base, frac = row_positions(num_frames, k, SSL_HZ, fps, 1)
    return resample_rows(h.astype(np.float32), base, frac).reshape(num_frames, k, -1)
