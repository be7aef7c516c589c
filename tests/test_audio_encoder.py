"""Tests for the windowed audio encoder with temporal attention."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from hm_talker.model.audio_encoder import AudioEncoder
from hm_talker.model.config import AudioEncoderConfig

MEL = AudioEncoderConfig()  # k=4 rows of 80 log-mel bins per video frame
HUBERT_BASE = AudioEncoderConfig(feature_dim=768, rows_per_frame=2)
HUBERT_LARGE = AudioEncoderConfig(feature_dim=1024, rows_per_frame=2, condition_dim=32, window=16)


@pytest.mark.parametrize("cfg", [MEL, HUBERT_BASE, HUBERT_LARGE], ids=["mel", "hubert-base", "hubert-large"])
def test_shapes_and_weights_sum_to_one(cfg):
    torch.manual_seed(0)
    enc = AudioEncoder(cfg)
    x = torch.randn(3, cfg.window, cfg.rows_per_frame, cfg.feature_dim)
    cond, weights = enc(x)
    assert cond.shape == (3, cfg.condition_dim) and enc.output_dim == cfg.condition_dim
    assert weights.shape == (3, cfg.window)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert enc.encode_frames(x).shape == (3, cfg.window, cfg.condition_dim)


def test_output_changes_with_centre_frame():
    torch.manual_seed(0)
    enc = AudioEncoder(MEL)
    x = torch.randn(2, MEL.window, MEL.rows_per_frame, MEL.feature_dim)
    cond, _ = enc(x)
    y = x.clone()
    y[:, enc.centre_index] = torch.randn_like(y[:, enc.centre_index])
    cond2, _ = enc(y)
    assert (cond - cond2).abs().max() > 1e-4
    # Changing only sample 0 leaves sample 1 alone (no mixing across the batch).
    z = x.clone()
    z[0, enc.centre_index] += torch.randn_like(z[0, enc.centre_index])
    cond3, _ = enc(z)
    assert (cond3[0] - cond[0]).abs().max() > 1e-4
    torch.testing.assert_close(cond3[1], cond[1])


def test_without_attention_uses_centre_frame_only():
    torch.manual_seed(0)
    cfg = AudioEncoderConfig(use_attention=False)
    enc = AudioEncoder(cfg)
    x = torch.randn(2, cfg.window, cfg.rows_per_frame, cfg.feature_dim)
    cond, weights = enc(x)
    expected = torch.zeros(2, cfg.window)
    expected[:, cfg.window // 2] = 1.0
    torch.testing.assert_close(weights, expected)
    y = x.clone()
    y[:, 0] += 5.0  # a non-centre frame
    torch.testing.assert_close(enc(y)[0], cond)


def test_loudness_reaches_the_condition_by_default():
    # A uniformly louder centre frame (constant dB shift) must change the condition: loudness is
    # the main cue for mouth opening, which a per-row LayerNorm would erase.
    torch.manual_seed(0)
    enc = AudioEncoder(MEL)
    x = torch.randn(1, MEL.window, MEL.rows_per_frame, MEL.feature_dim)
    y = x.clone()
    y[:, enc.centre_index] += 2.0
    assert (enc(x)[0] - enc(y)[0]).abs().max() > 1e-4


def test_gradients_reach_frame_encoder_and_attention():
    torch.manual_seed(0)
    enc = AudioEncoder(MEL)
    x = torch.randn(4, MEL.window, MEL.rows_per_frame, MEL.feature_dim)
    cond, _ = enc(x)
    cond.square().sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_shapes_and_config():
    enc = AudioEncoder(MEL)
    with pytest.raises(ValueError):
        enc(torch.randn(2, MEL.window, 2, MEL.feature_dim))  # wrong k
    with pytest.raises(ValueError):
        enc(torch.randn(MEL.window, MEL.rows_per_frame, MEL.feature_dim))  # missing batch
    with pytest.raises(ValueError):
        AudioEncoder(AudioEncoderConfig(attention_channels=[16, 4]))
    with pytest.raises(ValueError):
        AudioEncoder(AudioEncoderConfig(conv_kernel=2))


def test_builds_from_omegaconf():
    cfg = OmegaConf.structured(AudioEncoderConfig)
    cfg.feature_dim = 1024
    cfg.rows_per_frame = 2
    cfg.input_layer_norm = True
    enc = AudioEncoder(cfg)
    cond, weights = enc(torch.randn(1, 8, 2, 1024))
    assert cond.shape == (1, 64) and weights.shape == (1, 8)
