"""Evaluation metrics of HM-Talker, defined once so every table means the same thing.

Modules: :mod:`.image` (PSNR, SSIM, LPIPS, full frame and face region), :mod:`.landmark` (LMD),
:mod:`.mouth` (weight-free lip sync: mouth-opening correlation, lag, amplitude, jitter),
:mod:`.au` (AUE), :mod:`.seam` (the dark line along the rendered region's edge),
:mod:`.sync` (Sync-C / Sync-D / AV offset with SyncNet) and
:mod:`.lpips_weights` (offline AlexNet backbone for LPIPS). Each module's docstring is the
definition of its metrics. :func:`score_frames` runs all of them on one clip.
"""

from __future__ import annotations

import math

import numpy as np

from hm_talker.data.clips import CHUNK_FRAMES

from .au import aue
from .image import (PSNR_CAP_DB, ImageScores, as_masks, lpips_distance, lpips_face, psnr, psnr_face, ssim,
                    ssim_face)
from .landmark import MEDIAPIPE_LIP_INDICES, lmd
from .mouth import MOUTH_PAIR_KEYS, MOUTH_SELF_KEYS, TRAJECTORY_KEY, mouth_opening, mouth_scores, opening_stats, score_openings
from .seam import SeamStream
from .sync import SyncStream, compute_sync, sync_scores

# Headline first: the face region (the full frame is mostly the real frame, composited back),
# then lip sync, then the full-frame numbers the field also reports.
FACE_KEYS = ("psnr_face", "ssim_face", "lpips_face")
FULL_FRAME_KEYS = ("psnr", "ssim", "lpips")
METRIC_KEYS = (*FACE_KEYS, "seam", *MOUTH_PAIR_KEYS, "lmd", "aue", "aue_lower", "aue_upper", "sync_c", "sync_d",
               "av_offset", *FULL_FRAME_KEYS, *MOUTH_SELF_KEYS, "mouth_frames_skipped", "num_frames")


def _finite_or_none(value):
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def score_frames(pred, target, face_masks=None, pred_mouth_landmarks=None, target_mouth_landmarks=None,
                 pred_aus=None, target_aus=None, audio=None, sample_rate: int = 16000,
                 syncnet_weights=None, *, sync_frames=None, lmd_reference_size=None,
                 pred_landmarks=None, target_landmarks=None, device=None, chunk: int = CHUNK_FRAMES) -> dict:
    """Score one generated clip against its ground truth.

    Args (shapes):
        pred, target: ``[T, H, W, 3]`` uint8 RGB frames (25 fps).
        face_masks: ``[T, H, W]`` (or ``[H, W]``) face masks for the ``*_face`` metrics.
        pred_mouth_landmarks, target_mouth_landmarks: ``[T, M, 2]`` pixel coordinates in the
            frames (normally :data:`MEDIAPIPE_LIP_INDICES`), for LMD.
        pred_aus, target_aus: ``[T, 17]`` OpenFace-order AU intensities, for AUE.
        audio: mono waveform ``[N]`` (float in [-1, 1] or int16) at ``sample_rate``, for sync.
        syncnet_weights: path of ``syncnet_v2.model`` (else ``$HM_TALKER_SYNCNET_WEIGHTS``).
        sync_frames: ``[T, h, w, 3]`` face crops for SyncNet; default ``pred`` (right when the
            frames already are face crops, as with HM-Talker's head renders).
        lmd_reference_size: ``(H, W)`` or int to report LMD at; default the frames' own size.
        pred_landmarks, target_landmarks: ``[T, 478, 2|3]`` mediapipe face-mesh points, NaN where
            no face was found (not interpolated: such frames are skipped and counted in
            ``mouth_frames_skipped``), for the mouth-motion metrics of :mod:`.mouth`.
        device: torch device for PSNR/SSIM/LPIPS (default: CUDA if available).
        chunk: frames converted to float and scored at once (:class:`ClipScorer`); the values do
            not depend on it.

    Returns:
        dict with :data:`METRIC_KEYS` (floats; ``av_offset`` and ``num_frames`` ints; None where a
        metric could not be computed) and ``notes``: ``{key: reason}`` for every None; with both
        ``pred_landmarks`` and ``target_landmarks`` also :data:`TRAJECTORY_KEY`: ``{"generated",
        "reference"}``, the two per-frame opening arrays the mouth metrics compared, and with face masks
        ``psnr_face`` / ``lpips_face`` per frame (not JSON: the evaluation report writes them to ``mouth.npz``).
    """
    if np.shape(pred) != np.shape(target):
        raise ValueError(f"pred {np.shape(pred)} and target {np.shape(target)} differ in shape")
    if len(np.shape(pred)) != 4:
        raise ValueError(f"frames must be [T, H, W, 3], got {np.shape(pred)}")
    num_frames, height, width = (int(s) for s in np.shape(pred)[:3])
    masks = None if face_masks is None else as_masks(face_masks, num_frames, height, width)
    sync_src = pred if sync_frames is None else sync_frames
    scorer = ClipScorer(masks is not None, audio is not None, syncnet_weights, device)
    for i in range(0, num_frames, chunk):
        scorer.update(pred[i:i + chunk], target[i:i + chunk], None if masks is None else masks[i:i + chunk],
                      sync_src[i:i + chunk])
    return scorer.result(pred_mouth_landmarks, target_mouth_landmarks, pred_aus, target_aus, audio, sample_rate,
                         lmd_reference_size=lmd_reference_size, pred_landmarks=pred_landmarks,
                         target_landmarks=target_landmarks)


FRAME_SCORE_KEYS = ("psnr_face", "lpips_face")  # per-frame scores kept in the mouth trajectory (evaluate --paired)


class ClipScorer:
    """:func:`score_frames` of a clip fed in consecutive chunks: memory holds one chunk of frames.

    ``face_masks``: whether every :meth:`update` brings the chunk's face masks (for ``*_face``);
    ``sync``: whether to embed the frames for SyncNet (the sound comes with :meth:`result`).
    """

    def __init__(self, face_masks: bool, sync: bool, syncnet_weights=None, device=None):
        self.face = face_masks
        self.image = ImageScores(device)
        self.sync = SyncStream(syncnet_weights) if sync else None
        self.seam = SeamStream()  # fed only by chunks that bring the region the head was rendered in
        self.num_frames, self.size = 0, None

    def update(self, pred, target, face_masks=None, sync_frames=None, render_region=None) -> None:
        """The next chunk: ``[n, H, W, 3]`` uint8 RGB pred and target, ``[n, H, W]`` masks, face crops,
        ``[n, H, W]`` bool region the head was rendered in (the real frame outside it: for ``seam``)."""
        if np.shape(pred) != np.shape(target):
            raise ValueError(f"pred {np.shape(pred)} and target {np.shape(target)} differ in shape")
        if self.face and face_masks is None:
            raise ValueError("this scorer scores face regions: give every chunk its face masks")
        self.size = tuple(int(s) for s in np.shape(pred)[1:3])
        self.num_frames += len(pred)
        self.image.update(pred, target, face_masks if self.face else None)
        if self.sync is not None:
            self.sync.update(pred if sync_frames is None else sync_frames)
        if render_region is not None:
            self.seam.update(pred, target, render_region)

    def result(self, pred_mouth_landmarks=None, target_mouth_landmarks=None, pred_aus=None, target_aus=None,
               audio=None, sample_rate: int = 16000, *, lmd_reference_size=None, pred_landmarks=None,
               target_landmarks=None) -> dict:
        """The clip's metrics (arguments and return value as :func:`score_frames`)."""
        out: dict = {k: None for k in METRIC_KEYS}
        notes: dict[str, str] = {}
        out["num_frames"] = self.num_frames
        image = self.image.means()
        for key in ("psnr", "ssim", "lpips"):
            out[key] = image[key]
        if self.image.lpips_error is not None:
            notes["lpips"] = f"LPIPS unavailable: {self.image.lpips_error}"

        if not self.face:
            for key in ("psnr_face", "ssim_face", "lpips_face"):
                notes[key] = "no face_masks given"
        else:
            for key in ("psnr_face", "ssim_face", "lpips_face"):
                out[key] = image[key]
            if "lpips" in notes:
                notes["lpips_face"] = notes["lpips"]
            for key, why in (("psnr_face", "every face mask is empty"),
                             ("ssim_face", "no face box of at least 11 px"),
                             ("lpips_face", "no face box of at least 32 px")):
                if out[key] is None and key not in notes:
                    notes[key] = why

        out["seam"] = self.seam.result()
        if out["seam"] is None:
            notes["seam"] = "no render region given (scored where a model renders into real frames)"

        if pred_mouth_landmarks is None or target_mouth_landmarks is None:
            notes["lmd"] = "mouth landmarks of pred and target not given"
        else:
            size = self.size if lmd_reference_size is not None else None
            out["lmd"] = lmd(pred_mouth_landmarks, target_mouth_landmarks, size, lmd_reference_size)
            if out["lmd"] is None:
                notes["lmd"] = "no frame with valid landmarks in both clips"

        _score_mouth(out, notes, pred_landmarks, target_landmarks)
        if out.get(TRAJECTORY_KEY) is not None:  # the frames' face-region scores beside their mouths (paired tests)
            for key in FRAME_SCORE_KEYS:
                values = self.image.per_frame(key)
                if values is not None and len(values) == len(out[TRAJECTORY_KEY]["generated"]):
                    out[TRAJECTORY_KEY][key] = values

        if pred_aus is None or target_aus is None:
            for key in ("aue", "aue_lower", "aue_upper"):
                notes[key] = "AUs of pred and target not given"
        else:
            au = aue(pred_aus, target_aus)
            for key in ("aue", "aue_lower", "aue_upper"):
                out[key] = au[key]
                if au[key] is None:
                    notes[key] = "no frame with valid AUs in both clips"

        if audio is None or self.sync is None:
            for key in ("sync_c", "sync_d", "av_offset"):
                notes[key] = "no audio given"
        else:
            sync = self.sync.result(audio, sample_rate)
            for key in ("sync_c", "sync_d", "av_offset"):
                out[key] = sync[key]
                if sync[key] is None:
                    notes[key] = sync["note"]

        for key in METRIC_KEYS:
            out[key] = _finite_or_none(out[key])
            if out[key] is None and key not in notes:
                notes[key] = "not finite"
        out["notes"] = notes
        return out


def _score_mouth(out: dict, notes: dict, pred_landmarks, target_landmarks) -> None:
    """Fill the mouth-motion keys of ``out`` (and their notes) from full face-mesh landmarks."""
    if pred_landmarks is None:
        for key in (*MOUTH_PAIR_KEYS, *MOUTH_SELF_KEYS, "mouth_frames_skipped"):
            notes[key] = "face landmarks of the prediction not given (or no face found)"
        return
    po = mouth_opening(pred_landmarks)
    out.update(opening_stats(po))
    if target_landmarks is None:
        out["mouth_frames_skipped"] = int((~np.isfinite(po)).sum())
        for key in MOUTH_PAIR_KEYS:
            notes[key] = "no reference mouth (no target frames)"
        return
    scores = score_openings(po, mouth_opening(target_landmarks))
    for key in (*MOUTH_PAIR_KEYS, "mouth_frames_skipped", TRAJECTORY_KEY):
        out[key] = scores[key]
    notes.update(scores["notes"])


__all__ = ["ClipScorer", "FRAME_SCORE_KEYS", "METRIC_KEYS", "FACE_KEYS", "FULL_FRAME_KEYS", "MOUTH_PAIR_KEYS", "MOUTH_SELF_KEYS", "TRAJECTORY_KEY",
           "mouth_opening", "mouth_scores", "opening_stats", "PSNR_CAP_DB", "MEDIAPIPE_LIP_INDICES", "score_frames", "psnr", "ssim",
           "lpips_distance", "psnr_face", "ssim_face", "lpips_face", "lmd", "aue", "sync_scores",
           "compute_sync"]
