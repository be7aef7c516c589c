"""A checkpoint -> a ready TalkingHead on the chosen device, rendering as it was trained.

Safe loading only (torch.load(weights_only=True)); the stored config is never resolved. The render
settings (backend, alpha clamp) are computed from what rendered the training frames and given to the
model when it is built; nothing is changed in a model after it is loaded.
"""
from __future__ import annotations

from pathlib import Path

from hm_talker.errors import InputError
from hm_talker.validate import refuse_interpolation


def resolve_device(device: str = "auto"):
    """auto -> CUDA when present, else the CPU; cuda without a GPU is an InputError."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(None, f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda: no CUDA device is available")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def render_settings(model_cfg, trained: dict, device):
    """Render as in training: its backend where this device has it, else the PyTorch rasteriser with the
    trained backend's alpha clamp (gsplat's 0.999, not 3DGS's 0.99). Returns (RenderConfig, what is used)."""
    from hm_talker.render import RenderConfig
    from hm_talker.render.rasterizer import GSPLAT_ALPHA_MAX, gsplat_available

    rc = RenderConfig(backend=model_cfg.render_backend, tile_size=model_cfg.tile_size)
    trained_backend = trained.get("backend", "torch")
    if trained_backend == "gsplat" and device.type == "cuda" and gsplat_available():
        rc.backend = "gsplat"
    else:
        rc.backend = "torch"
        rc.alpha_max = float(trained.get("alpha_max", GSPLAT_ALPHA_MAX if trained_backend == "gsplat" else rc.alpha_max))
    alpha = GSPLAT_ALPHA_MAX if rc.backend == "gsplat" else rc.alpha_max
    return rc, {"device": str(device), "backend": rc.backend, "alpha_max": alpha, "trained_backend": trained_backend}


def load_module(ckpt_path, data_root=None, device: str = "auto"):
    """Checkpoint -> (TalkingHead in eval mode on `device`, identity dir, manifest).

    The model's `cfg` is the checkpoint's FitConfig, `config_dict` its plain dict, and `render_info` says
    which device, backend and alpha clamp render it (see render_settings)."""
    from omegaconf import OmegaConf

    from hm_talker.config.fit import FitConfig
    from hm_talker.data.identity import load_features, load_manifest
    from hm_talker.model.talking_head import TalkingHead
    from hm_talker.safe_read import load_checkpoint

    ckpt_path = Path(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)  # weights_only: no code runs; corrupt / unsafe -> InputError
    if "state_dict" not in ckpt or not isinstance(ckpt.get("config"), dict):
        raise InputError(ckpt_path, "not an hm-talker checkpoint (no state_dict / config)")
    refuse_interpolation(ckpt["config"], ckpt_path)  # a stored config is never resolved
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(FitConfig), ckpt["config"])
    except Exception as exc:  # keys or types that FitConfig does not have
        raise InputError(ckpt_path, f"checkpoint config does not fit this version ({type(exc).__name__})") from None
    from hm_talker.config.cmmm import with_legacy_defaults

    cfg = with_legacy_defaults(cfg, ckpt["config"])
    root = Path(data_root or cfg.data.root)
    manifest = load_manifest(root)
    expected = [cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim]
    have = manifest["features"]["audio"]["shape"]
    if list(have) != expected:
        raise InputError(ckpt_path, f"checkpoint was trained on audio features of shape {expected}, the "
                                    f"identity {root} has {manifest['features']['audio']['kind']} {list(have)}")
    dev = resolve_device(device)
    cfg = OmegaConf.to_object(cfg)
    render_cfg, render_info = render_settings(cfg.model, ckpt.get("render", {}), dev)
    model = TalkingHead(cfg, load_features(root)["mean_shape"], render_cfg, ckpt["config"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise InputError(ckpt_path, f"weights do not match the checkpoint's config ({str(exc).splitlines()[0]})") from None
    model.render_info = render_info  # for the reports: what renders the frames they score
    return model.to(dev).eval(), root, manifest
