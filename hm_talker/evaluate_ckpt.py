"""`hm-talker evaluate --ckpt CKPT (--data DIR | --drive-video REF.mp4 | --audio SPEECH) --out OUT`.

Self-driven (--data): render the identity's held-out frames from their own audio and poses and
score them against the real frames (all metrics; the real held-out mouth is the lip-sync
reference). Cross-driven with a reference video (--drive-video, :mod:`hm_talker.evaluate_video`):
drive the model with another real video's sound and compare the generated mouth with that video's
real mouth. Cross-driven by speech alone (--audio): no reference, so only Sync (with weights) and
the generated mouth's motion statistics apply (the rest are null, with notes). All write
OUT/metrics.json, OUT/metrics.md and OUT/summary.json, and log the same to W&B.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hm_talker.clip_frames import CHUNK_FRAMES, open_clip
from hm_talker.constants import LOWER_AU_IDX
from hm_talker.evaluate import face_geometry, write_report
from hm_talker.metrics import METRIC_KEYS, MOUTH_PAIR_KEYS, ClipScorer
from hm_talker.metrics.mouth import mouth_opening, opening_stats
from hm_talker.metrics.sync import SyncStream

IMAGE_KEYS = ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face", "lmd", "aue", "aue_lower",
              "aue_upper")


def _to_uint8(t):  # [B, 3, H, W] in [0, 1] -> [B, H, W, 3] uint8 (on the host)
    return (t.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def audio_only_batch(batch: dict) -> dict:
    """The batch with the lower-face AUs zeroed: measurements of the real mouth never reach the model."""
    aus = batch["aus"].clone()
    aus[:, LOWER_AU_IDX] = 0.0
    return {**batch, "aus": aus}


def held_out_batches(module, root: Path):
    """Yield (pred, target, face masks, frame indices) per batch of held-out frames, in frame order.

    The model sees the held-out frames' pose, upper-face AUs and background, their audio window,
    and no lower-face measurement (:func:`audio_only_batch`).
    """
    import torch

    from datamodules import TalkingHeadDataModule

    dm = TalkingHeadDataModule(str(root), num_workers=0, val_batch_size=8, window=module.cfg.data.window)
    dm.setup("validate")
    with torch.no_grad():
        for batch in dm.val_dataloader():
            batch = audio_only_batch({k: v.to(module.device) for k, v in batch.items()})
            yield (_to_uint8(module.render(batch, module.deform(batch))["rgb"]), _to_uint8(batch["image"]),
                   batch["masks"][:, 0].cpu().numpy() > 0.5, batch["frame"].cpu().numpy())


def self_driven_metrics(module, root: Path, manifest: dict, syncnet_weights=None) -> dict:
    """All metrics of the held-out frames rendered by an already loaded model (see the module doc),
    scored batch by batch as they are rendered: only per-frame landmarks and values are kept."""
    import soundfile as sf

    from hm_talker.preprocess.landmarks import LandmarkTrack

    has_audio = (root / "audio.wav").is_file()
    scorer = ClipScorer(True, has_audio, syncnet_weights)
    first = last = None
    with LandmarkTrack() as track_t, LandmarkTrack() as track_p:
        for pred, target, masks, frames in held_out_batches(module, root):
            scorer.update(pred, target, masks)
            track_t.update(target)
            track_p.update(pred)
            first, last = frames[0] if first is None else first, frames[-1]
        geo = face_geometry(track_t.landmarks(), track_p.landmarks(), scorer.size)
    audio = None
    if has_audio:
        per = manifest["sample_rate"] // manifest["fps"]
        wav, _ = sf.read(root / "audio.wav", dtype="float32")
        audio = wav[first * per:(last + 1) * per]
    metrics = scorer.result(audio=audio, **geo.score_kwargs())
    if geo.note:
        metrics.setdefault("notes", {})["landmarks"] = geo.note
    if audio is None:
        metrics.setdefault("notes", {})["sync_c"] = "the identity has no audio.wav (preprocessed by an older version)"
    return metrics


def evaluate_self(ckpt, data, out_dir, syncnet_weights=None, device: str = "auto") -> dict:
    from hm_talker.inference import load_module

    module, root, manifest = load_module(ckpt, data, device)
    metrics = self_driven_metrics(module, root, manifest, syncnet_weights)
    _finish(metrics, module, ckpt, out_dir, {"ckpt": str(ckpt), "data": str(root), "protocol": "self"})
    return metrics


def generated_only_metrics(clip, num_frames: int, audio, sample_rate: int, syncnet_weights=None,
                           why: str = "", chunk: int = CHUNK_FRAMES) -> tuple[dict, np.ndarray]:
    """Metrics of a driven clip with no reference: Sync (with weights) and the mouth's own motion.

    ``clip``: the driven video (:func:`hm_talker.clip_frames.open_clip`), read ``chunk`` frames at a
    time up to ``num_frames``. Returns the metrics and the frames' face-mesh points ``[T, 478, 3]``.
    """
    from hm_talker.preprocess.landmarks import LandmarkTrack

    metrics = {k: None for k in METRIC_KEYS}
    notes = {k: why for k in (*IMAGE_KEYS, *MOUTH_PAIR_KEYS)}
    stream = SyncStream(syncnet_weights)
    with LandmarkTrack() as track:
        for frames in clip.chunks(chunk, num_frames):
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


def evaluate_cross(ckpt, audio_path, out_dir, syncnet_weights=None, device: str = "auto") -> dict:
    """`--ckpt --audio`: drive with other speech; no reference mouth (see the module docstring).

    The driven video streams to OUT/driven.mp4 as it renders and is scored from there chunk by chunk."""
    from hm_talker.inference import drive, load_module
    from hm_talker.preprocess.media import load_audio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module, root, manifest = load_module(ckpt, device=device)
    report = drive(module, root, manifest, audio_path, out / "driven.mp4", ckpt=ckpt)
    metrics, _ = generated_only_metrics(
        open_clip(out / "driven.mp4"), report["frames"], load_audio(audio_path, 16000), 16000, syncnet_weights,
        "no ground truth frames in the cross-driven protocol (give --drive-video for a reference mouth)")
    _finish(metrics, module, ckpt, out, {"ckpt": str(ckpt), "audio": str(audio_path), "protocol": "cross-audio"})
    return metrics


def _finish(metrics: dict, module, ckpt, out_dir, inputs: dict) -> None:
    """metrics.json / .md, summary.json (for `hm-talker compare`) and the same to W&B."""
    from hm_talker.training.fit import flat_dict

    from omegaconf import OmegaConf

    # which device, rasteriser backend and alpha clamp rendered the scored frames (inference.load_module)
    inputs = {**inputs, "render": getattr(module, "render_info", None)}
    write_report(metrics, out_dir, inputs)
    cfg = OmegaConf.create(module.config_dict)
    run = cfg.get("run", {})
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    summary = {"name": f"{run.get('name') or Path(ckpt).parents[1].name}-{inputs['protocol']}",
               "group": run.get("group", ""), "protocol": inputs["protocol"], "seed": cfg.get("seed", 0),
               "tags": list(run.get("tags", [])) + [f"eval-{inputs['protocol']}"],
               "config": flat_dict(cfg), "metrics": numbers}
    out = Path(out_dir)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _log_wandb(summary, out, run.get("project", "hm-talker"), run.get("wandb_mode", "auto"))


def _log_wandb(summary: dict, out: Path, project: str, configured_mode: str) -> None:
    import wandb

    from hm_talker.training.fit import wandb_mode

    mode = wandb_mode(configured_mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=project, name=summary["name"], group=summary["group"] or None,
                     tags=summary["tags"], config=summary["config"], dir=str(out), mode=mode,
                     job_type="evaluate", reinit="finish_previous")
    run.log(summary["metrics"])
    run.summary.update({**summary["metrics"], "protocol": summary["protocol"]})
    run.finish()
