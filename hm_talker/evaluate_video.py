"""`hm-talker evaluate --ckpt CKPT --drive-video REF.mp4 --out OUT`: lip sync against a real mouth.

REF is a real video of someone speaking (any fps, any sample rate). Its sound track drives the
model (head pose, eyes and background are replayed from the model's own training clip, as in
`hm-talker infer`); its frames, resampled to 25 fps, give the reference mouth: a real speaker's
mouth saying that audio. The generated mouth is compared with it by the mouth-motion metrics of
:mod:`hm_talker.metrics.mouth`; image metrics do not apply (another person, another scene).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hm_talker.errors import InputError


def reference_video(ref_path, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(sound at ``sample_rate``, face-mesh landmarks ``[T, 478, 3]`` at 25 fps) of REF.

    One-line :class:`InputError` when REF has no sound track or no face in any frame.
    """
    from hm_talker.evaluate import video_landmarks
    from hm_talker.preprocess.media import audio_from_video, probe_video

    if not probe_video(ref_path).has_audio:
        raise InputError(ref_path, "has no sound track: --drive-video needs a video of someone speaking, with sound")
    audio = audio_from_video(ref_path, sample_rate)
    landmarks = video_landmarks(ref_path)
    if np.isnan(landmarks[:, 0, 0]).all():
        raise InputError(ref_path, "no face found in any frame: the reference mouth cannot be measured")
    return audio, landmarks


def drive_video_metrics(module, root: Path, manifest: dict, ref_path, out_dir, syncnet_weights=None,
                        ckpt=None) -> dict:
    """Drive an already loaded model with REF's sound (OUT/driven.mp4) and score its mouth against REF's."""
    import soundfile as sf

    from hm_talker.clip_frames import open_clip
    from hm_talker.evaluate_ckpt import generated_only_metrics
    from hm_talker.inference import drive
    from hm_talker.metrics.mouth import mouth_opening, mouth_scores

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr = manifest["sample_rate"]
    audio, ref_landmarks = reference_video(ref_path, sr)
    wav = out / "drive_audio.wav"
    sf.write(str(wav), audio, sr, subtype="FLOAT")
    report = drive(module, root, manifest, wav, out / "driven.mp4", ckpt=ckpt)
    metrics, pred_landmarks = generated_only_metrics(  # the driven video, read back chunk by chunk
        open_clip(out / "driven.mp4"), report["frames"], audio, sr, syncnet_weights,
        "another person's video is the reference: only the mouth metrics and Sync apply")
    pred_open = mouth_opening(pred_landmarks)
    ref_open = mouth_opening(ref_landmarks)
    n = min(len(pred_open), len(ref_open))
    scores = mouth_scores(pred_open[:n], ref_open[:n])
    notes = metrics["notes"]
    for key in ("mouth_r", "mouth_r_best", "mouth_lag", "mouth_amp", "mouth_jitter"):
        metrics[key] = scores[key]
        notes.pop(key, None)
    notes.update(scores["notes"])
    metrics["mouth_frames_skipped"] = int(n - scores["mouth_frames"])
    metrics["reference_frames"] = int(len(ref_open))
    metrics["driven"] = report  # the driven video: path, frames, render frames/s
    if len(ref_open) != len(pred_open):
        notes["reference_frames"] = (f"REF has {len(ref_open)} frames at 25 fps, its sound drove "
                                     f"{len(pred_open)}: the first {n} are compared")
    return metrics


def evaluate_drive_video(ckpt, ref_path, out_dir, syncnet_weights=None, device: str = "auto") -> dict:
    """`--ckpt --drive-video`: load the checkpoint, score it (see the module docstring), write the report."""
    from hm_talker.evaluate_ckpt import _finish
    from hm_talker.inference import load_module

    module, root, manifest = load_module(ckpt, device=device)
    metrics = drive_video_metrics(module, root, manifest, ref_path, out_dir, syncnet_weights, ckpt)
    _finish(metrics, module, ckpt, out_dir, {"ckpt": str(ckpt), "drive_video": str(ref_path),
                                             "protocol": "cross-video"})
    return metrics
