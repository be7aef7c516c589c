"""Lip-sync metrics with SyncNet: Sync-C (LSE-C), Sync-D (LSE-D) and the AV offset.

Definition used for every HM-Talker number (as in syncnet_python's ``SyncNetInstance.evaluate``)
----------------------------------------------------------------------------------------------
SyncNet embeds, for each video frame index ``i``, the 5-frame visual window ``frames[i:i+5]``
and the matching audio window of 20 MFCC steps (0.2 s at 100 steps/s, starting at step
``4 i``: 4 MFCC steps per 25 fps frame). With visual embeddings ``v[i]`` and audio embeddings
``a[i]`` (``[T, D]``; D = 1024 for the public ``syncnet_v2.model``) and ``vshift = 15``:

* for every offset index ``j = 0 .. 2*vshift`` and frame ``i``,
  ``d[i, j] = || v[i] - a[i + j - vshift] + 1e-6 ||_2`` (torch ``pairwise_distance``), where an
  audio index outside ``[0, T)`` stands for a zero vector (syncnet_python zero-pads, and we
  keep that so numbers stay comparable with published ones),
* the distance curve ``D[j] = mean_i d[i, j]`` (31 values),
* **Sync-D** (LSE-D) ``= min_j D[j]`` (lower is better),
* **AV offset** ``= vshift - argmin_j D[j]`` in frames, range -15..+15. Sign: an offset of
  ``+k`` means video frame ``i`` matches the audio window at ``i - k``: the mouth moves ``k``
  frames *after* its sound (video lags audio); ``-k`` means the video leads. 0 is in sync.
* **Sync-C** (LSE-C, confidence) ``= median_j D[j] - min_j D[j]`` (higher is better): how far
  the best offset stands out of the curve.

Preprocessing of :class:`SyncNetScorer` mirrors syncnet_python's evaluation: frames are face
crops at 25 fps (the caller's job, as in the syncnet pipeline's S3FD crop), converted to BGR (the
network was trained on ``cv2.imread`` frames), resized to 224 x 224 and fed as float 0..255;
audio is mono 16 kHz at int16 scale, MFCC by ``python_speech_features.mfcc`` defaults (13
coefficients, 25 ms window, 10 ms step); ``min(T, samples // 640) - 5`` windows are scored.

The weights ``syncnet_v2.model`` are not shipped with syncnet-python: pass a path or set
``HM_TALKER_SYNCNET_WEIGHTS``. Without them :func:`compute_sync` returns None values and a
note instead of failing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hm_talker.data.clips import CHUNK_FRAMES

ENV_VAR = "HM_TALKER_SYNCNET_WEIGHTS"
VSHIFT = 15
FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MFCC_STEPS_PER_FRAME = 4
MFCC_WINDOW = 20
VIDEO_WINDOW = 5
CROP_SIZE = 224
SYNC_KEYS = ("sync_c", "sync_d", "av_offset")


@dataclass
class SyncResult:
    """Outcome of :func:`sync_scores`; ``distances[j]`` belongs to ``offsets[j]``."""

    sync_c: float
    sync_d: float
    av_offset: int
    offsets: np.ndarray  # [2*vshift+1] int, = vshift - j
    distances: np.ndarray  # [2*vshift+1] mean distance per offset index j

    def as_dict(self) -> dict:
        return {"sync_c": self.sync_c, "sync_d": self.sync_d, "av_offset": self.av_offset}


@torch.no_grad()
def offset_distances(visual, audio, vshift: int = VSHIFT, chunk: int = 256) -> torch.Tensor:  # -> [T, 2v+1]
    """``d[i, j] = ||visual[i] - audio[i + j - vshift] + 1e-6||`` with zero-padded audio."""
    v = torch.as_tensor(np.asarray(visual) if not isinstance(visual, torch.Tensor) else visual).float()
    a = torch.as_tensor(np.asarray(audio) if not isinstance(audio, torch.Tensor) else audio).float()
    if v.ndim != 2 or v.shape != a.shape:
        raise ValueError(f"embeddings must both be [T, D], got {tuple(v.shape)} and {tuple(a.shape)}")
    width = 2 * vshift + 1
    a_pad = torch.nn.functional.pad(a, (0, 0, vshift, vshift))  # [T + 2v, D]
    windows = a_pad.unfold(0, width, 1)  # [T, D, 2v+1]: windows[i, :, j] = a_pad[i + j]
    rows = []
    for start in range(0, v.shape[0], chunk):  # bounds memory at T * (2v+1) * D floats per chunk
        vv = v[start:start + chunk, None, :].expand(-1, width, -1)
        aa = windows[start:start + chunk].permute(0, 2, 1)
        rows.append(torch.nn.functional.pairwise_distance(vv, aa))
    return torch.cat(rows)


def sync_scores(visual, audio, vshift: int = VSHIFT) -> SyncResult:  # [T, D] x2
    """Sync-C, Sync-D and AV offset from SyncNet embeddings (see the module docstring)."""
    dists = offset_distances(visual, audio, vshift)
    if dists.shape[0] == 0:
        raise ValueError("no windows to score")
    mean = dists.mean(dim=0)  # [2v+1]
    min_val, min_idx = torch.min(mean, dim=0)
    conf = torch.median(mean) - min_val  # 2v+1 is odd: the plain median
    offsets = vshift - np.arange(2 * vshift + 1)
    return SyncResult(sync_c=float(conf), sync_d=float(min_val), av_offset=int(vshift - int(min_idx)),
                      offsets=offsets, distances=mean.double().numpy())


# --------------------------------------------------------------------------- SyncNet wrapper
def resolve_weights(weights: str | os.PathLike | None = None) -> Path | None:
    """Explicit path, else ``$HM_TALKER_SYNCNET_WEIGHTS``, else None."""
    chosen = weights if weights is not None else (os.environ.get(ENV_VAR) or None)
    return Path(chosen).expanduser() if chosen is not None else None


def audio_to_int16_scale(audio, sample_rate: int) -> np.ndarray:  # [N] -> [N'] at 16 kHz
    """Mono waveform -> float array of int16-scale samples at 16 kHz (what syncnet reads)."""
    x = np.asarray(audio)
    if x.ndim == 2:  # [N, C] or [C, N]: average the channels
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    if x.ndim != 1:
        raise ValueError(f"audio must be a mono waveform [N], got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        if x.dtype != np.int16:
            raise ValueError(f"integer audio must be int16, got {x.dtype}")
        x = x.astype(np.float64)
    else:
        x = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767)
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(int(sample_rate), SAMPLE_RATE)
        x = np.clip(np.round(resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g)), -32768, 32767)
    return x


class SyncNetScorer:
    """syncnet-python's network with user-supplied ``syncnet_v2.model`` weights.

    Raises FileNotFoundError if the weights are missing; :func:`compute_sync` wraps this into
    a note for evaluation code that must not stop.
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str | None = None,
                 batch_size: int = 20, vshift: int = VSHIFT):
        path = resolve_weights(weights)
        if path is None:
            raise FileNotFoundError(f"no SyncNet weights: pass the path of syncnet_v2.model or set {ENV_VAR}")
        if not path.is_file():
            raise FileNotFoundError(f"SyncNet weights not found: {path}")
        from syncnet_python.SyncNetModel import S  # heavy import: only when weights exist

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        self.vshift = vshift
        self.net = S(num_layers_in_fc_layers=1024)
        # weights_only: a checkpoint is untrusted input; the public file is a plain tensor dict
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a SyncNet state dict, got {type(state).__name__}")
        # The 2017 file predates BatchNorm's num_batches_tracked buffers; everything else must match.
        result = self.net.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise ValueError(f"{path}: not a SyncNet (syncnet_v2) state dict; missing {missing[:3]}, "
                             f"unexpected {list(result.unexpected_keys)[:3]}")
        self.net.eval().to(self.device)

    @staticmethod
    def prepare_frames(frames) -> torch.Tensor:  # [T,H,W,3] uint8 RGB -> [1,3,T,224,224] float BGR 0..255
        import cv2

        x = np.asarray(frames)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3] RGB, got {x.shape}")
        if x.dtype != np.uint8:
            x = np.clip(np.round(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
        bgr = x[..., ::-1]
        if bgr.shape[1:3] != (CROP_SIZE, CROP_SIZE):
            bgr = np.stack([cv2.resize(np.ascontiguousarray(f), (CROP_SIZE, CROP_SIZE)) for f in bgr])
        vid = torch.from_numpy(np.ascontiguousarray(bgr)).float()  # [T,224,224,3]
        return vid.permute(3, 0, 1, 2)[None]  # [1,3,T,224,224]

    @staticmethod
    def prepare_audio(audio, sample_rate: int) -> tuple[torch.Tensor, int]:  # -> [1,1,13,S], samples
        import python_speech_features

        x = audio_to_int16_scale(audio, sample_rate)
        mfcc = python_speech_features.mfcc(x, SAMPLE_RATE)  # [S, 13]
        return torch.from_numpy(np.ascontiguousarray(mfcc.T)).float()[None, None], len(x)

    @torch.no_grad()
    def embed(self, frames, audio, sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
        """Visual and audio embeddings ``[W, 1024]`` for the ``W = min(T, N // 640) - 5`` windows."""
        vid = self.prepare_frames(frames)
        cc, num_samples = self.prepare_audio(audio, sample_rate)
        num_windows = min(vid.shape[2], num_samples // SAMPLES_PER_FRAME) - VIDEO_WINDOW
        if num_windows <= 0:
            raise ValueError(f"clip too short for SyncNet: {vid.shape[2]} frames, {num_samples} samples")
        v_out, a_out = [], []
        for start in range(0, num_windows, self.batch_size):
            idx = range(start, min(num_windows, start + self.batch_size))
            v_in = torch.cat([vid[:, :, i:i + VIDEO_WINDOW] for i in idx]).to(self.device)
            a_in = torch.cat([cc[:, :, :, i * MFCC_STEPS_PER_FRAME:i * MFCC_STEPS_PER_FRAME + MFCC_WINDOW]
                              for i in idx]).to(self.device)
            v_out.append(self.net.forward_lip(v_in).cpu())
            a_out.append(self.net.forward_aud(a_in).cpu())
        return torch.cat(v_out), torch.cat(a_out)

    def score(self, frames, audio, sample_rate: int = SAMPLE_RATE) -> SyncResult:
        """Embed the clip and score it with :func:`sync_scores`."""
        visual, aud = self.embed(frames, audio, sample_rate)
        return sync_scores(visual, aud, self.vshift)


_SCORERS: dict[tuple[str, str], SyncNetScorer] = {}


class SyncStream:
    """:func:`compute_sync` of a clip fed in consecutive chunks of frames.

    Memory holds SyncNet's visual embeddings (1024 floats a window) and the prepared frames of the
    windows not yet embedded, never the clip. Windows are embedded in the batches
    :meth:`SyncNetScorer.embed` uses, so the numbers equal the whole-clip ones. Never raises: a
    failure becomes the ``note`` of :meth:`result`.
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str | None = None):
        self.num_frames, self.done = 0, 0  # frames seen; windows embedded
        self.scorer, self.note, self.missing = None, None, None
        self._pending = None  # prepared frames [1, 3, m, 224, 224] from frame `done` on
        self._visual: list[torch.Tensor] = []
        path = resolve_weights(weights)
        if path is None:
            self.missing = f"no SyncNet weights (syncnet_v2.model): pass syncnet_weights or set {ENV_VAR}"
            return
        key = (str(path.resolve()), str(device))
        try:
            self.scorer = _SCORERS.get(key) or _SCORERS.setdefault(key, SyncNetScorer(path, device=device))
        except Exception as exc:  # evaluation must go on: report instead of failing the whole run
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.note, self.scorer, self._pending = f"SyncNet failed: {type(exc).__name__}: {exc}", None, None

    def update(self, frames) -> None:
        """Add the next ``[n, H, W, 3]`` uint8 RGB face crops (25 fps)."""
        self.num_frames += len(frames)
        if self.scorer is None:
            return
        try:
            vid = self.scorer.prepare_frames(frames)
            self._pending = vid if self._pending is None else torch.cat([self._pending, vid], dim=2)
            self._embed(self.num_frames - VIDEO_WINDOW + 1, whole_batches=True)
        except Exception as exc:
            self._fail(exc)

    @torch.no_grad()
    def _embed(self, windows: int, whole_batches: bool) -> None:
        """Embed windows ``done .. windows - 1`` (only whole batches while more frames may come)."""
        bs = self.scorer.batch_size
        while self.done < windows and (not whole_batches or self.done + bs <= windows):
            k = min(windows, self.done + bs) - self.done
            v_in = torch.cat([self._pending[:, :, i:i + VIDEO_WINDOW] for i in range(k)]).to(self.scorer.device)
            self._visual.append(self.scorer.net.forward_lip(v_in).cpu())
            self._pending, self.done = self._pending[:, :, k:], self.done + k

    @torch.no_grad()
    def result(self, audio, sample_rate: int = SAMPLE_RATE) -> dict:
        """``{'sync_c', 'sync_d', 'av_offset', 'note'}`` of the frames so far against ``audio``."""
        empty = {k: None for k in SYNC_KEYS}
        if self.missing or audio is None:
            return {**empty, "note": self.missing or "no audio given"}
        if self.scorer is None:
            return {**empty, "note": self.note}
        try:
            cc, num_samples = self.scorer.prepare_audio(audio, sample_rate)
            n = min(self.num_frames, num_samples // SAMPLES_PER_FRAME) - VIDEO_WINDOW
            if n <= 0:
                raise ValueError(f"clip too short for SyncNet: {self.num_frames} frames, {num_samples} samples")
            self._embed(n, whole_batches=False)
            a_out = []
            for start in range(0, n, self.scorer.batch_size):
                a_in = torch.cat([cc[:, :, :, i * MFCC_STEPS_PER_FRAME:i * MFCC_STEPS_PER_FRAME + MFCC_WINDOW]
                                  for i in range(start, min(n, start + self.scorer.batch_size))])
                a_out.append(self.scorer.net.forward_aud(a_in.to(self.scorer.device)).cpu())
            visual = torch.cat(self._visual)[:n]
            return {**sync_scores(visual, torch.cat(a_out), self.scorer.vshift).as_dict(), "note": None}
        except Exception as exc:
            return {**empty, "note": f"SyncNet failed: {type(exc).__name__}: {exc}"}


def compute_sync(frames, audio, sample_rate: int = SAMPLE_RATE, weights: str | os.PathLike | None = None,
                 device: str | None = None, chunk: int = CHUNK_FRAMES) -> dict:
    """``{'sync_c', 'sync_d', 'av_offset', 'note'}``; never raises for missing weights or bad clips.

    ``frames``: ``[T, H, W, 3]`` uint8 RGB face crops at 25 fps, prepared ``chunk`` frames at a time
    (:class:`SyncStream`); ``audio``: mono waveform ``[N]`` (float in [-1, 1] or int16). On failure
    the three values are None and ``note`` says why; on success ``note`` is None.
    """
    stream = SyncStream(weights, device)
    if stream.scorer is not None and audio is not None:
        for i in range(0, len(frames), chunk):
            stream.update(frames[i:i + chunk])
    else:
        stream.num_frames = len(frames)
    return stream.result(audio, sample_rate)


__all__ = ["ENV_VAR", "VSHIFT", "SyncResult", "offset_distances", "sync_scores", "SyncNetScorer",
           "SyncStream", "compute_sync", "resolve_weights", "audio_to_int16_scale"]
