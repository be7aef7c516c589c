"""CMMM transfer on real speech: a stage-1 CMMM trained on one real speaker (long1, French) predicts the
mouth opening of a speaker it never heard (long2, English) from the sound alone, measured against that
speaker's real opening from its own landmarks (an independent truth, not the AUs CMMM was trained on);
and the whole model fitted on long1 follows long2's speech in its validation; two CPU fits of one seed end at
the same weights.

What it guards: a CMMM that ignores its audio, an untrained one, or one whose prediction is not aligned
in time with the speech fails. On long2 the sound's loudness alone correlates 0.435 with the opening; the
default speech head (`frame`, ridge `speech_l2=1`) measured about 0.48 after 400 to 1000 steps of long1 (the
previous head, a map over every 10 ms row without the ridge, 0.30-0.35). The test prints both.
Slow: two real clips preprocessed at 128 px (~50 s), 400 stage-1 steps (~2 min on 2 CPU cores), one
1000-step fit of the default model with its lip-sync validation (~3 min), two 500-step fits (~1.5 min).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO, real_file
from hm_talker.evaluation.cmmm_transfer import load_cmmm, loudness_r, mouth_transfer_r, predicted_opening
from hm_talker.metrics.correlation import pearson
from hm_talker.training.fit_cmmm import fit_cmmm
from hm_talker.training.stage1 import build_net

pytestmark = pytest.mark.slow

BOUND = 0.35  # r over long2's 850 frames after 400 steps (see the module docstring)
SHIFTS = (50, 100, 150, 200)  # frames (2-8 s): the prediction against the opening of other moments


@pytest.fixture(scope="module")
def long_pair(tmp_path_factory):
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    tmp = tmp_path_factory.mktemp("transfer")
    roots = []
    for name in ("long1_fr_30fps.mp4", "long2_obama_30fps.mp4"):
        out = tmp / name.split(".")[0]
        preprocess([real_file(name)], out, PreprocessConfig(size=128, shard_frames=256))
        roots.append(out)
    return tmp, roots


@pytest.fixture(scope="module")
def stage1_400(long_pair):
    """The 400-step stage 1 on long1 (its checkpoint), shared by the transfer test and the lip-sync fit."""
    tmp, (seen, _) = long_pair
    run = fit_cmmm(str(REPO / "experiments" / "cmmm_stage1.yaml"),  # the documented recipe, shortened
                   [f"data.roots=[{seen}]", f"run.dir={tmp / 'runs'}", "run.name=s400", "seed=0",
                    "trainer.max_steps=400", "trainer.val_every=400"])
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.timeout(1800)  # with its fixtures: two clips preprocessed and the stage 1 (about 5 minutes alone)
def test_cmmm_from_one_speaker_predicts_another_speakers_mouth(long_pair, stage1_400):
    tmp, (seen, unseen) = long_pair
    net, cfg = load_cmmm(stage1_400)
    r = mouth_transfer_r(net, cfg.data.window, unseen)
    pred, opening = predicted_opening(net, cfg.data.window, unseen)
    shifted = [pearson(pred, np.roll(opening, s)) for s in SHIFTS]
    untrained = build_net(cfg)  # no step: the mean predictor, deaf to the sound
    loud = loudness_r(unseen)
    print(f"long2 (never heard): trained r {r['all']:.3f} (train frames {r['train']:.3f}, held-out {r['val']:.3f}), "
          f"shifted {[round(x, 3) for x in shifted]}, loudness alone {loud:.3f}")
    assert r["all"] > BOUND, r
    u_pred, _ = predicted_opening(untrained.eval(), cfg.data.window, unseen)
    assert np.ptp(u_pred) < 1e-6, "an untrained CMMM predicts the same mouth for every frame"
    assert max(abs(x) for x in shifted) < r["all"] / 2, shifted  # it follows this moment's speech


LIP_SYNC_CONFIG = REPO / "experiments" / "hm_talker.yaml"  # the default model
LIP_SYNC_STEPS = 1000
CROSS_MIN = 0.15  # issue 16: above 0.15 ...
DEAF_MARGIN = 0.15  # ... and this far above the same weights with every audio input silenced


def _fit_long1(long_pair, stage1_400, name: str, steps: int, *overrides: str):
    """The default model fitted on long1 (seed 0) over the 400-step stage 1, validated and saved once at the
    end; NAME = "dir/run" under the module's folder. Returns the run folder."""
    from hm_talker.training.fit import fit

    tmp, (seen, _) = long_pair
    folder, run_name = name.split("/")
    return fit(str(LIP_SYNC_CONFIG), [
        f"data.root={seen}", f"run.dir={tmp / folder}", f"run.name={run_name}", "seed=0", "data.num_workers=0",
        f"trainer.max_steps={steps}", f"trainer.val_every={steps}", f"trainer.checkpoint_every={steps}",
        f"cmmm.ckpt={stage1_400}", *overrides], False)


@pytest.mark.timeout(3600)
def test_a_model_of_long1_follows_long2s_speech_in_its_validation(long_pair, stage1_400):
    """Lip sync on real speech, end to end, where the researcher reads it: the default model fitted on long1
    (French, 128 px, 1000 steps, the 400-step stage 1 above) is driven in its validation by long2's sound
    (Obama, all 34 s: a speaker, language and recording no part of the model saw) and its mouth scored against
    Obama's real mouth (`val/cross_mouth_r`); the same weights with every audio input silenced
    (`eval.deaf_control`) are the chance level of that reference (the replayed head motion, blinks and
    background alone). A model that ignores its audio, an untrained one, or one whose mouth follows only the
    training speaker's voice fails. Measured with the formant head (CMMM's default) over all 34 s: 0.416, deaf
    0.079 (margin 0.34); over its first 20 s, as this test read it before: 0.276, deaf 0.081, in every run on a
    2-core CPU now that CPU fits are deterministic (`trainer.deterministic_cpu`); before, four
    runs of this one seed gave 0.23 to 0.37, deaf -0.08 to 0.09 (one of them, 0.229 against a deaf 0.086, failed
    the margin: the spread of a 20 s reference, not of the method). Before the formant head: 0.27 to 0.32 over
    three seeds, deaf -0.04 to -0.08; at the former lr_networks of 5e-4 anywhere from 0.01 to 0.39 (the mouth of
    some fits did not answer its AU input), which is what this test caught."""
    import json

    run = _fit_long1(long_pair, stage1_400, "fits/long1", LIP_SYNC_STEPS,
                     f"eval.drive_video={real_file('long2_obama_30fps.mp4')}", "eval.deaf_control=true",
                     "eval.cross_seconds=0")
    m = json.loads((run / "summary.json").read_text())["metrics"]
    cross, deaf = m["val/cross_mouth_r"], m["val/cross_mouth_r_deaf"]
    print(f"long1 driven by long2: val/cross_mouth_r {cross:.3f} (amp {m['val/cross_mouth_amp']:.2f}, jitter "
          f"{m['val/cross_mouth_jitter']:.2f}), deaf {deaf:.3f}; self-driven val/mouth_r {m['val/mouth_r']:.3f}")
    assert cross > CROSS_MIN, m
    assert cross - deaf > DEAF_MARGIN, m
    gain = [m[f"val/cross/long2_obama_30fps/mouth_r_gain{s}"] for s in ("", "_lo", "_hi")]
    print(f"mouth_r over the deaf control on the same frames: {gain[0]:.3f} [{gain[1]:.3f}, {gain[2]:.3f}]")
    assert gain[1] > 0, m  # above its deaf control by the paired interval (measured 0.337 [0.170, 0.496])


REPRO_STEPS = 500  # the first 400 steps of a 128 px long1 fit agree without deterministic algorithms; by 500 they part


@pytest.mark.timeout(1800)
def test_two_cpu_fits_of_one_seed_end_at_the_same_weights(long_pair, stage1_400):
    """Reproducibility on the CPU: two fits of the default model with one seed on one machine end at the same
    weights, bit for bit. Without torch's deterministic algorithms (`trainer.deterministic_cpu=false`) the
    backward of indexed gathers sums over threads in whatever order they finish: two 500-step fits of this
    clip parted after step 400 and this test failed with 56 of 119 tensors different (at 1000 steps one seed
    scored long2-driven mouth_r 0.37 in one run and 0.33 in the next)."""
    import torch

    weights = []
    for i in range(2):
        run = _fit_long1(long_pair, stage1_400, f"repro/r{i}", REPRO_STEPS, "eval.lip_sync=false")
        weights.append(torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"])
    assert weights[0].keys() == weights[1].keys()
    differing = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert not differing, f"{len(differing)} of {len(weights[0])} tensors differ, e.g. {differing[:3]}"
