"""Lip sync where the researcher looks: the scores every validation of a fit logs (`val/...`), made by the
same protocols as `hm-talker evaluate`, so a run's W&B page and summary.json show the numbers evaluate
would give for the checkpoint of that step.

- self-driven (always, with eval.lip_sync): the held-out frames driven by their own audio only ->
  val/mouth_r (with its 95 % interval val/mouth_r_lo / val/mouth_r_hi), val/mouth_amp, val/mouth_jitter,
  val/lmd, val/psnr_face, val/lpips_face, val/seam;
- cross-driven (eval.drive_video: a real video of another person speaking, or a list): its sound drives
  the model and its real mouth is the reference -> val/cross_mouth_r, val/cross_mouth_amp,
  val/cross_mouth_jitter (the mean over the references; per reference val/cross/<name>/..., mouth_r's
  interval among them); with eval.deaf_control the same weights with every audio input silenced ->
  val/cross_*_deaf, the chance level of that reference, and per reference val/cross/<name>/mouth_r_gain
  (mouth_r over the deaf one's on the same frames) with its paired 95 % interval mouth_r_gain_lo / _hi
  (hm_talker/metrics/mouth_paired.py): a lower bound above 0 says this checkpoint's mouth follows that speech
  beyond its deaf control, at 95 %.

Each validation also keeps its mouths in OUT_DIR (RUN_DIR/val/): step_<step>_self.mouth.npz and
step_<step>_cross-<reference>.mouth.npz, the per-frame generated and reference openings (`hm-talker evaluate`'s
mouth.npz format), so `hm-talker compare --baseline GROUP` can pair two runs' final validations on one reference.
"""
from __future__ import annotations

import math
from pathlib import Path

INTERVAL_KEYS = ("mouth_r_lo", "mouth_r_hi")  # mouth_r's 95 % interval: per reference only (a mean of bounds is none)
GAIN_KEYS = ("mouth_r_gain", "mouth_r_gain_lo", "mouth_r_gain_hi")  # mouth_r - deaf mouth_r, paired interval: per reference
SELF_KEYS = ("mouth_r", *INTERVAL_KEYS, "mouth_amp", "mouth_jitter", "lmd", "psnr_face", "lpips_face", "seam")
CROSS_KEYS = ("mouth_r", "mouth_amp", "mouth_jitter")


def drive_videos(value) -> list[str]:
    """eval.drive_video as a list of paths (None / "" -> none)."""
    if value is None or value == "":
        return []
    return [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]


def load_references(eval_cfg, sample_rate: int) -> list:
    """The references of eval.drive_video, each at most eval.cross_seconds long: sound and face mesh,
    computed once per run. A reference without sound or face, or unreadable, is one InputError."""
    from hm_talker.evaluation.protocols import reference_video

    seconds = eval_cfg.cross_seconds if eval_cfg.cross_seconds > 0 else None
    return [reference_video(p, sample_rate, seconds) for p in drive_videos(eval_cfg.drive_video)]


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else math.nan


TRAJECTORY_SUFFIX = ".mouth.npz"  # a validation's mouth trajectory beside its videos in RUN_DIR/val/


def trajectory_name(step: int, reference: str | None = None) -> str:
    """File name of a validation's mouth trajectory: step_<step>_self.mouth.npz or ..._cross-<reference>.mouth.npz."""
    return f"step_{step:06d}_{'self' if reference is None else 'cross-' + reference}{TRAJECTORY_SUFFIX}"


def _keep_trajectory(metrics: dict, out_dir: Path, step: int, reference=None) -> dict | None:
    """Save metrics' mouth trajectory (if any) as trajectory_name(step, reference.name) and return it."""
    from hm_talker.evaluation.paired import save_trajectory
    from hm_talker.metrics.mouth import TRAJECTORY_KEY

    mouth = metrics.get(TRAJECTORY_KEY)
    name = trajectory_name(step, None if reference is None else reference.name)
    if mouth is None:
        (Path(out_dir) / name).unlink(missing_ok=True)  # a resumed run's earlier file is not this step's
        return None
    inputs = {"protocol": "validation", "step": step,
              "reference": "held-out frames" if reference is None else str(reference.path)}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    save_trajectory(Path(out_dir), mouth, inputs, name)
    return mouth


def validation_scores(model, root: Path, manifest: dict, references: list, out_dir: Path, step: int,
                      deaf_control: bool = False) -> dict[str, float]:
    """The val/... scores of the model as it is now (NaN where a metric does not apply); the driven
    videos go to OUT_DIR/step_<step>_cross-<reference>.mp4, the mouths to trajectory_name(step, ...)."""
    from hm_talker.evaluation.protocols import cross_reference, self_driven
    from hm_talker.metrics.mouth import TRAJECTORY_KEY
    from hm_talker.metrics.mouth_paired import paired_difference

    out = {}
    m = self_driven(model, root, manifest)
    _keep_trajectory(m, out_dir, step)
    out.update({f"val/{k}": _number(m.get(k)) for k in SELF_KEYS})
    cross: dict[str, list[float]] = {}
    for ref in references:
        runs = [("", False)] + ([("_deaf", True)] if deaf_control else [])
        mouths = {}
        for suffix, silent in runs:
            video = Path(out_dir) / f"step_{step:06d}_cross-{ref.name}{suffix.replace('_', '-')}.mp4"
            c = cross_reference(model, root, manifest, ref, video, silent=silent)
            mouths[suffix] = _keep_trajectory(c, out_dir, step, ref) if not silent else c.get(TRAJECTORY_KEY)
            for k in (*CROSS_KEYS, *INTERVAL_KEYS):
                out[f"val/cross/{ref.name}/{k}{suffix}"] = _number(c.get(k))
            for k in CROSS_KEYS:
                cross.setdefault(f"val/cross_{k}{suffix}", []).append(_number(c.get(k)))
        if deaf_control:
            live, deaf = mouths[""], mouths["_deaf"]
            gain = ({} if live is None or deaf is None else
                    paired_difference(live["reference"], deaf["generated"], live["generated"]))
            for key, name in zip(GAIN_KEYS, ("mouth_r_diff", "mouth_r_diff_lo", "mouth_r_diff_hi")):
                out[f"val/cross/{ref.name}/{key}"] = _number(gain.get(name))
    for key, values in cross.items():
        finite = [v for v in values if math.isfinite(v)]
        out[key] = sum(finite) / len(finite) if finite else math.nan
    return out
