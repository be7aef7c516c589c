"""`hm-talker evaluate --pred PRED --target TARGET --out OUT`: the field's metrics on any two clips.

PRED / TARGET: two videos, two images, or two folders of frames (sorted by name). Landmarks (LMD,
mouth motion), AUs (AUE) and the face region come from the same mediapipe + geometry pipeline as
preprocessing, calibrated on the target; sync metrics need SyncNet weights and the prediction's sound.
Clips are decoded and scored a chunk of frames at a time: memory does not grow with their length.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hm_talker.clip_frames import CHUNK_FRAMES, open_clip
from hm_talker.constants import MOUTH_LANDMARKS
from hm_talker.errors import InputError
from hm_talker.evaluate_report import write_report  # noqa: F401  (re-exported for callers)


def load_frames(path) -> np.ndarray:
    """A video, an image or a folder of images -> [T, H, W, 3] uint8 RGB (the whole clip in memory:
    evaluation itself reads clips chunk by chunk through :func:`hm_talker.clip_frames.open_clip`)."""
    return np.concatenate(list(open_clip(path).chunks()))


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


def evaluate_pair(pred_path, target_path, out_dir, syncnet_weights=None, chunk: int = CHUNK_FRAMES) -> dict:
    """`--pred --target`: every metric, reading both clips ``chunk`` frames at a time (twice: the
    landmarks first, for the face masks and AU calibration, then the image metrics)."""
    from hm_talker.metrics import ClipScorer

    pred, target = open_clip(pred_path), open_clip(target_path)
    if (pred.height, pred.width) != (target.height, target.width):
        raise InputError(pred_path, f"frames are {pred.width}x{pred.height}, the target's "
                                    f"{target.width}x{target.height}")
    n = min(pred.num_frames, target.num_frames)
    size = (target.height, target.width)
    geo = face_geometry(clip_landmarks(target, n, chunk), clip_landmarks(pred, n, chunk), size)
    audio = None
    if pred.is_video:
        from hm_talker.preprocess.media import audio_from_video, probe_video

        if probe_video(pred_path).has_audio:
            audio = audio_from_video(pred_path, 16000)
    scorer = ClipScorer(geo.target is not None, audio is not None, syncnet_weights)
    start = 0
    for p, t in zip(pred.chunks(chunk, n), target.chunks(chunk, n)):
        scorer.update(p, t, geo.face_masks(start, start + len(p)) if geo.target is not None else None)
        start += len(p)
    metrics = scorer.result(audio=audio, **geo.score_kwargs())
    if geo.note:
        metrics.setdefault("notes", {})["landmarks"] = geo.note
    if audio is None and metrics.get("sync_c") is None:
        metrics.setdefault("notes", {})["sync_c"] = "the prediction has no sound track"
    write_report(metrics, out_dir, {"pred": str(pred_path), "target": str(target_path), "protocol": "pair"})
    return metrics


def video_landmarks(path, chunk: int = CHUNK_FRAMES) -> np.ndarray:
    """Face-mesh landmarks ``[T, 478, 3]`` (pixels, NaN without a face) of a video resampled to
    25 fps, decoded and tracked chunk by chunk so a long clip never sits in memory at once."""
    clip = open_clip(path)
    return clip_landmarks(clip, clip.num_frames, chunk)
