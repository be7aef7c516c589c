"""A model that ignores its audio must score a clearly lower mouth_r than the same model listening.

The demo's model (synthetic clip, 128 px, 300 steps) is driven by other synthetic speech and its
mouth compared with the same synthetic face saying that speech (``hm-talker demo`` prints these
numbers). The same weights with the audio condition zeroed (through ``module.deform`` only) are the
deaf control: the test asserts the gap, so a model that learned no lip sync fails it.
"""
from __future__ import annotations

import pytest

MIN_MOUTH_R = 0.5  # the demo model (HM-Talker, 300 steps) measured about 0.9; the model before it 0.30
GAP = 0.3  # normal minus deaf mouth_r


class Deaf:
    """The model with its audio condition zeroed; everything else passes through."""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name):
        return getattr(self.module, name)

    def deform(self, batch):
        import torch

        # every audio input the model reads: the mel window and CMMM's speech (energy / flux) window
        silent = {k: torch.zeros_like(batch[k]) for k in ("audio_window", "speech_window") if k in batch}
        return self.module.deform({**batch, **silent})

    def render(self, batch, deformed):
        return self.module.render(batch, deformed)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # trains the demo model (about 5 min on 2 free cores) and drives it twice
def test_a_deaf_model_scores_clearly_below_the_listening_one(tmp_path):
    from hm_talker.demo import run_demo
    from hm_talker.evaluation.protocols import cross_video as drive_video_metrics
    from hm_talker.driving.checkpoint import load_module

    demo = run_demo(tmp_path / "demo")
    normal = demo["metrics"]
    module, root, manifest = load_module(demo["checkpoint"])
    deaf = drive_video_metrics(Deaf(module), root, manifest, demo["reference"], tmp_path / "deaf")
    print(f"mouth_r normal {normal['mouth_r']:.3f} deaf {deaf['mouth_r']}; "
          f"mouth_amp normal {normal['mouth_amp']:.3f} deaf {deaf['mouth_amp']}")
    assert normal["mouth_r"] >= MIN_MOUTH_R
    assert normal["mouth_r"] - (deaf["mouth_r"] or 0.0) >= GAP
