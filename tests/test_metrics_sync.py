"""Sync-C / Sync-D / AV offset: scoring on constructed embeddings, and the SyncNet wrapper."""

import numpy as np
import pytest
import torch

from hm_talker.metrics import sync


def _unit(rng, n, d=1024):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("k", [0, 3, -5, 15])
def test_shifted_embeddings_give_offset_k(k):
    rng = np.random.default_rng(abs(k) + 1)
    t, pad = 200, 20
    base = _unit(rng, t + 2 * pad)
    visual = base[pad:pad + t]
    # audio[i] = visual[i + k]: the sound of video frame i+k plays at audio index i, i.e. the
    # sound comes k frames before the mouth -> documented sign: av_offset = +k (video lags)
    audio = base[pad + k:pad + k + t] + 0.01 * rng.normal(size=(t, 1024)) / np.sqrt(1024)
    res = sync.sync_scores(visual, audio)
    assert res.av_offset == k
    assert res.offsets[np.argmin(res.distances)] == k
    # at the right offset only the |k| zero-padded edge frames and the noise are off
    edge = abs(k) / t * 1.0  # distance to a zero vector = |v| = 1 for unit vectors
    assert res.sync_d == pytest.approx(edge, abs=0.02)
    assert res.sync_d < 0.1
    assert res.sync_c > 1.0  # random unit vectors are sqrt(2) ~ 1.41 apart


def test_random_embeddings_have_low_confidence():
    rng = np.random.default_rng(7)
    res = sync.sync_scores(_unit(rng, 200), _unit(rng, 200))
    assert res.sync_c < 0.05
    assert res.sync_d > 1.2
    assert -15 <= res.av_offset <= 15


def test_matches_a_plain_loop_over_offsets():
    """The vectorised distances equal the definition written out frame by frame."""
    rng = np.random.default_rng(3)
    v, a = rng.normal(size=(40, 16)), rng.normal(size=(40, 16))
    vshift = 4
    d = sync.offset_distances(v, a, vshift=vshift, chunk=7).numpy()
    for i in range(40):
        for j in range(2 * vshift + 1):
            idx = i + j - vshift
            other = a[idx] if 0 <= idx < 40 else np.zeros(16)
            assert d[i, j] == pytest.approx(np.linalg.norm(v[i] - other + 1e-6), rel=1e-5)
    res = sync.sync_scores(v, a, vshift=vshift)
    curve = d.mean(axis=0)
    assert res.sync_d == pytest.approx(curve.min(), rel=1e-6)
    assert res.sync_c == pytest.approx(np.median(curve) - curve.min(), rel=1e-5)
    assert res.av_offset == vshift - int(np.argmin(curve))


def test_no_weights_gives_none_and_a_note(monkeypatch, tmp_path):
    monkeypatch.delenv(sync.ENV_VAR, raising=False)
    frames = np.zeros((10, 64, 64, 3), np.uint8)
    out = sync.compute_sync(frames, np.zeros(6400, np.float32))
    assert out["sync_c"] is None and out["sync_d"] is None and out["av_offset"] is None
    assert sync.ENV_VAR in out["note"]
    monkeypatch.setenv(sync.ENV_VAR, str(tmp_path / "missing.model"))
    out = sync.compute_sync(frames, np.zeros(6400, np.float32))
    assert out["sync_d"] is None and "not found" in out["note"]
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a checkpoint")
    out = sync.compute_sync(frames, np.zeros(6400, np.float32), weights=bad)
    assert out["sync_d"] is None and out["note"].startswith("SyncNet failed")


def test_audio_preprocessing_matches_syncnet_conventions():
    x = np.array([0.0, 0.5, -1.0, 1.0])
    np.testing.assert_array_equal(sync.audio_to_int16_scale(x, 16000), [0, 16384, -32768, 32767])
    ints = np.array([1, -2, 3], np.int16)
    np.testing.assert_array_equal(sync.audio_to_int16_scale(ints, 16000), [1, -2, 3])
    assert len(sync.audio_to_int16_scale(np.zeros(48000), 48000)) == 16000


def test_wrapper_runs_syncnet_with_given_weights(tmp_path):
    """Random-init weights in syncnet_v2's layout: checks loading, preprocessing and shapes."""
    from syncnet_python.SyncNetModel import S

    torch.manual_seed(0)
    net = S(num_layers_in_fc_layers=1024)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = tmp_path / "syncnet_v2.model"
    torch.save(state, weights)  # like the 2017 file: no num_batches_tracked buffers

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(12, 96, 96, 3), dtype=np.uint8)  # resized to 224
    audio = rng.normal(0, 0.1, size=12 * 640).astype(np.float32)
    scorer = sync.SyncNetScorer(weights, device="cpu")
    vid = scorer.prepare_frames(frames)
    assert vid.shape == (1, 3, 12, 224, 224)
    # BGR order, 0..255 floats (what cv2.imread frames give syncnet_python)
    rgb = np.zeros((1, 50, 50, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    np.testing.assert_array_equal(scorer.prepare_frames(rgb)[0, :, 0, 100, 100].numpy(), [30, 20, 10])
    v, a = scorer.embed(frames, audio, 16000)
    assert v.shape == a.shape == (12 - 5, 1024)
    out = sync.compute_sync(frames, audio, 16000, weights=weights, device="cpu")
    assert out["note"] is None
    assert isinstance(out["av_offset"], int) and -15 <= out["av_offset"] <= 15
    assert out["sync_d"] > 0 and out["sync_c"] >= 0
    short = sync.compute_sync(frames[:4], audio, 16000, weights=weights, device="cpu")
    assert short["sync_d"] is None and "too short" in short["note"]
