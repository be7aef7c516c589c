"""CMMM (stage 1): from audio alone it predicts the mouth AUs better than the mean predictor and ranks
the true audio/AU offset first more often than chance, on held-out frames of a synthetic talker whose
mouth follows its sound; its checkpoint loads into an identity's fit."""
import json

import pytest
import torch

from hm_talker.training.fit_cmmm import fit_cmmm


@pytest.fixture(scope="module")
def long_identity(tmp_path_factory):
    """A 16 s synthetic talker at 64 px (364 train / 36 held-out frames)."""
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip

    tmp = tmp_path_factory.mktemp("cmmm")
    clip = make_synthetic_clip(tmp / "talker16.mp4", seconds=16.0, size=256, seed=4)
    preprocess([clip.path], tmp / "ident", PreprocessConfig(size=64, shard_frames=64))
    return tmp / "ident"


@pytest.fixture(scope="module")
def cmmm_run(long_identity, tmp_path_factory):
    return fit_cmmm(None, [f"data.roots=[{long_identity}]", f"run.dir={tmp_path_factory.mktemp('runs')}",
                           "run.name=stage1", "trainer.max_steps=300", "trainer.val_every=300", "data.batch_size=32", "seed=0"])


def test_cmmm_beats_the_mean_predictor_and_chance(cmmm_run):
    m = json.loads((cmmm_run / "summary.json").read_text())["metrics"]
    # the mean predictor (every frame = the held-out mean, which it cannot know) vs audio-only prediction
    assert m["au_mae_lower"] < 0.8 * m["mean_predictor_mae_lower"], m
    assert m["mouth_au_r"] > 0.6, m
    assert m["sync_acc"] > 2 * m["sync_chance"], m


def test_untrained_cmmm_does_not(long_identity, tmp_path):
    run = fit_cmmm(None, [f"data.roots=[{long_identity}]", f"run.dir={tmp_path}", "run.name=s0",
                          "trainer.max_steps=1", "trainer.val_every=1", "seed=0"])
    m = json.loads((run / "summary.json").read_text())["metrics"]
    assert m["mouth_au_r"] < 0.6 or m["au_mae_lower"] > 0.8 * m["mean_predictor_mae_lower"], m


def test_stage1_checkpoint_loads_into_a_fit(cmmm_run, long_identity, tmp_path):
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.training.fit import fit

    from conftest import SMALL

    ckpt = cmmm_run / "checkpoints" / "last.ckpt"
    run = fit(None, [f"data.root={long_identity}", f"run.dir={tmp_path}", "run.name=frozen", "trainer.max_steps=3",
                     f"cmmm.ckpt={ckpt}", "cmmm.freeze=true", *SMALL], False)
    module, _, _ = load_module(run / "checkpoints" / "last.ckpt")
    stage1 = torch.load(ckpt, weights_only=True)["state_dict"]
    fit_owned = ("audio_mean", "audio_std", "pred_mean", "pred_std", "meas_mean", "meas_std")  # this identity's
    for key, value in module.cmmm.state_dict().items():
        if key.startswith("au_encoder."):  # the explicit-feature encoder is HMMM's to train
            continue
        if key not in fit_owned:
            assert torch.equal(value, stage1[f"net.{key}"]), key  # frozen: unchanged by the fit
    assert not torch.equal(module.cmmm.meas_std, torch.ones(17)), "calibrated on the identity's measured AUs"
