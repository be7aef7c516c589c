"""`hm-talker evaluate --pred PRED --target TARGET --out OUT`: the field's metrics on any two clips.

PRED / TARGET: two videos, two images, or two folders of frames (sorted by name). Landmarks (LMD,
mouth motion), AUs (AUE) and the face region come from the same mediapipe + geometry pipeline as
preprocessing, calibrated on the target; sync metrics need SyncNet weights and the prediction's sound.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hm_talker.constants import MOUTH_LANDMARKS
from hm_talker.errors import InputError
from hm_talker.evaluate_report import write_report  # noqa: F401  (re-exported for callers)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def load_frames(path) -> np.ndarray:
    """A video, an image or a folder of images -> [T, H, W, 3] uint8 RGB."""
    from hm_talker.preprocess.media import iter_frames, probe_video, resample_indices
    from hm_talker.preprocess.shards import decode_image

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise InputError(path, "folder holds no image files")
        frames = [_read_image(f, decode_image) for f in files]
        if len({f.shape for f in frames}) != 1:
            raise InputError(path, "images in the folder differ in size")
        return np.stack(frames)
    if path.suffix.lower() in IMAGE_EXTS:
        return _read_image(path, decode_image)[None]
    info = probe_video(path)
    idx = resample_indices(info.num_frames, info.fps, 25)
    return np.concatenate(list(iter_frames(path, idx)))


def _read_image(path: Path, decode) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return decode(path.read_bytes())
    except ValueError:
        raise InputError(path, "unreadable image") from None


@dataclass
class FaceGeometry:
    """Landmarks of a target and a prediction, the target's face masks and both clips' AUs.

    ``*_raw`` are ``[T, 478, 3]`` with NaN where no face was found (the mouth metrics skip and
    count those frames); ``target`` / ``pred`` have the gaps interpolated (for LMD, AUs, masks).
    Everything is None when either clip has no face at all.
    """

    target: np.ndarray | None
    pred: np.ndarray | None
    masks: np.ndarray | None
    aus_target: np.ndarray | None
    aus_pred: np.ndarray | None
    target_raw: np.ndarray | None
    pred_raw: np.ndarray | None
    note: str | None

    def score_kwargs(self) -> dict:
        """The landmark / AU arguments of :func:`hm_talker.metrics.score_frames`."""
        return dict(pred_mouth_landmarks=None if self.pred is None else self.pred[:, MOUTH_LANDMARKS, :2],
                    target_mouth_landmarks=None if self.target is None else self.target[:, MOUTH_LANDMARKS, :2],
                    pred_aus=self.aus_pred, target_aus=self.aus_target,
                    pred_landmarks=self.pred_raw, target_landmarks=self.target_raw)


def face_geometry(target: np.ndarray, pred: np.ndarray) -> FaceGeometry:
    """Landmarks of both clips, face masks of the target, AUs of both calibrated on the target."""
    from hm_talker.preprocess.aus import AUCalibration
    from hm_talker.preprocess.landmarks import detect_landmarks
    from hm_talker.preprocess.masks import draw_masks
    from hm_talker.preprocess.pose import head_poses, mean_shape
    from hm_talker.preprocess.track import interpolate_gaps

    static = len(target) == 1
    lt, lp = detect_landmarks(target, static=static), detect_landmarks(pred, static=static)
    if np.isnan(lt[:, 0, 0]).all() or np.isnan(lp[:, 0, 0]).all():
        return FaceGeometry(None, None, None, None, None, None, None,
                            "no face found in the target or the prediction")
    missing = int(np.isnan(lt[:, 0, 0]).sum() + np.isnan(lp[:, 0, 0]).sum())
    raw_t, raw_p = lt, lp
    lt, lp = interpolate_gaps(lt), interpolate_gaps(lp)
    masks = np.stack([draw_masks(p, target.shape[1:3])[..., 0] > 0 for p in lt])
    size = max(target.shape[1:3])
    shape = mean_shape(lt)
    _, _, ct = head_poses(lt, shape, size, 2.0, 0.0)
    _, _, cp = head_poses(lp, shape, size, 2.0, 0.0)
    calib = AUCalibration.fit(ct)
    note = (f"{missing} frame(s) without a detected face were interpolated for LMD/AUE and skipped by "
            "the mouth metrics") if missing else None
    return FaceGeometry(lt, lp, masks, calib.apply(ct), calib.apply(cp), raw_t, raw_p, note)


def evaluate_pair(pred_path, target_path, out_dir, syncnet_weights=None) -> dict:
    from hm_talker.metrics import score_frames

    pred, target = load_frames(pred_path), load_frames(target_path)
    if pred.shape[1:] != target.shape[1:]:
        raise InputError(pred_path, f"frames are {pred.shape[2]}x{pred.shape[1]}, the target's "
                                    f"{target.shape[2]}x{target.shape[1]}")
    n = min(len(pred), len(target))
    pred, target = pred[:n], target[:n]
    geo = face_geometry(target, pred)
    audio = None
    if Path(pred_path).suffix.lower() not in IMAGE_EXTS and Path(pred_path).is_file():
        from hm_talker.preprocess.media import audio_from_video, probe_video

        if probe_video(pred_path).has_audio:
            audio = audio_from_video(pred_path, 16000)
    metrics = score_frames(pred, target, face_masks=geo.masks, audio=audio, syncnet_weights=syncnet_weights,
                           **geo.score_kwargs())
    if geo.note:
        metrics.setdefault("notes", {})["landmarks"] = geo.note
    if audio is None and metrics.get("sync_c") is None:
        metrics.setdefault("notes", {})["sync_c"] = "the prediction has no sound track"
    write_report(metrics, out_dir, {"pred": str(pred_path), "target": str(target_path), "protocol": "pair"})
    return metrics


def video_landmarks(path, fps: int = 25) -> np.ndarray:
    """Face-mesh landmarks ``[T, 478, 3]`` (pixels, NaN without a face) of a video resampled to
    ``fps``, decoded and tracked chunk by chunk so a long clip never sits in memory at once."""
    from hm_talker.preprocess.landmarks import FaceMeshTracker
    from hm_talker.preprocess.media import iter_frames, probe_video, resample_indices

    info = probe_video(path)
    idx = resample_indices(info.num_frames, info.fps, fps)
    out = np.full((len(idx), 478, 3), np.nan, dtype=np.float32)
    i = 0
    with FaceMeshTracker() as tracker:
        for chunk in iter_frames(path, idx):
            for frame in chunk:
                p = tracker(frame)
                if p is not None:
                    out[i] = p
                i += 1
    return out
