"""A sweep ranked by lip sync: the shipped deaf-control spec on the synthetic talker, driven by the same
face saying other speech; `compare --sweep` must mark the hearing configuration best on the spec's metric
(val/cross_mouth_r), and show the lip-sync columns with their seed spread."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = 300  # the demo's recipe: its hearing model measured cross mouth_r 0.82 against this reference (at 200 steps -0.04)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_compare_sweep_marks_the_hearing_model_best(tmp_path):
    import soundfile as sf

    from hm_talker.demo import demo_overrides
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip, make_synthetic_speech

    clip = make_synthetic_clip(tmp_path / "talker.mp4", seconds=12.0, size=256, seed=0)
    preprocess([clip.path], tmp_path / "ident", PreprocessConfig(size=128, shard_frames=32))
    speech = make_synthetic_speech(tmp_path / "other.wav", seconds=4.0, seed=11)
    ref = make_synthetic_clip(tmp_path / "reference.mp4", size=256, seed=0, speech=speech, sample_rate=16000).path
    runs = tmp_path / "runs"
    overrides = [o for o in demo_overrides(tmp_path / "ident", runs, "x", STEPS) if not o.startswith("run.name=")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "sweep", str(REPO / "sweeps" / "deaf_control.yaml"),
                        *overrides, f"eval.drive_video={ref}", "--launcher", "local"],
                       capture_output=True, text=True, timeout=2200, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "compare", "--sweep", "deaf-control", "--runs",
                        str(runs), "--out", str(out), "--wandb", "--baseline", "model.silence_audio=True"], capture_output=True, text=True, timeout=600,
                       cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    print(r.stdout)
    assert "best configuration by val/cross_mouth_r (maximize): model.silence_audio=False" in r.stdout
    table = json.loads((out / "comparison.json").read_text())
    hearing, deaf = (next(g for g in table["groups"] if f"silence_audio={v}" in g) for v in ("False", "True"))
    stats = table["stats"]
    assert stats[hearing]["val/cross_mouth_r"]["mean"] - stats[deaf]["val/cross_mouth_r"]["mean"] > 0.3
    assert table["metrics"][:8] == ["val/psnr_face", "val/lpips_face", "val/mouth_r", "val/mouth_amp",
                                    "val/mouth_jitter", "val/cross_mouth_r", "val/cross_mouth_amp",
                                    "val/cross_mouth_jitter"]
    # paired on the reference's frames with the deaf run of its seed: the hearing model is above it, at 95 %
    pairs = json.loads((out / "paired.json").read_text())["pairs"]
    cross = [p for p in pairs if p["reference"] == "cross-reference"]
    assert len(cross) == 1 and "silence_audio=False" in cross[0]["row"], pairs
    assert cross[0]["verdict"] == "above" and cross[0]["mouth_r_diff_lo"] > 0.1, cross
    assert cross[0]["mouth_r_b"] == pytest.approx(stats[hearing]["val/cross_mouth_r"]["mean"], abs=0.05)
    assert "## Paired against model.silence_audio=True" in (out / "comparison.md").read_text()
    # the comparison went into the sweep's W&B group: a table and one chart per metric, offline
    wandb_run = next((out / "wandb").glob("offline-run-*"))
    logged = [p.name for p in wandb_run.rglob("*.table.json")]
    assert any(n.startswith("paired_") for n in logged), logged  # compare --baseline's pairs
    assert any(n.startswith("table_") for n in logged) and any(n.startswith("val_cross_mouth_r_table") or
                                                               "cross_mouth_r" in n for n in logged), logged
