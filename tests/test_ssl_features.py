"""HuBERT / wav2vec2 features end to end on a real short clip: preprocess, fit-cmmm, fit, infer, evaluate,
with tiny randomly initialised models built by transformers from a config and saved to a temporary
folder (nothing is downloaded). CMMM's speaker-free speech window comes from the sound itself."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SMALL, real_file
from hm_talker.cli import main


def tiny_ssl_model(kind: str, folder):
    """A randomly initialised HuBERT / wav2vec2 with the real models' 20 ms stride (the conv stack's
    kernels and strides), small widths: what `--audio-model` points at."""
    transformers = pytest.importorskip("transformers")
    cls = {"hubert": (transformers.HubertConfig, transformers.HubertModel),
           "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model)}[kind]
    cfg = cls[0](hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    import torch

    torch.manual_seed(0)
    cls[1](cfg).eval().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2"])
def test_ssl_features_train_drive_and_evaluate(kind, tmp_path):
    clip = real_file("face2.mp4")
    model = tiny_ssl_model(kind, tmp_path / kind)
    ident = tmp_path / "ident"
    assert main(["-q", "preprocess", str(clip), "--out", str(ident), "--size", "64", "--audio-features", kind,
                 "--audio-model", str(model)]) == 0
    manifest = json.loads((ident / "manifest.json").read_text())
    assert manifest["features"]["audio"]["shape"] == [2, 32]  # 50 Hz states: 2 per 40 ms frame
    assert manifest["features"]["speech"]["shape"] == [4, 2]  # energy / flux per 10 ms, from the sound
    speech = np.load(ident / "features.npz")["speech"]
    assert np.isfinite(speech).all() and speech.std() > 0.5  # z-scored per clip
    runs = tmp_path / "runs"
    assert main(["-q", "fit-cmmm", f"data.roots=[{ident}]", f"run.dir={runs}", "run.name=cmmm",
                 "trainer.max_steps=3", "trainer.val_every=3", "data.batch_size=8"]) == 0
    assert main(["-q", "fit", f"data.root={ident}", f"run.dir={runs}", "run.name=fit", "trainer.max_steps=3",
                 *SMALL, f"cmmm.ckpt={runs / 'cmmm' / 'checkpoints' / 'last.ckpt'}"]) == 0
    ckpt = runs / "fit" / "checkpoints" / "last.ckpt"
    summary = json.loads((runs / "fit" / "summary.json").read_text())["metrics"]
    assert summary["val/psnr_face"] is not None
    from hm_talker.synthetic import make_synthetic_speech

    make_synthetic_speech(tmp_path / "speech.wav", seconds=1.0, seed=2)
    assert main(["-q", "infer", "--ckpt", str(ckpt), "--audio", str(tmp_path / "speech.wav"), "--out",
                 str(tmp_path / "driven.mp4"), "--audio-model", str(model)]) == 0
    assert (tmp_path / "driven.mp4").is_file()
    assert main(["-q", "evaluate", "--ckpt", str(ckpt), "--data", str(ident), "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["num_frames"] == manifest["splits"]["val"] and m["psnr_face"] is not None
