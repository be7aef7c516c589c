"""Validation of user configs in one place: allowed ranges of numeric fields, safe names, no resolvers.

`check_fit_config` / `check_preprocess_config` run at the entry of `fit` and `preprocess` (after
the file and key=value overrides are merged); `refuse_interpolation` runs on the user's own text
(config file, overrides, a checkpoint's stored config) before anything is resolved, so values such
as `${oc.env:SECRET}` are never expanded, stored in summary.json / checkpoints or sent to W&B.
"""
from __future__ import annotations

import math
import re

from hm_talker.constants import UPPER_AU_SOURCES
from hm_talker.errors import InputError

INF = math.inf
# one path component of W&B-safe characters (W&B ids refuse / \ # ? % :), not starting with '.'
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,127}")

# key -> (lowest, highest) inclusive, or a tuple of allowed strings
FIT_RANGES: dict[str, tuple] = {
    "data.batch_size": (1, 4096), "data.val_batch_size": (1, 4096), "data.num_workers": (0, 256),
    "data.window": (1, 1024), "data.shuffle_buffer": (1, 1 << 20), "data.max_corrupt_fraction": (0.0, 1.0),
    "data.corrupt_warnings": (0, 1 << 20),
    "model.gaussians.num_face": (1, 10_000_000), "model.gaussians.num_mouth": (1, 10_000_000),
    "model.gaussians.sh_degree": (0, 3), "model.gaussians.init_jitter": (0.0, INF),
    "model.gaussians.init_scale": (0.0, INF), "model.gaussians.init_opacity": (0.0, 1.0),
    "model.render_backend": ("auto", "torch", "gsplat"), "model.tile_size": (1, 1024),
    "loss.ssim_window": (1, 255), "loss.lpips_patch_size": (1, 1 << 16), "loss.lpips_crop_size": (1, 1 << 16),
    "loss.lpips_start_step": (0, INF), "loss.mask_dilate": (0, 1024),
    "optim.decay_steps": (0, INF), "optim.adam_eps": (0.0, 1.0), "optim.network_decay_final": (0.0, INF),
    "strategy.refine_start": (0, INF), "strategy.refine_stop": (0, INF), "strategy.refine_every": (1, INF),
    "strategy.reset_every": (0, INF), "strategy.pause_after_reset": (0, INF), "strategy.reset_settle_steps": (0, INF),
    "strategy.split_into": (2, 64), "strategy.split_shrink": (1.0, INF), "strategy.max_gaussians": (1, INF),
    "strategy.prune_opacity": (0.0, 1.0), "strategy.reset_opacity": (0.0, 1.0),
    "schedule.mouth_warmup_steps": (0, INF),
    "trainer.max_steps": (0, INF),  # 0: no optimisation step, only the final validation of the initial model
    "trainer.devices": (1, 1024), "trainer.num_nodes": (1, 100_000),
    "trainer.accelerator": ("auto", "cpu", "gpu", "cuda", "mps"), "trainer.log_every": (1, INF),
    "trainer.val_every": (1, INF), "trainer.checkpoint_every": (1, INF), "trainer.limit_val_batches": (-1, INF),
    "run.wandb_mode": ("auto", "online", "offline", "disabled"), "seed": (0, 2**32 - 1),
    # the method: HMMM fusion, Stochastic Feature Pairing, CMMM
    "hmmm.mode": ("hybrid", "implicit", "explicit"), "hmmm.gate": ("gated", "concat"),
    "hmmm.gate_on": ("gaussian", "token"), "hmmm.explicit_aus": ("all", "lower", "jaw"),
    "hmmm.upper_au_source": UPPER_AU_SOURCES, "hmmm.gate_hidden_dim": (1, 1 << 16),
    "sfp.schedule": ("alternate", "random", "curriculum"), "sfp.p_measured": (0.0, 1.0),
    "sfp.period": (1, INF), "sfp.curriculum_steps": (1, INF), "sfp.seed": (0, 2**32 - 1),
    "sfp.predicted_lip_motion": (0.0, INF), "sfp.predicted_implicit": ("audio", "silent"),
    "sfp.predicted_share": (1e-6, 1.0), "sfp.predicted_max_error": (0.0, INF),
    "cmmm.pretrain_steps": (0, INF), "cmmm.pretrain_batch_size": (1, 1 << 16), "cmmm.wait_timeout_s": (0.0, INF), "cmmm.lr": (1e-12, INF),
    "cmmm.weight_decay": (0.0, INF), "cmmm.au_loss": (0.0, INF),
    "cmmm.net.au_input": ("speech", "mel", "both"), "cmmm.net.speech_head": ("linear", "frame", "conv"),
    "cmmm.net.speech_kernel": (1, 63), "cmmm.net.speech_window": (1, 1024),
    "cmmm.net.dropout": (0.0, 0.99), "cmmm.loss.temperature": (1e-6, INF),
    "cmmm.net.formant_share": (0.0, 1.0), "cmmm.net.formant_hidden": (1, 4096), "cmmm.net.formant_heads": (1, 64),
    "cmmm.net.formant_dropout": (0.0, 0.99), "cmmm.net.formant_epochs": (1, 10_000),
    "cmmm.net.formant_lr": (1e-9, 10.0), "cmmm.net.formant_weight_decay": (0.0, 10.0),
    "cmmm.net.formant_batch": (1, 1 << 20),
    "eval.cross_seconds": (0.0, INF), "model.upper_au_reach": (0.0, 100.0), "model.face_region": ("pose", "frame"), "model.face_region_chin": (0.0, 2.0), "model.face_region_chin_margin": (0.0, 2.0), "model.upper_au_edge": (1e-4, 10.0),
}
FIT_NONNEGATIVE_PREFIXES = ("loss.", "cmmm.loss.")  # every other number under these: >= 0 (weights)
SIGNED_KEYS = ("cmmm.loss.shifts.",)  # numbers under those prefixes that are not weights (frame offsets)
FIT_POSITIVE_PREFIXES = ("optim.lr_",)  # learning rates: > 0

PREPROCESS_RANGES: dict[str, tuple] = {
    "size": (32, 4096), "fps": (1, 240), "sample_rate": (8000, 192_000), "analysis_size": (32, 8192),
    "max_faces": (1, 64), "min_detection_confidence": (0.0, 1.0), "max_missing_fraction": (0.0, 1.0),
    "max_gap_frames": (0, INF), "crop_scale": (0.1, 100.0), "crop_center_y": (-1.0, 1.0), "crop_outside_warn": (0.0, 1.0),
    "letterbox_level": (0, 255),
    "crop_smooth_sigma": (0.0, INF), "pose_smooth_sigma": (0.0, INF), "focal_ratio": (0.01, 1000.0),
    "audio_features": ("mel", "hubert", "wav2vec2"), "n_mels": (1, 1024), "mel_hop": (1, 1 << 16),
    "mel_win": (1, 1 << 16), "mel_fmin": (0.0, INF), "mel_fmax": (0.0, INF), "window_frames": (1, 1024),
    "audio_rows_fps": (1, 240),
    "val_fraction": (0.0, 0.99), "shard_frames": (1, 1 << 20), "shard_max_mb": (0.001, 1 << 20),
    "image_format": ("jpg", "png"), "jpeg_quality": (1, 100), "silence_dbfs": (-INF, 0.0),
    "clip_level": (0.001, 1.0), "max_clipped_fraction": (0.0, 1.0), "max_constant_fraction": (0.0, 1.0),
    "length_tolerance_frames": (0, INF), "au_neutral_percentile": (0.0, 100.0),
    "av_offset_max_frames": (1, 1024), "av_offset_min_seconds": (0.0, INF), "av_offset_min_gain": (0.0, 2.0),
    "decode_threads": (1, 256), "chunk_frames": (1, 1 << 16),
}


def check_range(key: str, value, rule: tuple, source=None) -> None:
    """One field against its rule: a numeric (lo, hi) inclusive range or a tuple of allowed strings."""
    if isinstance(rule[0], str):
        if value not in rule:
            raise InputError(source, f"{key}={value!r} is not one of {', '.join(rule)}")
        return
    lo, hi = rule
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        span = f"at least {lo}" if hi == INF else f"from {lo} to {hi}"
        raise InputError(source, f"{key}={value!r} is out of range ({span})")


def check_name(key: str, value: str, source=None) -> None:
    """A run name / group / project: one path component of W&B-allowed characters."""
    if not NAME_RE.fullmatch(value or ""):
        raise InputError(source, f"{key}={value!r} must be one name of letters, digits and _ . = + - "
                                 "(no path separators, at most 128 characters)")


def flat_items(node, prefix: str = ""):
    """(dotted key, leaf) pairs of a plain nested dict / list container."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from flat_items(v, f"{prefix}{k}.")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from flat_items(v, f"{prefix}{i}.")
    else:
        yield prefix[:-1], node


def refuse_interpolation(container, source=None) -> None:
    """No `${...}` (interpolations and resolvers such as oc.env) anywhere in user-given config text."""
    for key, value in flat_items(container):
        if isinstance(value, str) and "${" in value:
            raise InputError(source, f"{key}: interpolations and resolvers (${{...}}) are not allowed in "
                                     f"configs; write the value itself")


def refuse_interpolation_overrides(overrides: list[str]) -> None:
    for item in overrides:
        if "${" in item:
            raise InputError(None, f"override {item.split('=', 1)[0]!r}: interpolations and resolvers "
                                   "(${...}) are not allowed; write the value itself")


def _check_table(values: dict, ranges: dict, source) -> None:
    for key, rule in ranges.items():
        if key in values:
            check_range(key, values[key], rule, source)


def _check_signs(values: dict, source) -> None:
    """Weights (FIT_NONNEGATIVE_PREFIXES, outside FIT_RANGES and SIGNED_KEYS) >= 0, learning rates > 0."""
    for key, v in values.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if key.startswith(FIT_NONNEGATIVE_PREFIXES) and key not in FIT_RANGES and not key.startswith(SIGNED_KEYS):
                check_range(key, v, (0, INF), source)
            if key.startswith(FIT_POSITIVE_PREFIXES):
                if not (math.isfinite(v) and v > 0):
                    raise InputError(source, f"{key}={v!r} must be a positive learning rate")


def check_fit_config(cfg, source=None) -> None:
    """Every range of FIT_RANGES, the weights / learning-rate sign rules, the SFP rules and the run names."""
    from omegaconf import OmegaConf

    values = dict(flat_items(OmegaConf.to_container(cfg, resolve=False)))
    _check_table(values, FIT_RANGES, source)
    _check_signs(values, source)
    videos = cfg.eval.drive_video
    if OmegaConf.is_list(videos):
        videos = list(videos)
    if videos is not None and not (isinstance(videos, str) or
                                   (isinstance(videos, list) and all(isinstance(v, str) and v for v in videos))):
        raise InputError(source, f"eval.drive_video={videos!r} must be a video path or a list of them")
    if cfg.run.name:
        check_name("run.name", cfg.run.name, source)
    if cfg.run.group:
        check_name("run.group", cfg.run.group, source)
    check_name("run.project", cfg.run.project, source)


def check_cmmm_config(cfg, source=None) -> None:
    """`fit-cmmm`'s config (a CMMMFitConfig): the `cmmm.*` ranges of FIT_RANGES (the same fields as in a
    fit) and its loss weights >= 0."""
    from omegaconf import OmegaConf

    values = dict(flat_items(OmegaConf.to_container(cfg, resolve=False)))
    _check_table(values, {k: v for k, v in FIT_RANGES.items() if k.startswith("cmmm.")}, source)
    _check_signs(values, source)


def check_preprocess_config(cfg, source=None) -> None:
    """Every range of PREPROCESS_RANGES (cfg: a PreprocessConfig) and the mel band order."""
    import dataclasses

    values = dataclasses.asdict(cfg)
    _check_table(values, PREPROCESS_RANGES, source)
    setting = str(cfg.av_offset).strip().lower()
    if setting != "auto" and not re.fullmatch(r"[+-]?\d+", setting):
        raise InputError(source, f"av_offset={cfg.av_offset!r} must be auto or a whole number of frames")
    if not cfg.mel_fmin < cfg.mel_fmax <= cfg.sample_rate / 2:
        raise InputError(source, f"mel_fmin={cfg.mel_fmin} and mel_fmax={cfg.mel_fmax} must satisfy "
                                 f"0 <= mel_fmin < mel_fmax <= sample_rate / 2 = {cfg.sample_rate / 2:g}")
