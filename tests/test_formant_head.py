"""CMMM's formant head (cmmm.net.formant_share): what it learns, and the road its formant rows take from
preprocessing through stage 1, the fit and inference."""
import json

import numpy as np
import pytest
import torch

from hm_talker.constants import JAW_AU_IDX
from hm_talker.data.windows import Windows
from hm_talker.errors import InputError
from hm_talker.metrics.correlation import pearson
from hm_talker.model.cmmm import CMMM
from hm_talker.model.config import AudioEncoderConfig, CMMMNetConfig
from hm_talker.training.formant_head import fit_formant_head

from conftest import SMALL

JAW = list(JAW_AU_IDX)  # AU25, AU26


def _windows(n: int, seed: int):
    """Speech rows whose energy says nothing about the mouth and whose F1 row says it nonlinearly: the
    opening is |F1| of the frame (a vowel's jaw reads from F1, not from how loud it is)."""
    rng = np.random.default_rng(seed)
    speech = rng.standard_normal((n, 4, 6)).astype(np.float32)
    f1 = np.convolve(rng.standard_normal(n), np.ones(3) / 3, mode="same").astype(np.float32)
    speech[:, :, 2] = f1[:, None]
    aus = np.full((n, 17), 1.0, np.float32)
    aus[:, JAW] = (1.0 + 1.5 * np.abs(f1))[:, None]
    audio = rng.standard_normal((n, 4, 8)).astype(np.float32)
    return Windows(audio, aus, np.zeros(n, np.int64), 4, speech, 16), np.abs(f1)


def test_the_head_learns_what_the_linear_map_cannot_and_blends_with_it():
    torch.manual_seed(0)
    cfg = CMMMNetConfig(speech_rows=4, formant_epochs=30)
    assert cfg.formant_share == 0.5  # the default model's
    net = CMMM(AudioEncoderConfig(feature_dim=8, window=4, conv_channels=[8, 8], fc_hidden_dim=8), cfg)
    torch.nn.init.normal_(net.speech_head.out.weight, std=0.1)  # some linear map of the window
    train, _ = _windows(1500, 0)
    test, truth = _windows(400, 1)
    batch = test.speech_batch(range(400))

    def mouth(net_):
        net_.eval()
        with torch.no_grad():
            return net_(batch["audio_window"], batch["speech_window"])["raw_aus"][:, JAW].sum(1).numpy()

    linear = mouth(net)
    assert abs(pearson(linear, truth)) < 0.2  # a linear map of the rows cannot read |F1|
    fit_formant_head(net, [(train, 1500)], [1.0] * 17, seed=0)
    assert bool(net.formant_head.ready)
    blended = mouth(net)
    assert pearson(blended, truth) > 0.6  # on frames it never saw
    # share 0 would be the linear head alone: the blend is (1 - s) z_lin + s z_head, in the linear head's units
    net.cfg.formant_share = 0.0
    assert np.allclose(mouth(net), linear, atol=1e-5)


@pytest.fixture(scope="module")
def formant_stage1(tmp_path_factory):
    """A 16 s synthetic talker (its stored formant rows) and a short stage 1 with the formant head."""
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip
    from hm_talker.training.fit_cmmm import fit_cmmm

    tmp = tmp_path_factory.mktemp("formants")
    clip = make_synthetic_clip(tmp / "talker.mp4", seconds=16.0, size=256, seed=5)
    ident = tmp / "ident"
    preprocess([clip.path], ident, PreprocessConfig(size=64, shard_frames=64))
    run = fit_cmmm(None, [f"data.roots=[{ident}]", f"run.dir={tmp / 'runs'}", "run.name=s1", "trainer.max_steps=100",
                          "trainer.val_every=100", "data.batch_size=32", "cmmm.net.formant_share=0.5",
                          "run.wandb_mode=disabled"])
    return clip, ident, run / "checkpoints" / "last.ckpt"


def test_preprocess_stores_formant_rows_that_follow_the_voice(formant_stage1):
    clip, ident, _ = formant_stage1
    manifest = json.loads((ident / "manifest.json").read_text())
    with np.load(ident / "features.npz") as f:
        formants, n = f["formants"], len(f["aus"])
    assert formants.shape == (n, 4, 4) and manifest["features"]["formants"]["shape"] == [4, 4]
    voiced = formants[:, :, 3].mean(1)
    # the synthetic voice is voiced while it speaks: Praat's voicing follows the talker's known mouth opening
    assert pearson(voiced, clip.mouth_open[:n]) > 0.5


def test_fit_and_infer_read_the_formant_rows(formant_stage1, tmp_path):
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.driving.infer import infer
    from hm_talker.training.fit import fit

    clip, ident, ckpt = formant_stage1
    run = fit(None, [f"data.root={ident}", f"run.dir={tmp_path}", "run.name=f", "trainer.max_steps=3",
                     f"cmmm.ckpt={ckpt}", "cmmm.net.formant_share=0.5", *SMALL], False)
    module, _, _ = load_module(run / "checkpoints" / "last.ckpt")
    assert module.cmmm.formant_head is not None and bool(module.cmmm.formant_head.ready)
    stage1 = torch.load(ckpt, weights_only=True)["state_dict"]
    assert torch.equal(module.cmmm.formant_head.nets[0][1].weight, stage1["net.formant_head.nets.0.1.weight"])
    out = infer(run / "checkpoints" / "last.ckpt", clip.path, tmp_path / "driven.mp4")
    assert (tmp_path / "driven.mp4").is_file() and out["frames"] > 0
    with pytest.raises(InputError, match="formant_share"):  # a stage 1 with the head into a fit without it
        fit(None, [f"data.root={ident}", f"run.dir={tmp_path}", "run.name=g", "trainer.max_steps=1",
                   f"cmmm.ckpt={ckpt}", "cmmm.net.formant_share=0", *SMALL], False)


def test_an_identity_without_formant_rows_is_refused(formant_stage1, tmp_path):
    from hm_talker.data.windows import speech_features

    _, ident, _ = formant_stage1
    manifest = json.loads((ident / "manifest.json").read_text())
    with np.load(ident / "features.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "formants"}
    assert speech_features(manifest, arrays, 16)[0].shape[-1] == 2
    with pytest.raises(InputError, match="preprocess again"):
        speech_features(manifest, arrays, 16, formants=True)
