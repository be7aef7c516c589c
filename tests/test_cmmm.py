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
    # without the ridge of the default head (cmmm.loss.speech_l2): it shrinks the raw predictions towards the mean
    # (the fit's calibration restores their spread), so their error against the mean predictor's is read unshrunk;
    # the default head's transfer is tests/test_cmmm_transfer.py's
    return fit_cmmm(None, [f"data.roots=[{long_identity}]", f"run.dir={tmp_path_factory.mktemp('runs')}",
                           "run.name=stage1", "trainer.max_steps=300", "trainer.val_every=300", "data.batch_size=32", "seed=0",
                           "cmmm.loss.speech_l2=0"])


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


def test_the_frame_head_reads_each_frames_mean_speech_and_its_ridge_shrinks_it():
    """The default AU head on the speech window (`speech_head=frame`) is a linear map of each frame's mean over
    its 10 ms rows (a change inside one frame's rows that keeps their mean changes nothing; a change of a frame's
    mean does), and `cmmm.loss.speech_l2` is the sum of its squared weights in the stage-1 loss: on the same
    batches, the ridge ends with a much smaller head whose predictions still follow the AUs (calibration restores their spread)."""
    from hm_talker.config.cmmm import CMMMLossConfig
    from hm_talker.model.cmmm import CMMM, FrameSpeech
    from hm_talker.model.config import AudioEncoderConfig, CMMMNetConfig
    from hm_talker.training.cmmm_module import cmmm_losses

    torch.manual_seed(0)
    net = CMMM(AudioEncoderConfig(feature_dim=8, window=4), CMMMNetConfig())
    assert isinstance(net.speech_head, FrameSpeech)
    assert not net.speech_head.out.weight.any()  # starts at the mean predictor: no chance correlation with loudness
    torch.nn.init.normal_(net.speech_head.out.weight)
    speech = torch.randn(3, 16, 4, 2)
    swapped = speech.clone()
    swapped[:, :, [0, 1]] = speech[:, :, [1, 0]]  # the rows inside each frame reordered: same means
    assert torch.allclose(net.speech_head(speech), net.speech_head(swapped), atol=1e-6)
    louder = speech.clone()
    louder[:, 5] += 1.0
    assert not torch.allclose(net.speech_head(speech), net.speech_head(louder))

    # AUs that a linear map of the frames' mean energy predicts; the same 200 steps with and without the ridge
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 16, 4, 2, generator=gen)
    aus = (2.0 + x.mean(2)[:, 8, 0:1] * torch.ones(1, 17)).clamp(0, 5)
    sizes, follows = {}, {}
    for l2 in (0.0, 1.0):
        torch.manual_seed(0)
        net = CMMM(AudioEncoderConfig(feature_dim=8, window=4, conv_channels=[8, 8], fc_hidden_dim=8), CMMMNetConfig())
        opt = torch.optim.Adam(net.speech_head.parameters(), lr=1e-2)
        batch = {"audio_window": torch.zeros(256, 4, 4, 8), "speech_window": x, "aus": aus}
        for _ in range(200):
            terms = cmmm_losses(net, batch, CMMMLossConfig(speech_l2=l2, align=0.0))
            opt.zero_grad()
            terms["total"].backward()
            opt.step()
        assert ("speech_l2" in terms) == (l2 > 0)
        sizes[l2] = float(net.speech_head.out.weight.pow(2).sum())
        pred = terms["pred_aus"][:, 0]
        follows[l2] = float(torch.corrcoef(torch.stack([pred, aus[:, 0]]))[0, 1])
    assert sizes[1.0] < 0.5 * sizes[0.0], sizes
    assert min(follows.values()) > 0.95, follows
