"""`hm-talker evaluate --ckpt CKPT (--data DIR | --audio SPEECH) --out OUT`.

Self-driven (--data): render the identity's held-out frames from their own audio and poses and
score them against the real frames (all metrics). Cross-driven (--audio): drive the model with other
speech; with no ground truth only sync and motion statistics apply (the rest are null, with notes).
Both write OUT/metrics.json, OUT/metrics.md and OUT/summary.json, and log the same to W&B.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hm_talker.constants import LM, MOUTH_LANDMARKS
from hm_talker.evaluate import face_geometry, write_report
from hm_talker.metrics import METRIC_KEYS, score_frames
from hm_talker.metrics.sync import compute_sync


def _to_uint8(t):  # [B, 3, H, W] in [0, 1] -> [B, H, W, 3] uint8
    return (t.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def render_held_out(module, root: Path):
    """(pred, target, face masks) of the held-out frames, in frame order."""
    import torch

    from datamodules import TalkingHeadDataModule

    dm = TalkingHeadDataModule(str(root), num_workers=0, val_batch_size=8, window=module.cfg.data.window)
    dm.setup("validate")
    preds, targets, masks, frames = [], [], [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            preds.append(_to_uint8(module.render(batch, module.deform(batch))["rgb"]))
            targets.append(_to_uint8(batch["image"]))
            masks.append(batch["masks"][:, 0].numpy() > 0.5)
            frames.append(batch["frame"].numpy())
    return np.concatenate(preds), np.concatenate(targets), np.concatenate(masks), np.concatenate(frames)


def evaluate_self(ckpt, data, out_dir, syncnet_weights=None) -> dict:
    import soundfile as sf

    from hm_talker.inference import load_module

    module, root, manifest = load_module(ckpt, data)
    pred, target, masks, frames = render_held_out(module, root)
    lt, lp, _, aus_t, aus_p, note = face_geometry(target, pred)
    audio = None
    if (root / "audio.wav").is_file():
        per = manifest["sample_rate"] // manifest["fps"]
        wav, _ = sf.read(root / "audio.wav", dtype="float32")
        audio = wav[frames[0] * per:(frames[-1] + 1) * per]
    metrics = score_frames(pred, target, face_masks=masks,
                           pred_mouth_landmarks=None if lp is None else lp[:, MOUTH_LANDMARKS, :2],
                           target_mouth_landmarks=None if lt is None else lt[:, MOUTH_LANDMARKS, :2],
                           pred_aus=aus_p, target_aus=aus_t, audio=audio, syncnet_weights=syncnet_weights)
    if note:
        metrics.setdefault("notes", {})["landmarks"] = note
    if audio is None:
        metrics.setdefault("notes", {})["sync_c"] = "the identity has no audio.wav (preprocessed by an older version)"
    _finish(metrics, module, ckpt, out_dir, {"ckpt": str(ckpt), "data": str(root), "protocol": "self"})
    return metrics


def evaluate_cross(ckpt, audio_path, out_dir, syncnet_weights=None) -> dict:
    from hm_talker.evaluate import load_frames
    from hm_talker.inference import drive, load_module
    from hm_talker.preprocess.landmarks import detect_landmarks
    from hm_talker.preprocess.media import load_audio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module, root, manifest = load_module(ckpt)
    report = drive(module, root, manifest, audio_path, out / "driven.mp4", ckpt=ckpt)
    frames = load_frames(out / "driven.mp4")
    audio = load_audio(audio_path, 16000)
    metrics = {k: None for k in METRIC_KEYS}
    notes = {k: "no ground truth frames in the cross-driven protocol"
             for k in ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face", "lmd", "aue",
                       "aue_lower", "aue_upper")}
    sync = compute_sync(frames, audio, 16000, syncnet_weights)
    for k in ("sync_c", "sync_d", "av_offset"):
        metrics[k] = sync[k]
        if sync["note"]:
            notes[k] = sync["note"]
    lms = detect_landmarks(frames)
    gap = np.linalg.norm(lms[:, LM["lip_low_inner"], :2] - lms[:, LM["lip_up_inner"], :2], axis=1)
    found = np.isfinite(gap)
    metrics["mouth_open_mean"] = float(gap[found].mean()) if found.any() else None
    metrics["mouth_open_std"] = float(gap[found].std()) if found.any() else None
    metrics["num_frames"] = int(report["frames"])
    metrics["notes"] = notes
    _finish(metrics, module, ckpt, out, {"ckpt": str(ckpt), "audio": str(audio_path), "protocol": "cross"})
    return metrics


def _finish(metrics: dict, module, ckpt, out_dir, inputs: dict) -> None:
    """metrics.json / .md, summary.json (for `hm-talker compare`) and the same to W&B."""
    from hm_talker.training.fit import flat_dict

    from omegaconf import OmegaConf

    write_report(metrics, out_dir, inputs)
    cfg = OmegaConf.create(module.config_dict)
    run = cfg.get("run", {})
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    summary = {"name": f"{run.get('name') or Path(ckpt).parents[1].name}-{inputs['protocol']}",
               "group": run.get("group", ""), "seed": cfg.get("seed", 0),
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
    run.summary.update(summary["metrics"])
    run.finish()
