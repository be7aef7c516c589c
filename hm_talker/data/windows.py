"""The audio and AU windows around a frame, and the per-frame inputs they are cut from.

Training (the Lightning data layer), CMMM's stage 1, calibration, validation, evaluation and driving
all cut their windows here, so a frame's audio window means the same thing everywhere:
frames t - W/2 .. t + W/2 - 1, repeating the clip's first / last frame at its edges.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch


def band_stats(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [T, k, D] -> mean [D], std [D]
    """Per-band mean and standard deviation (at least 1e-3) of audio features over all frames and rows."""
    flat = audio.reshape(-1, audio.shape[-1]).astype(np.float64)
    return flat.mean(0).astype(np.float32), np.maximum(flat.std(0), 1e-3).astype(np.float32)


def speech_features(manifest: dict, arrays: dict, window: int, formants: bool | None = False) -> tuple:
    """(speech [T, k, 2], window) for CMMM: energy and flux of the identity's sound, normalised per clip
    (hm_talker/preprocess/speech_features.py), as preprocessing stored them in features.npz ("speech"), or,
    for a mel identity preprocessed before they were stored, from its log-mel; (None, 0) without a window.
    `formants`: True, the formant rows follow ([T, k, 2 + 4]; the formant head of CMMM reads them) or an
    InputError when the identity has none; None, they follow when the identity has them."""
    if window <= 0:
        return None, 0
    if "speech" in arrays:
        speech = arrays["speech"]
    elif manifest["features"]["audio"]["kind"] != "mel":
        return None, 0
    else:
        from hm_talker.preprocess.speech_features import mouth_audio_features

        speech = mouth_audio_features(arrays["audio"], "energy", arrays["clip_ids"])
    if formants is None:
        formants = "formants" in arrays
    if formants:
        if "formants" not in arrays:
            from hm_talker.errors import InputError

            raise InputError(manifest.get("identity"), "this CMMM reads formants (cmmm.net.formant_share > 0) and "
                                                       "the identity was preprocessed before they were stored: "
                                                       "run hm-talker preprocess again")
        speech = np.concatenate([speech, arrays["formants"]], -1)
    return speech, window


def lip_motion(arrays: dict, size: int) -> np.ndarray:  # -> [T, L, 3]
    """Displacement of the lower-face landmarks (lips, jaw) from the identity's mean shape, per frame,
    in the head frame (pose removed by the same similarity fit as preprocessing; eye distance 1)."""
    from hm_talker.constants import LOWER_FACE_LANDMARKS
    from hm_talker.preprocess.pose import head_poses

    shape = arrays["mean_shape"]
    canon = head_poses(arrays["landmarks"], shape, size, 2.0, 0.0)[2]  # focal does not change `canon`
    return (canon[:, LOWER_FACE_LANDMARKS] - shape[LOWER_FACE_LANDMARKS]).astype(np.float32)


class Windows:
    """Adds the audio-feature and AU windows around each frame, cut at the clip's edges; with
    `speech` (per-frame speaker-normalised speech features, [T, k, 2]) also its wider window."""

    def __init__(self, audio: np.ndarray, aus: np.ndarray, clip_ids: np.ndarray, window: int,
                 speech: np.ndarray | None = None, speech_window: int = 0, lip_motion: np.ndarray | None = None):
        self.audio, self.aus, self.window = audio, aus, window
        self.speech, self.speech_window = speech, speech_window
        self.lip_motion = lip_motion  # [T, L, 3] lower-face landmark displacement in the head frame
        edges = np.flatnonzero(np.diff(clip_ids)) + 1
        starts = np.concatenate([[0], edges])
        ends = np.concatenate([edges, [len(clip_ids)]])
        self.lo, self.hi = starts[clip_ids], ends[clip_ids] - 1

    def __len__(self) -> int:
        return len(self.audio)

    def indices(self, frame: int, window: int | None = None) -> np.ndarray:
        """Frames frame - W/2 .. frame + W/2 - 1, repeating the clip's first/last frame at its edges."""
        w = self.window if window is None else window
        idx = np.arange(frame - w // 2, frame - w // 2 + w)
        return np.clip(idx, self.lo[frame], self.hi[frame])

    def add(self, s: dict) -> dict:
        idx = self.indices(s["frame"])
        s["audio_window"] = torch.from_numpy(self.audio[idx])  # [W, k, D]
        s["aus_window"] = torch.from_numpy(self.aus[idx])  # [W, 17]
        if self.speech is not None and self.speech_window > 0:
            s["speech_window"] = torch.from_numpy(self.speech[self.indices(s["frame"], self.speech_window)])  # [Ws, k, 2]
        if self.lip_motion is not None:
            s["lip_motion"] = torch.from_numpy(self.lip_motion[s["frame"]])  # [L, 3]
        return s

    def __call__(self, samples: Iterable[dict]) -> Iterator[dict]:
        for s in samples:
            yield self.add(s)

    def speech_batch(self, frames) -> dict:
        """The model's audio inputs of these frames, stacked: audio_window [B, W, k, D] and, with speech
        features, speech_window [B, Ws, k, 2] (the one batch builder of calibration and rendering)."""
        out = {"audio_window": torch.from_numpy(np.stack([self.audio[self.indices(k)] for k in frames]))}
        if self.speech is not None and self.speech_window > 0:
            out["speech_window"] = torch.from_numpy(np.stack([self.speech[self.indices(k, self.speech_window)]
                                                              for k in frames]))
        return out
