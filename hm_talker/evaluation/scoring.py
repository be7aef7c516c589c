"""One scorer over chunks of frames: image metrics (face region and full frame), the face mesh of both
clips (LMD, AUE, the mouth-motion lip-sync metrics) and Sync with SyncNet weights. Frames arrive a chunk
at a time and only per-frame landmarks and running sums are kept, so memory does not grow with a clip.

Landmarks (LMD, mouth motion), AUs (AUE) and the face region come from the same mediapipe + geometry
pipeline as preprocessing, AUs calibrated on the reference clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from hm_talker.constants import MOUTH_LANDMARKS
from hm_talker.data.clips import CHUNK_FRAMES
from hm_talker.metrics import METRIC_KEYS, MOUTH_PAIR_KEYS, ClipScorer
from hm_talker.metrics.mouth import TRAJECTORY_KEY, mouth_opening, opening_stats, score_openings
from hm_talker.metrics.sync import SyncStream

IMAGE_KEYS = ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face", "lmd", "aue", "aue_lower",
              "aue_upper")


@dataclass
class FaceGeometry:
    """Landmarks of a target and a prediction, the target's face masks and both clips' AUs.

    ``*_raw`` are ``[T, 478, 3]`` with NaN where no face was found (the mouth metrics skip and
    count those frames); ``target`` / ``pred`` have the gaps interpolated (for LMD, AUs, masks).
    Everything is None when either clip has no face at all.
    """

    target: np.ndarray | None
    pred: np.ndarray | None
    size: tuple[int, int]  # (H, W) of the frames
    aus_target: np.ndarray | None
    aus_pred: np.ndarray | None
    target_raw: np.ndarray | None
    pred_raw: np.ndarray | None
    note: str | None

    def face_masks(self, start: int, stop: int) -> np.ndarray:
        """Bool ``[stop - start, H, W]`` face masks of the target's frames ``start .. stop - 1``."""
        from hm_talker.preprocess.masks import draw_masks

        return np.stack([draw_masks(p, self.size)[..., 0] > 0 for p in self.target[start:stop]])

    def score_kwargs(self) -> dict:
        """The landmark / AU arguments of :meth:`hm_talker.metrics.ClipScorer.result`."""
        return dict(pred_mouth_landmarks=None if self.pred is None else self.pred[:, MOUTH_LANDMARKS, :2],
                    target_mouth_landmarks=None if self.target is None else self.target[:, MOUTH_LANDMARKS, :2],
                    pred_aus=self.aus_pred, target_aus=self.aus_target,
                    pred_landmarks=self.pred_raw, target_landmarks=self.target_raw)


def face_geometry(target_landmarks: np.ndarray, pred_landmarks: np.ndarray, size) -> FaceGeometry:
    """Gap-filled landmarks of both clips (``[T, 478, 3]``, NaN without a face) and AUs of both,
    calibrated on the target; ``size`` = (H, W) of the frames."""
    from hm_talker.preprocess.aus import AUCalibration
    from hm_talker.preprocess.pose import mean_shape
    from hm_talker.preprocess.track import interpolate_gaps

    lt, lp = target_landmarks, pred_landmarks
    if np.isnan(lt[:, 0, 0]).all() or np.isnan(lp[:, 0, 0]).all():
        return FaceGeometry(None, None, tuple(size), None, None, None, None,
                            "no face found in the target or the prediction")
    missing = int(np.isnan(lt[:, 0, 0]).sum() + np.isnan(lp[:, 0, 0]).sum())
    raw_t, raw_p = lt, lp
    lt, lp = interpolate_gaps(lt), interpolate_gaps(lp)
    shape = mean_shape(lt)
    ft, fp = _au_features(lt, shape, max(size)), _au_features(lp, shape, max(size))
    calib = AUCalibration.fit_features(ft)
    note = (f"{missing} frame(s) without a detected face were interpolated for LMD/AUE and skipped by "
            "the mouth metrics") if missing else None
    return FaceGeometry(lt, lp, tuple(size), calib.apply_features(ft), calib.apply_features(fp), raw_t, raw_p, note)


def _au_features(lms: np.ndarray, shape: np.ndarray, size: int, chunk: int = 4 * CHUNK_FRAMES) -> dict:
    """AU geometry features ([T] each) of the pose-free landmarks, posed frame by frame (unsmoothed,
    so chunk by chunk: the pose-free copy of the clip's landmarks never exists at once)."""
    from hm_talker.preprocess.aus import geometry_features
    from hm_talker.preprocess.pose import head_poses

    parts = [geometry_features(head_poses(lms[i:i + chunk], shape, size, 2.0, 0.0)[2])
             for i in range(0, len(lms), chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def clip_landmarks(clip, num_frames: int, chunk: int = CHUNK_FRAMES) -> np.ndarray:
    """Face-mesh landmarks ``[T, 478, 3]`` (pixels, NaN without a face) of a clip's first
    ``num_frames`` frames, decoded and tracked chunk by chunk (one image: static mode)."""
    from hm_talker.preprocess.landmarks import LandmarkTrack

    with LandmarkTrack(static=num_frames == 1) as track:
        for frames in clip.chunks(chunk, num_frames):
            track.update(frames)
        return track.landmarks()


def video_landmarks(path, chunk: int = CHUNK_FRAMES) -> np.ndarray:
    """Face-mesh landmarks ``[T, 478, 3]`` (pixels, NaN without a face) of a video resampled to
    25 fps, decoded and tracked chunk by chunk so a long clip never sits in memory at once."""
    from hm_talker.data.clips import open_clip

    clip = open_clip(path)
    return clip_landmarks(clip, clip.num_frames, chunk)


def score_against_frames(chunks: Iterable, sync: bool, syncnet_weights=None, audio_for=None) -> dict:
    """Every metric of generated frames against their real frames, fed as chunks of
    ``(generated uint8 [n, H, W, 3], real uint8, face masks bool [n, H, W], frame indices [n])``, optionally
    followed by the regions the head was rendered in (bool [n, H, W], for ``seam``).

    ``audio_for(first, last)``: the sound of frames first..last for Sync (None: no sound)."""
    from hm_talker.preprocess.landmarks import LandmarkTrack

    scorer = ClipScorer(True, sync, syncnet_weights)
    first = last = None
    with LandmarkTrack() as track_t, LandmarkTrack() as track_p:
        for pred, target, masks, frames, *region in chunks:
            scorer.update(pred, target, masks, render_region=region[0] if region else None)
            track_t.update(target)
            track_p.update(pred)
            first, last = frames[0] if first is None else first, frames[-1]
        geo = face_geometry(track_t.landmarks(), track_p.landmarks(), scorer.size)
    audio = audio_for(first, last) if audio_for is not None else None
    metrics = scorer.result(audio=audio, **geo.score_kwargs())
    if geo.note:
        metrics.setdefault("notes", {})["landmarks"] = geo.note
    return metrics


def score_generated(chunks: Iterable, audio, sample_rate: int, syncnet_weights=None,
                    why: str = "") -> tuple[dict, np.ndarray]:
    """Metrics of a generated clip with no reference frames (uint8 [n, H, W, 3] chunks): Sync (with
    weights) and the mouth's own motion; the rest are None with `why`. Returns the metrics and the
    frames' face-mesh points ``[T, 478, 3]`` (for :func:`score_mouth_against`)."""
    from hm_talker.preprocess.landmarks import LandmarkTrack

    metrics = {k: None for k in METRIC_KEYS}
    notes = {k: why for k in (*IMAGE_KEYS, *MOUTH_PAIR_KEYS)}
    stream = SyncStream(syncnet_weights)
    with LandmarkTrack() as track:
        for frames in chunks:
            track.update(frames)
            stream.update(frames)
        landmarks = track.landmarks()
    sync = stream.result(audio, sample_rate)
    for k in ("sync_c", "sync_d", "av_offset"):
        metrics[k] = sync[k]
        if sync["note"]:
            notes[k] = sync["note"]
    opening = mouth_opening(landmarks)
    metrics.update(opening_stats(opening))
    metrics["mouth_frames_skipped"] = int((~np.isfinite(opening)).sum())
    metrics["num_frames"] = int(stream.num_frames)
    metrics["notes"] = notes
    return metrics, landmarks


def score_mouth_against(metrics: dict, pred_landmarks: np.ndarray, ref_landmarks: np.ndarray) -> dict:
    """Add the mouth-motion metrics of a generated clip against a reference mouth (another video saying
    the same sound) to `metrics` from :func:`score_generated`; the first min(T_pred, T_ref) frames count."""
    pred_open, ref_open = mouth_opening(pred_landmarks), mouth_opening(ref_landmarks)
    n = min(len(pred_open), len(ref_open))
    scores = score_openings(pred_open, ref_open)
    notes = metrics["notes"]
    for key in (*MOUTH_PAIR_KEYS, "mouth_frames_skipped", TRAJECTORY_KEY):
        metrics[key] = scores[key]
        notes.pop(key, None)
    notes.update(scores["notes"])
    metrics["reference_frames"] = int(len(ref_open))
    if len(ref_open) != len(pred_open):
        notes["reference_frames"] = (f"REF has {len(ref_open)} frames at 25 fps, its sound drove "
                                     f"{len(pred_open)}: the first {n} are compared")
    return metrics
