"""`hm-talker evaluate --ckpt` self- and cross-driven, summary files, and `hm-talker compare` on them."""
from __future__ import annotations

import json

import pytest

from hm_talker.cli import main
from hm_talker.metrics import METRIC_KEYS


def test_self_driven_scores_the_held_out_frames(trained_ckpt, identity64, tmp_path, capsys):
    assert main(["evaluate", "--ckpt", str(trained_ckpt), "--data", str(identity64), "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(m)
    manifest = json.loads((identity64 / "manifest.json").read_text())
    assert m["num_frames"] == manifest["splits"]["val"] == 14
    # Face region first: a 1-step (untrained) model of this identity measured psnr_face 22.9 dB, ssim_face
    # 0.57 (full frame 26.6 dB: inflated by the real frame outside the face); 20 steps: 25.1 dB, 0.70.
    assert m["psnr_face"] > 24.0 and m["ssim_face"] > 0.65
    assert m["psnr_face"] < m["psnr"] < 60 and 0 < m["lpips"] < 1  # frame outside the face is real
    assert m["seam"] is not None and "seam" not in m["notes"]  # scored along the edge the head was rendered in
    for key in ("mouth_r", "mouth_r_best", "mouth_lag", "mouth_amp", "mouth_jitter"):
        assert m[key] is not None or key in m["notes"]
    assert "upper-face AUs" in m["notes"]["protocol"] and "audio only" in m["notes"]["protocol"]
    assert m["sync_c"] is None and "SyncNet" in m["notes"]["sync_c"]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["name"] == "brief-self" and "eval-self" in s["tags"] and s["metrics"]["psnr"] == m["psnr"]
    assert s["protocol"] == "self" and (tmp_path / "metrics.md").read_text().startswith("# hm-talker evaluate: self")
    assert any(p.suffix == ".wandb" for p in (tmp_path / "wandb").rglob("*"))  # an offline W&B run


def test_cross_driven_has_sync_and_motion_only(trained_ckpt, tmp_path):
    from hm_talker.synthetic import make_synthetic_speech

    make_synthetic_speech(tmp_path / "other.wav", seconds=2.0, seed=9)
    assert main(["evaluate", "--ckpt", str(trained_ckpt), "--audio", str(tmp_path / "other.wav"),
                 "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["num_frames"] == 50 and m["psnr"] is None and "no ground truth" in m["notes"]["psnr"]
    assert m["mouth_open_std"] is not None and (tmp_path / "ev" / "driven.mp4").is_file()
    assert m["mouth_r"] is None and "no ground truth" in m["notes"]["mouth_r"] and m["protocol"] == "cross-audio"


def test_ambiguous_evaluate_arguments_are_an_error(tmp_path, capsys):
    assert main(["evaluate", "--ckpt", "a", "--pred", "b", "--out", str(tmp_path)]) == 2
    assert "evaluate takes" in capsys.readouterr().err


def test_compare_command_over_run_directories(tmp_path, capsys):
    for i, (group, seed, psnr) in enumerate([("sfp", 0, 30.0), ("sfp", 1, 32.0), ("no-sfp", 0, 28.0)]):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"name": d.name, "group": group, "seed": seed, "tags": [],
                                                    "config": {}, "metrics": {"psnr": psnr}}))
    assert main(["compare", *(str(tmp_path / f"run{i}") for i in range(3)), "--out", str(tmp_path / "cmp")]) == 0
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "31" in table and "28" in table and (tmp_path / "cmp" / "metric_psnr.png").is_file()
