"""The evaluation protocols, each driving + scoring for a loaded model (or two clips):

- self-driven (`self_driven`): the identity's held-out frames rendered from their own audio and poses,
  scored against the real frames by every metric; the real held-out mouth is the lip-sync reference;
- cross-driven by a reference video (`cross_video`): another real video's sound drives the model and the
  generated mouth is compared with that video's real mouth (image metrics do not apply);
- cross-driven by speech alone (`cross_audio`): no reference, so only Sync (with weights) and the
  generated mouth's motion statistics apply;
- any two clips (`pair`): every metric of PRED against TARGET.

The driven videos are written to OUT/driven.mp4 as they render and scored from there a chunk at a time.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hm_talker.constants import UPPER_AU_SOURCES
from hm_talker.data.clips import CHUNK_FRAMES, open_clip
from hm_talker.errors import InputError
from hm_talker.evaluation.scoring import (clip_landmarks, face_geometry, score_against_frames, score_generated,
                                          score_mouth_against, video_landmarks)

SELF_BATCH = 8  # held-out frames rendered at once in the self-driven protocol
UPPER_AUS_NOTE = (  # why the self-driven protocol does not give the scored frames their own eyes and brows
    "the eye and brow AUs measured on a frame carry its mouth (on a synthetic talker whose brows never move, "
    "AU01 and AU04 correlate -0.54 and 0.50 with its opening: the fitted pose tilts with the jaw), and the "
    "landmark tracker reads rendered brows into the lip gap, so a deaf model given the scored frames' eyes "
    "and brows follows their mouth (r 0.22, chance 0.09)")
LENGTH_TOLERANCE_S = 0.5  # a reference whose picture and sound differ by more is warned about (and noted)
log = logging.getLogger("hm_talker")


def self_driven(model, root: Path, manifest: dict, syncnet_weights=None, measured_lower_face: bool = False,
                upper_aus: str = "predicted") -> dict:
    """All metrics of the identity's held-out frames rendered by a loaded model, scored batch by batch
    as they are rendered (the model sees their pose and background, nothing measured on their face).

    upper_aus: where the eye and brow AUs come from: `predicted` (CMMM's, from the held-out sound: the
    default), `constant` (the identity's mean) or `frames` (the scored frames' own: they carry the mouth,
    `UPPER_AUS_NOTE`; a comparison with the field's protocol, noted in the report).
    measured_lower_face: the diagnostic protocol `self-measured` (NOT audio-driven): the AUs measured on
    the held-out frames drive the face, so the score is the renderer's upper bound; the gap to the
    audio-driven score is what the audio does not predict."""
    from hm_talker.driving.render import render_held_out
    from hm_talker.driving.speech import held_out_speech, sound_of_frames

    if upper_aus not in UPPER_AU_SOURCES:
        raise InputError(None, f"upper AUs must be one of {', '.join(UPPER_AU_SOURCES)}, not {upper_aus!r}")

    has_audio = (root / "audio.wav").is_file()

    def audio_for(first: int, last: int) -> np.ndarray:  # the held-out frames' own sound
        return sound_of_frames(root, manifest["fps"], first, last)

    windows, speaker, offset = held_out_speech(model, root, manifest)
    chunks = render_held_out(model, root, manifest, windows, SELF_BATCH, measured_lower_face, speaker, offset,
                             upper_aus)
    metrics = score_against_frames(chunks, has_audio, syncnet_weights, audio_for if has_audio else None)
    if upper_aus == "frames" and not measured_lower_face:
        metrics.setdefault("notes", {})["upper_aus"] = (
            "NOT a clean lip-sync score: the eyes and brows were the scored frames' own, and " + UPPER_AUS_NOTE)
    if not has_audio:
        metrics.setdefault("notes", {})["sync_c"] = "the identity has no audio.wav (preprocessed by an older version)"
    return metrics


@dataclass
class Reference:
    """A real video of someone speaking, as a lip-sync reference: its sound drives a model, its mouth is
    what the generated mouth is compared with."""

    path: Path
    audio: np.ndarray  # [S] float32 mono at the identity's sample rate
    landmarks: np.ndarray  # [T, 478, 3] face mesh at 25 fps, NaN without a face
    note: str | None = None  # its picture and sound differ in length: what is scored
    lag: int = 0  # its sound's offset against its own mouth when clear (+k: k frames late; reference_offset)
    lag_note: str | None = None  # what that offset is and how the scoring takes it

    @property
    def name(self) -> str:  # for file names and metric keys: letters, digits, '.', '_' and '-' only
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.path.stem) or "reference"


def reference_video(ref_path, sample_rate: int, seconds: float | None = None) -> Reference:
    """A reference video's sound at ``sample_rate`` and face mesh at 25 fps (its first ``seconds`` only,
    when given). One-line :class:`InputError` when it is unreadable, has no sound track or no face."""
    from hm_talker.data.clips import EVAL_FPS
    from hm_talker.preprocess.media import audio_from_video, probe_video

    ref_path = Path(ref_path)
    info = probe_video(ref_path)
    if not info.has_audio:
        raise InputError(ref_path, "has no sound track: --drive-video needs a video of someone speaking, with sound")
    audio = audio_from_video(ref_path, sample_rate)
    note = None
    picture_s, sound_s = info.duration, len(audio) / sample_rate
    if abs(picture_s - sound_s) > LENGTH_TOLERANCE_S:  # the driven clip is as long as the sound: say what is scored
        scored = min(picture_s, sound_s) if seconds is None else min(picture_s, sound_s, seconds)
        note = (f"picture {picture_s:.2f} s, sound {sound_s:.2f} s: the mouth is scored over the first "
                f"{scored:.2f} s only")
        log.warning("%s: %s", ref_path, note)
    if seconds is None:
        landmarks = video_landmarks(ref_path)
    else:
        clip = open_clip(ref_path)
        landmarks = clip_landmarks(clip, min(clip.num_frames, max(1, round(seconds * EVAL_FPS))))
        audio = audio[:round(seconds * sample_rate)]
    if np.isnan(landmarks[:, 0, 0]).all():
        raise InputError(ref_path, "no face found in any frame: the reference mouth cannot be measured")
    ref = Reference(ref_path, audio, landmarks, note)
    ref.lag, ref.lag_note = reference_offset(ref, sample_rate)
    return ref


def shift_frames(landmarks: np.ndarray, lag: int) -> np.ndarray:  # [T, ...] -> [T, ...]
    """Frame j <- frame j - lag (NaN where there is none): the reference mouth that goes with sound j when its
    sound is `lag` frames late."""
    if lag == 0:
        return landmarks
    out = np.full_like(landmarks, np.nan)
    if lag > 0:
        out[lag:] = landmarks[:len(landmarks) - lag]
    else:
        out[:lag] = landmarks[-lag:]
    return out


def reference_offset(ref: Reference, sample_rate: int) -> tuple[int, str | None]:
    """(lag, note): the reference's own sound/mouth offset when it is clear by preprocessing's rules
    (hm_talker/preprocess/av_offset.py), else (0, None). The driven mouth is then scored against the
    reference's mouth moved by that lag (sync-corrected, as preprocessing corrects an identity's clips)."""
    from hm_talker.data.clips import EVAL_FPS
    from hm_talker.preprocess.av_offset import measure
    from hm_talker.preprocess.config import PreprocessConfig

    cfg = PreprocessConfig(fps=EVAL_FPS, sample_rate=sample_rate)  # av_offset auto, its default rules
    n = min(len(ref.landmarks), int(len(ref.audio) * EVAL_FPS // sample_rate))
    off = measure(ref.landmarks[:n], ref.audio, cfg)
    lag = off.applied
    if not lag:
        return 0, None
    r0, rb = off.r_zero, off.r_best
    note = (f"the reference's sound is {abs(lag)} frames ({1000 * abs(lag) // EVAL_FPS} ms) "
            f"{'later' if lag > 0 else 'earlier'} than its own mouth (mouth/loudness r {r0:.2f} at lag 0, "
            f"{rb:.2f} at {lag:+d}): the driven mouth is scored against the reference's mouth moved by "
            f"{lag:+d} frames, in step with the sound that drove it")
    log.warning("%s: %s", ref.path, note)
    return lag, note


def cross_video(model, root: Path, manifest: dict, ref_path, out_dir, syncnet_weights=None, ckpt=None) -> dict:
    """Drive a loaded model with REF's sound (OUT/driven.mp4) and score its mouth against REF's mouth."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = reference_video(ref_path, manifest["sample_rate"])
    return cross_reference(model, root, manifest, ref, out / "driven.mp4", syncnet_weights, ckpt)


def cross_reference(model, root: Path, manifest: dict, ref: Reference, video, syncnet_weights=None, ckpt=None,
                    silent: bool = False) -> dict:
    """Drive the model with a reference's sound into `video` (mp4) and score the generated mouth, read back
    from it chunk by chunk, against the reference's mouth. `silent`: every audio input at its mean (a deaf control)."""
    from hm_talker.driving.render import drive

    sr = manifest["sample_rate"]
    report = drive(model, root, manifest, ref.audio, video, ckpt=ckpt, silent=silent)
    metrics, pred_landmarks = score_generated(
        open_clip(video).chunks(CHUNK_FRAMES, report["frames"]), ref.audio, sr, syncnet_weights,
        "another person's video is the reference: only the mouth metrics and Sync apply")
    score_mouth_against(metrics, pred_landmarks, shift_frames(ref.landmarks, ref.lag))
    if ref.note:
        metrics.setdefault("notes", {})["reference_length"] = ref.note
    if ref.lag_note:
        metrics.setdefault("notes", {})["reference_av_offset"] = ref.lag_note
    metrics["driven"] = report  # the driven video: path, frames, render frames/s
    return metrics


def cross_audio(model, root: Path, manifest: dict, audio_path, out_dir, syncnet_weights=None, ckpt=None) -> dict:
    """Drive a loaded model with other speech (OUT/driven.mp4); no reference mouth (see the module doc)."""
    from hm_talker.driving.render import drive
    from hm_talker.driving.speech import load_speech
    from hm_talker.preprocess.media import load_audio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = drive(model, root, manifest, load_speech(audio_path, manifest), out / "driven.mp4", ckpt=ckpt)
    metrics, _ = score_generated(
        open_clip(out / "driven.mp4").chunks(CHUNK_FRAMES, report["frames"]), load_audio(audio_path, 16000), 16000,
        syncnet_weights, "no ground truth frames in the cross-driven protocol (give --drive-video for a reference mouth)")
    return metrics


def pair(pred_path, target_path, syncnet_weights=None, chunk: int = CHUNK_FRAMES) -> dict:
    """Every metric of two clips, reading both ``chunk`` frames at a time (twice: the landmarks first, for
    the face masks and AU calibration, then the image metrics)."""
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
    return metrics
