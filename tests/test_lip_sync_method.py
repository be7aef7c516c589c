"""The method's claim on the synthetic talker, driven by held-out speech: the full model's mouth follows
the speech (mouth_r >= 0.7, mouth_amp within [0.6, 1.4] against the same face saying that speech), and the
same budget without SFP (measured AUs only in training), driven the same way (CMMM-predicted AUs), scores
lower. Slow: two fits of the demo's size."""
from __future__ import annotations

from pathlib import Path

import pytest

from hm_talker.demo import demo_overrides, measure_lip_sync, run_demo

MIN_MOUTH_R, AMP_RANGE = 0.7, (0.6, 1.4)  # issue 9's bounds
NO_SFP = Path(__file__).resolve().parents[1] / "experiments" / "ablations" / "no_sfp.yaml"


@pytest.mark.slow
def test_full_model_follows_held_out_speech_and_beats_no_sfp(tmp_path):
    from hm_talker.training.fit import fit

    demo = run_demo(tmp_path / "demo")  # the full model, its lip sync measured against the reference
    full = demo["metrics"]
    runs = tmp_path / "demo" / "runs"
    fit(str(NO_SFP), demo_overrides(demo["identity"], runs, "no_sfp", 300), False)
    no_sfp = measure_lip_sync(runs / "no_sfp" / "checkpoints" / "last.ckpt", demo["reference"], tmp_path / "no_sfp")
    print(f"full: mouth_r {full['mouth_r']:.3f} mouth_amp {full['mouth_amp']:.3f}; "
          f"no SFP: mouth_r {no_sfp['mouth_r']:.3f} mouth_amp {no_sfp['mouth_amp']:.3f}")
    assert full["mouth_r"] >= MIN_MOUTH_R
    assert AMP_RANGE[0] <= full["mouth_amp"] <= AMP_RANGE[1]
    assert no_sfp["mouth_r"] < full["mouth_r"]
