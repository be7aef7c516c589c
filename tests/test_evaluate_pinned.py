"""`hm-talker evaluate` on a fixed checkpoint gives the numbers pinned in tests/data/evaluate_pinned.json,
for every protocol (self, cross-video, cross-audio, pair), to a relative 1e-6, the size of float32 round-off
(pair/lpips once came out 1.4e-8 relative off its pin on an unchanged tree, with one thread): any change
of what is measured moves a number far more.

The checkpoint is made here, without training: the default model (small) of the synthetic identity,
its CMMM calibrated on the identity as `fit` does, and every deformation and CMMM weight moved by a
seeded perturbation so that the mouth moves with the audio. A change of the package's layout must
leave these numbers unchanged; a deliberate change of what evaluation measures re-pins them
(`HM_TALKER_REPIN=1 pytest tests/test_evaluate_pinned.py`) and says why in its commit.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from hm_talker.cli import main

PINNED = Path(__file__).parent / "data" / "evaluate_pinned.json"
# formant_share=0: with no stage 1 the formant head is never fitted (it would predict nothing), and its weights
# would only shift the seeded perturbation of the weights after it: the pins measure evaluation, not the model
SMALL_MODEL = ["model.gaussians.num_face=300", "model.gaussians.num_mouth=50", "cmmm.pretrain_steps=0",
               "cmmm.net.formant_share=0"]


def make_checkpoint(identity: Path, path: Path) -> Path:
    """A seeded, perturbed, untrained model of `identity` saved as `fit` saves its checkpoints."""
    import torch
    from omegaconf import OmegaConf

    from hm_talker.data.identity import load_features, load_manifest
    from hm_talker.config.fit import load_config
    from hm_talker.training.stage1 import prepare_cmmm
    from hm_talker.training.hmmm_module import HMMMModule

    cfg = load_config(None, [f"data.root={identity}", "run.name=pinned", *SMALL_MODEL])
    k, d = load_manifest(identity)["features"]["audio"]["shape"]
    cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim = int(k), int(d)
    config = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(0)
    module = HMMMModule(OmegaConf.to_object(cfg), load_features(identity)["mean_shape"], config_dict=config)
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "deform" in name or name.startswith("cmmm."):
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    prepare_cmmm(module, identity, path.parent)  # the identity's audio statistics and AU calibration
    torch.save({"state_dict": module.state_dict(), "config": config, "global_step": 0,
                "render": {"backend": "torch", "alpha_max": module.head.render_cfg.alpha_max}}, path)
    return path


def numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}


@pytest.fixture(scope="module")
def evaluations(synthetic_identity, tmp_path_factory):
    import torch

    from hm_talker.synthetic import make_synthetic_clip, make_synthetic_speech

    work = tmp_path_factory.mktemp("pinned")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order, whatever the machine's core count
    try:
        ckpt = make_checkpoint(synthetic_identity, work / "model.ckpt")
        ref = make_synthetic_clip(work / "ref.mp4", seconds=3.0, size=128, seed=3).path
        speech = work / "speech.wav"
        make_synthetic_speech(speech, seconds=2.0, seed=9)
        runs = {"self": ["--ckpt", str(ckpt), "--data", str(synthetic_identity)],
                "cross-video": ["--ckpt", str(ckpt), "--drive-video", str(ref)],
                "cross-audio": ["--ckpt", str(ckpt), "--audio", str(speech)]}
        out = {}
        for protocol, args in runs.items():
            assert main(["-q", "evaluate", *args, "--out", str(work / protocol), "--device", "cpu"]) == 0
            out[protocol] = numbers(json.loads((work / protocol / "metrics.json").read_text()))
        driven = work / "cross-video" / "driven.mp4"
        assert main(["-q", "evaluate", "--pred", str(driven), "--target", str(ref), "--out", str(work / "pair")]) == 0
        out["pair"] = numbers(json.loads((work / "pair" / "metrics.json").read_text()))
    finally:
        torch.set_num_threads(threads)
    return out


def test_evaluate_metrics_equal_the_pinned_numbers(evaluations):
    if os.environ.get("HM_TALKER_REPIN"):
        PINNED.write_text(json.dumps(evaluations, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(PINNED.read_text())
    assert set(evaluations) == set(pinned)
    for protocol, want in pinned.items():
        got = evaluations[protocol]
        assert set(got) == set(want), protocol
        for key, value in want.items():
            same = got[key] == value or (None not in (got[key], value)
                                         and math.isclose(got[key], value, rel_tol=1e-6, abs_tol=1e-9))
            assert same, f"{protocol}/{key}: {got[key]!r} != pinned {value!r}"


def test_the_pinned_evaluations_measure_something(evaluations):
    """The pins are not vacuous: the perturbed model's mouth moves and is scored in every protocol."""
    assert evaluations["self"]["num_frames"] == 14 and math.isfinite(evaluations["self"]["psnr_face"])
    for protocol in ("self", "cross-video", "pair"):
        assert evaluations[protocol]["mouth_r"] is not None, protocol
    assert evaluations["cross-audio"]["mouth_open_std"] > 0
