"""Lip sync in every validation of a fit (issue: lip sync where the researcher looks): the val/... keys
of summary.json and W&B are the numbers `hm-talker evaluate` gives for the same checkpoint, with and
without a cross-driving reference video; bad references fail before training."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import SMALL
from hm_talker.cli import main

SELF = {"val/mouth_r": "mouth_r", "val/mouth_r_lo": "mouth_r_lo", "val/mouth_r_hi": "mouth_r_hi",
        "val/mouth_amp": "mouth_amp", "val/mouth_jitter": "mouth_jitter",
        "val/lmd": "lmd", "val/psnr_face": "psnr_face", "val/lpips_face": "lpips_face",
        "val/seam": "seam"}
CROSS = {"val/cross_mouth_r": "mouth_r", "val/cross_mouth_amp": "mouth_amp", "val/cross_mouth_jitter": "mouth_jitter",
         "val/cross/other_speaker/mouth_r_lo": "mouth_r_lo", "val/cross/other_speaker/mouth_r_hi": "mouth_r_hi"}


def same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and (a == b or (math.isnan(a) and math.isnan(b))))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """3 s of another synthetic face saying other speech, with its sound: the cross-driving reference."""
    from hm_talker.synthetic import make_synthetic_clip

    return make_synthetic_clip(tmp_path_factory.mktemp("ref") / "other_speaker.mp4", seconds=3.0, size=128,
                               seed=3).path


@pytest.fixture(scope="module")
def run(synthetic_identity, reference, tmp_path_factory):
    from hm_talker.training.fit import fit

    runs = tmp_path_factory.mktemp("runs")
    return fit(None, [f"data.root={synthetic_identity}", f"run.dir={runs}", "run.name=lipsync",
                      "trainer.max_steps=20", "trainer.val_every=20", *SMALL, f"eval.drive_video={reference}",
                      "eval.deaf_control=true"], False)


def test_validation_keys_equal_evaluate_on_the_same_checkpoint(run, synthetic_identity, reference, tmp_path):
    summary = json.loads((run / "summary.json").read_text())["metrics"]
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["-q", "evaluate", "--ckpt", str(ckpt), "--data", str(synthetic_identity), "--out",
                 str(tmp_path / "self"), "--device", "cpu"]) == 0
    assert main(["-q", "evaluate", "--ckpt", str(ckpt), "--drive-video", str(reference), "--out",
                 str(tmp_path / "cross"), "--device", "cpu"]) == 0
    self_m = json.loads((tmp_path / "self" / "metrics.json").read_text())
    cross_m = json.loads((tmp_path / "cross" / "metrics.json").read_text())
    for key, name in SELF.items():
        assert same(summary[key], self_m[name]), (key, summary[key], self_m[name])
    for key, name in CROSS.items():
        assert same(summary[key], cross_m[name]), (key, summary[key], cross_m[name])
    # the mouths each validation keeps (what `compare --baseline` pairs) are evaluate's mouth.npz of that checkpoint
    for kept, folder in (("step_000020_self.mouth.npz", "self"), ("step_000020_cross-other_speaker.mouth.npz", "cross")):
        with np.load(run / "val" / kept, allow_pickle=False) as a, np.load(tmp_path / folder / "mouth.npz") as b:
            for key in ("generated", "reference"):
                np.testing.assert_allclose(a[key], b[key], atol=1e-9, err_msg=f"{kept} {key}")
                assert np.isfinite(a[key]).sum() >= 14  # every frame of the 14 held-out and of the reference has a face
    # not vacuous: the mouths were found and measured in both protocols
    assert summary["val/mouth_r"] is not None and summary["val/cross_mouth_r"] is not None
    assert summary["val/mouth_r_lo"] < summary["val/mouth_r"] < summary["val/mouth_r_hi"]
    assert summary["val/psnr_face"] > 20 and "psnr_val" in summary


def test_the_gain_over_the_deaf_control_is_evaluate_paired_of_the_kept_videos(run, reference, tmp_path):
    """val/cross/REF/mouth_r_gain (and its interval) equals `evaluate --paired` of the deaf and the listening
    video the validation kept, each scored against REF with `evaluate --pred --target` (which neither shifts REF
    by its sound/mouth offset nor trims it to eval.cross_seconds: this 3 s REF needs neither)."""
    m = json.loads((run / "summary.json").read_text())["metrics"]
    for name in ("live", "deaf"):
        video = run / "val" / f"step_000020_cross-other_speaker{'-deaf' if name == 'deaf' else ''}.mp4"
        assert main(["-q", "evaluate", "--pred", str(video), "--target", str(reference), "--out",
                     str(tmp_path / name)]) == 0
    assert main(["-q", "evaluate", "--paired", str(tmp_path / "deaf"), str(tmp_path / "live"), "--out",
                 str(tmp_path / "gain")]) == 0
    paired = json.loads((tmp_path / "gain" / "metrics.json").read_text())
    key = "val/cross/other_speaker/mouth_r_gain"
    assert m[key] == pytest.approx(paired["mouth_r_diff"], abs=1e-6)
    assert m[key + "_lo"] == pytest.approx(paired["mouth_r_diff_lo"], abs=1e-6)
    assert m[key + "_hi"] == pytest.approx(paired["mouth_r_diff_hi"], abs=1e-6)
    assert m[key + "_lo"] <= m[key] <= m[key + "_hi"]


def test_the_cross_driven_clip_is_kept_and_logged_to_the_runs_own_wandb_run(run):
    videos = sorted((run / "val").glob("step_*_cross-other_speaker.mp4"))
    assert [v.name for v in videos] == ["step_000020_cross-other_speaker.mp4"]  # one validation at step 20
    runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith("-lipsync")  # the fit's own run (id = run name), no other
    media = [p.name for p in runs[0].rglob("*.mp4")]  # W&B names media <key's last part>_<its step>_<hash>
    assert sum(n.startswith("other_speaker_") for n in media) == 1, media  # logged once, not again at the end


def test_without_a_drive_video_only_the_self_driven_keys(identity64, tmp_path):
    from hm_talker.training.fit import fit

    run = fit(None, [f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=plain", "trainer.max_steps=4",
                     *SMALL], False)
    metrics = json.loads((run / "summary.json").read_text())["metrics"]
    assert set(SELF) <= set(metrics) and not any(k.startswith("val/cross") for k in metrics)
    assert not list((run / "val").glob("*_cross-*.mp4"))


@pytest.mark.parametrize("kind, expected", [("silent", "no sound track"), ("noface", "no face found"),
                                            ("garbage", "unreadable"), ("missing", "no such file")])
def test_a_bad_reference_fails_before_training_in_one_line(identity64, tmp_path, capsys, kind, expected):
    import numpy as np

    from conftest import ffmpeg

    ref = tmp_path / f"{kind}.mp4"
    if kind == "silent":
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x128:rate=25:duration=1", "-pix_fmt", "yuv420p", str(ref))
    elif kind == "noface":
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x128:rate=25:duration=1", "-f", "lavfi", "-i",
               "sine=frequency=300:duration=1", "-shortest", "-pix_fmt", "yuv420p", str(ref))
    elif kind == "garbage":
        ref.write_bytes(np.random.default_rng(0).bytes(20_000))
    code = main(["fit", f"data.root={identity64}", f"run.dir={tmp_path / 'runs'}", "run.name=bad",
                 "trainer.max_steps=2", *SMALL, f"eval.drive_video={ref}"])
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if "`srun` command is available" not in line]  # Lightning's hint where SLURM is installed
    assert code == 2 and len(err) == 1 and expected in err[0] and ref.name in err[0], err
    assert not (tmp_path / "runs" / "bad").exists()  # nothing trained, nothing left


@pytest.mark.slow  # two CPU processes (gloo), about two minutes
def test_every_ddp_rank_logs_the_same_lip_sync_values(synthetic_identity, reference, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    args = [f"data.root={synthetic_identity}", f"run.dir={tmp_path}", "run.name=ddp", "trainer.max_steps=4",
            "trainer.devices=2", "trainer.val_every=4", "strategy.enabled=false", *SMALL,
            f"eval.drive_video={reference}", "eval.deaf_control=true"]
    r = subprocess.run([sys.executable, str(Path(__file__).with_name("ddp_fit.py")), str(tmp_path), *args],
                       capture_output=True, text=True, timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.val.json").read_text()) for i in range(2)]
    assert len(ranks[0]) == len(ranks[1]) >= 2  # the validation at step 4 and fit's final one
    assert json.dumps(ranks[0]) == json.dumps(ranks[1])  # the same numbers on both ranks (NaN where both have none)
    gain = [f"val/cross/other_speaker/mouth_r_gain{s}" for s in ("", "_lo", "_hi")]
    assert set(SELF) | set(CROSS) | set(gain) | {"val/cross_mouth_r_deaf"} <= set(ranks[0][-1])
    assert math.isfinite(ranks[0][-1]["val/mouth_amp"]) and math.isfinite(ranks[0][-1]["val/cross_mouth_r"])
    # rank zero alone scored: one deaf and one listening video, and the mouths compare --baseline pairs
    assert sorted(p.name for p in (tmp_path / "ddp" / "val").glob("*cross*")) == [
        "step_000004_cross-other_speaker-deaf.mp4", "step_000004_cross-other_speaker.mouth.npz",
        "step_000004_cross-other_speaker.mp4"]


def test_what_a_fit_validates_on_does_not_change_what_it_trains(identity64, reference, tmp_path):
    """Two fits of one seed, one validated every 4 steps on another speaker (and deaf), one on its own held-out
    frames only, end with the same weights: validating on other speech (its renders, the deaf control, its data
    loaders, mediapipe) changes neither the model nor the draws of the training after it (32-frame batches:
    an epoch of the 136 training frames is about 4 steps, so the shuffle is drawn again after a validation)."""
    import torch

    from hm_talker.safe_read import load_checkpoint
    from hm_talker.training.fit import fit

    args = [f"data.root={identity64}", f"run.dir={tmp_path}", "trainer.max_steps=8", "trainer.val_every=4", *SMALL,
            "data.batch_size=32"]
    crossed = fit(None, [*args, "run.name=crossed", f"eval.drive_video={reference}", "eval.deaf_control=true"], False)
    plain = fit(None, [*args, "run.name=plain"], False)
    a = load_checkpoint(crossed / "checkpoints" / "last.ckpt")["state_dict"]
    b = load_checkpoint(plain / "checkpoints" / "last.ckpt")["state_dict"]
    assert a.keys() == b.keys()
    moved = [k for k in a if a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
    assert not moved, f"weights that differ: {moved[:5]}"
    assert list((crossed / "val").glob("*_cross-*.mp4")), "the first fit did validate on the other speaker"
