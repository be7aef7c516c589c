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

from hm_talker.constants import LOWER_AU_IDX
from hm_talker.evaluate import face_geometry, write_report
from hm_talker.metrics import METRIC_KEYS, MOUTH_PAIR_KEYS, score_frames
from hm_talker.metrics.mouth import mouth_opening, opening_stats
from hm_talker.metrics.sync import compute_sync

IMAGE_KEYS = ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face", "lmd", "aue", "aue_lower",
              "aue_upper")


def _to_uint8(t):  # [B, 3, H, W] in [0, 1] -> [B, H, W, 3] uint8 (on the host)
    return (t.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def audio_only_batch(batch: dict) -> dict:
    """The batch with the lower-face AUs zeroed: measurements of the real mouth never reach the model."""
    aus = batch["aus"].clone()
    aus[:, LOWER_AU_IDX] = 0.0
    return {**batch, "aus": aus}


def render_held_out(module, root: Path):
    """(pred, target, face masks, frame indices) of the held-out frames, in frame order.

    The model sees the held-out frames' pose, upper-face AUs and background, their audio window,
    and no lower-face measurement (:func:`audio_only_batch`).
    """
    import torch

    from datamodules import TalkingHeadDataModule

    dm = TalkingHeadDataModule(str(root), num_workers=0, val_batch_size=8, window=module.cfg.data.window)
    dm.setup("validate")
    preds, targets, masks, frames = [], [], [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            batch = audio_only_batch({k: v.to(module.device) for k, v in batch.items()})
            preds.append(_to_uint8(module.render(batch, module.deform(batch))["rgb"]))
            targets.append(_to_uint8(batch["image"]))
            masks.append(batch["masks"][:, 0].cpu().numpy() > 0.5)
            frames.append(batch["frame"].cpu().numpy())
    return np.concatenate(preds), np.concatenate(targets), np.concatenate(masks), np.concatenate(frames)


def self_driven_metrics(module, root: Path, manifest: dict, syncnet_weights=None) -> dict:
    """All metrics of the held-out frames rendered by an already loaded model (see the module doc)."""
    import soundfile as sf

    pred, target, masks, frames = render_held_out(module, root)
    geo = face_geometry(target, pred)
    audio = None
    if (root / "audio.wav").is_file():
        per = manifest["sample_rate"] // manifest["fps"]
        wav, _ = sf.read(root / "audio.wav", dtype="float32")
        audio = wav[frames[0] * per:(frames[-1] + 1) * per]
    metrics = score_frames(pred, target, face_masks=masks, audio=audio, syncnet_weights=syncnet_weights,
                           **geo.score_kwargs())
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


def generated_only_metrics(frames: np.ndarray, audio, sample_rate: int, syncnet_weights=None,
                           why: str = "", landmarks=None) -> dict:
    """Metrics of a driven clip with no reference: Sync (with weights) and the mouth's own motion.

    ``landmarks``: the frames' face-mesh points ``[T, 478, 3]`` if already detected.
    """
    from hm_talker.preprocess.landmarks import detect_landmarks

    metrics = {k: None for k in METRIC_KEYS}
    notes = {k: why for k in (*IMAGE_KEYS, *MOUTH_PAIR_KEYS)}
    sync = compute_sync(frames, audio, sample_rate, syncnet_weights)
    for k in ("sync_c", "sync_d", "av_offset"):
        metrics[k] = sync[k]
        if sync["note"]:
            notes[k] = sync["note"]
    opening = mouth_opening(detect_landmarks(frames) if landmarks is None else landmarks)
    metrics.update(opening_stats(opening))
    metrics["mouth_frames_skipped"] = int((~np.isfinite(opening)).sum())
    metrics["num_frames"] = int(len(frames))
    metrics["notes"] = notes
    return metrics


def evaluate_cross(ckpt, audio_path, out_dir, syncnet_weights=None, device: str = "auto") -> dict:
    """`--ckpt --audio`: drive with other speech; no reference mouth (see the module docstring)."""
    from hm_talker.evaluate import load_frames
    from hm_talker.inference import drive, load_module
    from hm_talker.preprocess.media import load_audio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module, root, manifest = load_module(ckpt, device=device)
    report = drive(module, root, manifest, audio_path, out / "driven.mp4", ckpt=ckpt)
    frames = load_frames(out / "driven.mp4")[:report["frames"]]
    metrics = generated_only_metrics(frames, load_audio(audio_path, 16000), 16000, syncnet_weights,
                                     "no ground truth frames in the cross-driven protocol (give --drive-video "
                                     "for a reference mouth)")
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
