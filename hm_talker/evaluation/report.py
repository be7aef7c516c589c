"""The one report writer of every evaluation: metrics.json and metrics.md with the notes a reader
needs, and, for a checkpoint, summary.json (what `hm-talker compare` reads) and the same to W&B.

The notes say, per protocol, what the reference is and what the model was given, and, for every
run, how LMD, the mouth metrics and the SyncNet numbers are defined here, so that no number is
compared with a published one without knowing how it was made.
"""
from __future__ import annotations

import json
from pathlib import Path

from hm_talker.evaluation.paired import TRAJECTORY_FILE, save_trajectory
from hm_talker.metrics import FACE_KEYS, FULL_FRAME_KEYS, METRIC_KEYS, MOUTH_PAIR_KEYS, MOUTH_SELF_KEYS, TRAJECTORY_KEY

PROTOCOL_NOTES = {
    "self": (
        "self-driven: the held-out tail of the identity's video (the last 1/11) is rendered and "
        "compared with its real frames. Replayed from the held-out frames: the head pose (camera) "
        "and the background/torso outside the face mask, because inference replays those from a "
        "video too and they are not what lip sync is about. Nothing measured on their face reaches "
        "the model: the face is driven by the held-out audio only, taken as infer takes any sound "
        "(its own features, speaker statistics and calibration); the upper-face AUs (eyes, brows: model.upper_aus) "
        "take the AUs named by inputs.upper_aus (predicted: CMMM's, from the same sound). "
        "Reference for the mouth metrics: the real held-out mouth."),
    "self-measured": (
        "DIAGNOSTIC, NOT AUDIO-DRIVEN: the held-out frames rendered with the lower face driven by the AUs "
        "measured on those same frames (the answer), head pose, eyes and background replayed from them: what "
        "the renderer can draw when its AU input is right, an upper bound. Compare with the self protocol "
        "(audio only): the gap is what the audio does not predict; the rest, what the renderer cannot draw."),
    "cross-video": (
        "cross-driven with a reference video: the model is driven by the sound track of REF (any "
        "fps or sample rate; resampled to 16 kHz mono) with head pose, eyes and background replayed "
        "from its own training clip; REF's frames, resampled to 25 fps, give the reference mouth: a "
        "real speaker's mouth saying that audio. Image metrics do not apply (another person)."),
    "cross-audio": (
        "cross-driven by speech alone: no reference mouth, so only the generated mouth's opening "
        "mean / spread / jitter (and Sync with weights) apply."),
    "pair": "any two clips: PRED is scored against TARGET; TARGET's mouth is the reference.",
}

METHOD_NOTES = {
    "mouth_definition": (
        "opening = inner-lip gap (mediapipe points 13-14) / inter-ocular distance (33-263) per frame; "
        "mouth_r = Pearson r at lag 0; mouth_r_lo / mouth_r_hi = its 95 % interval (Fisher's z on "
        "the effective number of frames: neighbouring frames of a mouth are not independent); "
        "mouth_r_best / mouth_lag = best r within +-4 frames and its lag "
        "(positive = the generated mouth lags the reference); mouth_amp = std ratio and mouth_jitter = "
        "mean |second difference| ratio, generated over reference (1 = like the real mouth); frames "
        "without a face in either clip are skipped (mouth_frames_skipped); mouth_open_* describe the "
        "generated mouth alone, in inter-ocular units. Over a few hundred frames of unrelated speech "
        "mouth_r reaches about 0.2 by chance: judge it on long clips."),
    "lmd_definition": ("LMD = mean L2 distance in pixels of the frames between mediapipe's 40 lip points "
            "(outer and inner contour), each frame's set mean-centred (head translation removed)."),
    "image_definition": ("*_face = PSNR/SSIM/LPIPS inside the face region (mask / its box): the headline. "
                      "Full-frame values are inflated: every pixel outside the face mask is the real "
                      "frame composited back."),
    "seam_definition": (
        "seam = how much darker (luma levels, 0-255) the 3-px band on the edge of the region the head is "
        "rendered in is than the 3-px rings either side of it, minus the same in the real frame at the same "
        "pixels, averaged over frames (hm_talker/metrics/seam.py): a dark line along the jaw scores its "
        "depth times the share of the edge it covers; 0 = the edge looks like the real frame's."),
    "sync_definition": (
        "Sync-C/D differ from syncnet_python's pipeline in the crop: syncnet_python detects the face "
        "with S3FD in every frame, tracks it (tracks shorter than --min_track, 100 frames by default, "
        "are dropped), median-smooths the boxes, crops each box enlarged by --crop_scale 0.4 and "
        "re-encodes the crop video before SyncNet; here the frames themselves (HM-Talker's head crop "
        "from preprocessing, or the --pred frames as given) are resized to 224x224 with no detection, "
        "tracking, smoothing or margin (non-square frames are squashed). Numbers are comparable between "
        "our runs, not "
        "with published LSE-C/LSE-D without re-running syncnet_python's own pipeline."),
}

_SECTIONS = (
    ("face region (headline)", (*FACE_KEYS, "seam")),
    ("lip sync", (*MOUTH_PAIR_KEYS, "lmd", "sync_c", "sync_d", "av_offset")),
    ("expression", ("aue", "aue_lower", "aue_upper")),
    ("full frame (inflated by compositing)", FULL_FRAME_KEYS),
    ("generated mouth alone", (*MOUTH_SELF_KEYS, "mouth_frames_skipped", "num_frames")),
)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def with_notes(metrics: dict, protocol: str) -> dict:
    """``metrics`` with every key of :data:`METRIC_KEYS` present and the protocol / method notes added."""
    out = {k: metrics.get(k) for k in METRIC_KEYS}
    out.update({k: v for k, v in metrics.items() if k not in out})
    notes = dict(metrics.get("notes") or {})
    notes.setdefault("protocol", PROTOCOL_NOTES[protocol])
    for key, text in METHOD_NOTES.items():
        notes.setdefault(key, text)
    out["notes"] = notes
    return out


def write_report(metrics: dict, out_dir, inputs: dict) -> None:
    """``OUT/metrics.json`` (metrics, notes, inputs) and ``OUT/metrics.md`` (headline first); with a reference
    mouth, also ``OUT/mouth.npz``: the per-frame openings of the generated and the reference mouth (what
    ``hm-talker evaluate --paired`` compares two runs on)."""
    protocol = inputs.get("protocol", "pair")
    trajectory = metrics.pop(TRAJECTORY_KEY, None)
    metrics.update(with_notes(metrics, protocol))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if trajectory is not None:
        save_trajectory(out, trajectory, inputs)
    else:  # no reference mouth this time: an earlier run's trajectory in OUT must not be compared as this one's
        (out / TRAJECTORY_FILE).unlink(missing_ok=True)
    (out / "metrics.json").write_text(json.dumps({**metrics, "protocol": protocol, "inputs": inputs}, indent=2))
    lines = [f"# hm-talker evaluate: {protocol}", ""]
    shown = set()
    for title, keys in _SECTIONS:
        lines += ["", f"## {title}", "", "| metric | value |", "|---|---:|"]
        for k in keys:
            lines.append(f"| {k} | {_fmt(metrics.get(k))} |")
            shown.add(k)
    extra = [k for k, v in metrics.items() if k not in shown and k != "notes" and isinstance(v, (int, float))]
    if extra:
        lines += ["", "## other", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {_fmt(metrics[k])} |" for k in extra]
    lines += ["", "## notes", ""] + [f"- {k}: {v}" for k, v in metrics["notes"].items()]
    r = inputs.get("render")
    if r:
        lines.append(f"- render: {r['backend']} rasteriser on {r['device']}, alpha clamp {r['alpha_max']} "
                     f"(trained with {r['trained_backend']})")
    (out / "metrics.md").write_text("\n".join(lines) + "\n")


def write_evaluation(metrics: dict, out_dir, inputs: dict, model=None, ckpt=None) -> None:
    """metrics.json / .md and, for a model (its `config_dict`, `render_info`) loaded from `ckpt`,
    summary.json (for `hm-talker compare`) and the same numbers to a W&B run of their own."""
    from omegaconf import OmegaConf

    from hm_talker.config.loading import flat_dict

    if model is not None:  # which device, rasteriser backend and alpha clamp rendered the scored frames
        inputs = {**inputs, "render": getattr(model, "render_info", None)}
    write_report(metrics, out_dir, inputs)
    if model is None:
        return
    cfg = OmegaConf.create(model.config_dict)
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
    from hm_talker.tracking import run_settings, start_run

    run = start_run(run_settings(summary["name"], project, out, configured_mode, summary["group"],
                                 summary["tags"], summary["config"], job_type="evaluate"))
    run.log(summary["metrics"])
    run.summary.update({**summary["metrics"], "protocol": summary["protocol"]})
    run.finish()
