"""Audio features: frame alignment of the log-mel, and HuBERT/wav2vec2 from local weights only."""
from __future__ import annotations

import numpy as np
import pytest

from hm_talker.errors import InputError
from hm_talker.preprocess.audio_features import log_mel, ssl_features


def test_log_mel_rows_line_up_with_frames():
    sr, fps = 16000, 25
    t = np.arange(sr * 2) / sr
    audio = np.zeros_like(t, dtype=np.float32)
    audio[640 * 20: 640 * 30] = np.sin(2 * np.pi * 1000 * t[640 * 20: 640 * 30])  # frames 20..29 loud
    mel = log_mel(audio, 50, sr, fps, 80, 160, 400, 55.0, 7600.0)
    assert mel.shape == (50, 4, 80)
    energy = mel.max(axis=(1, 2))
    loud = energy > energy.min() + 5
    assert loud[21:29].all() and not loud[:19].any() and not loud[31:].any()


def test_ssl_features_need_local_weights(tmp_path):
    audio = np.zeros(16000, np.float32)
    with pytest.raises(InputError, match="needs --audio-model"):
        ssl_features(audio, 25, 16000, 25, "", "hubert")
    with pytest.raises(InputError, match="no config.json"):
        ssl_features(audio, 25, 16000, 25, str(tmp_path / "nowhere"), "hubert")


def test_hubert_from_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers not installed (extra 'ssl')")
    cfg = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, conv_dim=(32,) * 7,
                                    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    transformers.HubertModel(cfg).save_pretrained(tmp_path / "tiny_hubert")
    audio = np.random.default_rng(0).normal(size=16000 * 2).astype(np.float32) * 0.1
    feats = ssl_features(audio, 50, 16000, 25, str(tmp_path / "tiny_hubert"), "hubert")
    assert feats.shape == (50, 2, 32) and np.isfinite(feats).all()
    assert np.abs(feats[10] - feats[40]).max() > 0  # real features, not padding
