"""The offset between a clip's sound and its mouth, measured without weights, and its correction.

Recordings in the wild often carry a sound track that is late or early against the picture (an
encoder's audio delay, a re-mux, a web download): the field measures it with SyncNet's offset search and
trains on sync-corrected clips. A person-specific model trained on an offset clip learns its mouth from
the wrong sound, and its self-driven score is judged against a mouth the sound does not match.

`estimate_offset` is a weight-free version of that search: the Pearson r between the clip's mouth
opening (inner-lip gap over eye distance, per frame) and its speech loudness (the per-frame mean of
`speech_features`' log energy) at every lag within +-`max_lag` frames. Sign: offset +k = the sound is k
frames LATE (the mouth at frame t goes with the sound of frame t + k). `align_sound` puts the clip in step
when the estimate is clear (the clip is long enough, the best r beats the r at lag 0 by `min_gain`, and the
best lag is not at the edge of the search: no peak there): each frame gets the sound of frame t + k, and
the k frames left without a sound are dropped. Measured on the real clips:
long3 (Obama, 20 s) +6 frames at 25 fps (r 0.20 at lag 0, 0.35 at +6), long1 +2 with a gain of 0.05 (not
clear: kept), long2 0.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from hm_talker.metrics.mouth import lagged_correlations, mouth_opening

log = logging.getLogger("hm_talker")


@dataclass
class AVOffset:
    frames: int  # the estimated offset (+k: the sound is k frames late); 0 when not estimated
    applied: int  # the shift the sound was given (frames; 0 when kept)
    r_zero: float | None  # mouth/loudness r at lag 0 (None: not estimated)
    r_best: float | None  # ... at the estimated offset
    reason: str  # why it was (not) applied

    def to_dict(self) -> dict:
        return {"frames": self.frames, "applied": self.applied, "r_zero": self.r_zero, "r_best": self.r_best,
                "reason": self.reason}


def estimate_offset(opening: np.ndarray, loudness: np.ndarray, max_lag: int) -> tuple[int, float, float]:
    """(offset in frames, r at lag 0, r at the offset): the lag k within +-max_lag at which loudness[t + k]
    follows opening[t] best (metrics.mouth.lagged_correlations with the loudness as the lagging signal)."""
    rs = {k: r or 0.0 for k, r in lagged_correlations(loudness, opening, max_lag).items()}
    best = max(rs, key=rs.get)
    return best, float(rs[0]), float(rs[best])


def in_sync(frames: np.ndarray, audio: np.ndarray, lag: int, sr: int, fps) -> tuple[np.ndarray, np.ndarray]:
    """(frames [T - |lag|, ...], sound of frame_start(T - |lag|) samples) put in step: each kept frame with
    the sound of frame t + lag (`frames` is any per-frame array: landmarks, source indices). The |lag|
    frames at the end (lag > 0) or the start (lag < 0) that have no sound of their own are dropped, so no
    frame is paired with silence or with another frame's sound."""
    from hm_talker.preprocess.audio_features import frame_start

    if lag == 0:
        return frames, audio
    n = len(frames) - abs(lag)
    if n < 1:
        raise ValueError(f"an offset of {lag} frames leaves nothing of a {len(frames)}-frame clip")
    kept = frames[:n] if lag > 0 else frames[-lag:]
    start = int(frame_start(lag, sr, fps)) if lag > 0 else 0
    length = int(frame_start(n, sr, fps))
    sound = audio[start:start + length]
    return kept, np.pad(sound, (0, length - len(sound)))


def clip_loudness(audio: np.ndarray, num_frames: int, cfg) -> np.ndarray:  # -> [T]
    """Per-frame loudness of a clip's sound: the mean over the frame's rows of the speech window's log energy."""
    from hm_talker.preprocess.audio_features import log_mel
    from hm_talker.preprocess.speech_features import speech_features_of

    mel = log_mel(audio, num_frames, cfg.sample_rate, cfg.fps, cfg.n_mels, cfg.mel_hop, cfg.mel_win, cfg.mel_fmin,
                  cfg.mel_fmax, cfg.audio_rows_fps)
    return speech_features_of(mel)[:, :, 0].mean(1)


def measure(landmarks: np.ndarray, audio: np.ndarray, cfg) -> AVOffset:
    """The offset of a clip (face mesh [T, 478, 3] at cfg.fps, its sound at cfg.sample_rate) under
    cfg.av_offset: auto (estimate, apply when clear), or a whole number of frames to apply as given."""
    setting = str(cfg.av_offset).strip().lower()
    if setting != "auto":
        k = int(setting)  # validated by check_preprocess_config
        return AVOffset(k, k, None, None, "set by av_offset" if k else "av_offset=0: not measured")
    n = len(landmarks)
    seconds = n / cfg.fps
    if seconds < cfg.av_offset_min_seconds:
        return AVOffset(0, 0, None, None, f"not estimated: {seconds:.1f} s < av_offset_min_seconds "
                                          f"{cfg.av_offset_min_seconds:g}")
    lag, r0, rb = estimate_offset(mouth_opening(landmarks), clip_loudness(audio, n, cfg),
                                  cfg.av_offset_max_frames)
    if abs(lag) == cfg.av_offset_max_frames:
        return AVOffset(lag, 0, r0, rb, "kept: the best lag is at the edge of the search (no clear peak)")
    if rb - r0 < cfg.av_offset_min_gain:
        return AVOffset(lag, 0, r0, rb, f"kept: r gains {rb - r0:.2f} < av_offset_min_gain {cfg.av_offset_min_gain:g}")
    return AVOffset(lag, lag, r0, rb, "applied")


def align_sound(clip, cfg):
    """(clip with its sound shifted by the measured offset, AVOffset); logs what it found."""
    off = measure(clip.landmarks, clip.audio, cfg)
    name = clip.info.path.name if hasattr(clip.info, "path") else "clip"
    if off.r_zero is not None:
        log.info("%s: sound/mouth offset %+d frames (%+.0f ms; r %.2f at 0, %.2f there): %s", name, off.frames,
                 1000 * off.frames / cfg.fps, off.r_zero, off.r_best, off.reason)
    if off.applied:
        if off.r_zero is not None:
            log.warning("%s: the sound is %d ms %s than the mouth: put in step, the %d frames at the %s without "
                        "a sound of their own dropped (preprocess --set av_offset=0 keeps it as it is)", name,
                        abs(round(1000 * off.applied / cfg.fps)), "later" if off.applied > 0 else "earlier",
                        abs(off.applied), "end" if off.applied > 0 else "start")
        index = np.arange(len(clip.src_indices))
        kept, audio = in_sync(index, clip.audio, off.applied, cfg.sample_rate, cfg.fps)
        clip = replace(clip, audio=audio, src_indices=clip.src_indices[kept], landmarks=clip.landmarks[kept])
    return clip, off
