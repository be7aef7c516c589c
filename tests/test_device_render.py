"""Inference and evaluation on a chosen device render like training did: the checkpoint records the
backend, `--device` picks the device, metrics.json says what rendered (the CPU path; tests/test_cuda_pipeline.py
covers CUDA)."""
import json

import pytest
import torch

from hm_talker.errors import InputError


def test_cpu_render_matches_the_trained_settings(trained_ckpt, tmp_path):
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.evaluation.cli import evaluate_self
    from hm_talker.render.rasterizer import GSPLAT_ALPHA_MAX

    ckpt = torch.load(trained_ckpt, weights_only=True)
    assert ckpt["render"] == {"backend": "torch", "alpha_max": 0.99}  # trained on the CPU
    module, root, _ = load_module(trained_ckpt, device="cpu")
    assert module.render_info == {"device": "cpu", "backend": "torch", "alpha_max": 0.99, "trained_backend": "torch"}
    # a checkpoint trained with gsplat renders on a CPU with gsplat's alpha clamp, not 3DGS's
    from hm_talker.driving.checkpoint import render_settings

    rc, info = render_settings(module.cfg.model, {"backend": "gsplat", "alpha_max": GSPLAT_ALPHA_MAX}, torch.device("cpu"))
    assert info["backend"] == "torch" and info["alpha_max"] == GSPLAT_ALPHA_MAX == rc.alpha_max
    m = evaluate_self(trained_ckpt, root, tmp_path / "eval", device="cpu")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["inputs"]["render"]["backend"] == "torch" and m["psnr_face"] is not None


def test_cuda_without_a_gpu_is_one_clear_error(trained_ckpt):
    from hm_talker.driving.checkpoint import load_module

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match="no CUDA device"):
        load_module(trained_ckpt, device="cuda")
