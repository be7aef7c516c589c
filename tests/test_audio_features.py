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


# --- issue 19, item 4: any frame rate (rows resampled to the frame clock, k as at 25 fps)
from hm_talker.preprocess.audio_features import frame_start, frames_in  # noqa: E402

MEL = (80, 160, 400, 55.0, 7600.0)  # n_mels, hop, win, fmin, fmax: the defaults


def _log_mel_before(audio, num_frames, sr, fps, n_mels, hop, win, fmin, fmax):
    """log_mel as it was before any-fps support (commit 3eba6cb), verbatim: the 25 fps reference."""
    import torch

    from hm_talker.preprocess.audio_features import _mel_basis

    per_frame = sr // fps
    if per_frame % hop:
        raise ValueError(f"mel hop {hop} must divide the samples per frame {per_frame}")
    k = per_frame // hop
    n_fft = 1 << (win - 1).bit_length()
    y = np.zeros(num_frames * per_frame, dtype=np.float32)
    y[: min(len(audio), len(y))] = audio[: len(y)]
    spec = torch.stft(torch.from_numpy(y), n_fft=n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win), center=True, pad_mode="reflect",
                      return_complex=True).abs().pow(2)
    mel = _mel_basis(sr, n_fft, n_mels, fmin, fmax) @ spec
    mel = torch.log(mel.clamp_min(1e-5))[:, : num_frames * k]
    return mel.T.reshape(num_frames, k, n_mels).numpy().astype(np.float32)


def _speech_like(seconds, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.1 * rng.standard_normal(len(t)) * env + 0.2 * np.sin(2 * np.pi * 180 * t) * env).astype(np.float32)


def test_frame_start_is_exact_at_any_fps():
    assert list(frame_start(np.arange(6), 16000, 25)) == [0, 640, 1280, 1920, 2560, 3200]
    assert list(frame_start(np.arange(6), 16000, 30)) == [0, 533, 1067, 1600, 2133, 2667]  # 533.3 a frame
    assert list(frame_start(np.arange(4), 16000, 24)) == [0, 667, 1333, 2000]
    assert frame_start(30 * 3600, 16000, 30) == 16000 * 3600  # an hour at 30 fps: exactly an hour of sound,
    assert 30 * 3600 * (16000 // 30) == 16000 * 3600 - 36000  # where sr // fps fell 2.25 s short
    assert frame_start(3, 16000, 29.97) == 1602 and frames_in(96000, 16000, 30) == 180
    assert frames_in(640 * 10 + 321, 16000, 25) == 11 and frames_in(640 * 10 + 319, 16000, 25) == 10


@pytest.mark.parametrize("seconds,num_frames", [(2.0, 50), (2.0, 43), (1.3, 40), (0.5, 8)])
def test_log_mel_at_25_fps_is_bit_identical_to_before(seconds, num_frames):
    """25 fps identities keep their features bit for bit (audio shorter, longer, equal to the frames)."""
    audio = _speech_like(seconds)
    new = log_mel(audio, num_frames, 16000, 25, *MEL)
    old = _log_mel_before(audio, num_frames, 16000, 25, *MEL)
    assert new.shape == old.shape == (num_frames, 4, 80) and new.dtype == old.dtype
    assert np.array_equal(new, old)


@pytest.mark.parametrize("fps", [30, 24])
def test_log_mel_at_other_fps_keeps_k_and_follows_the_frame_clock(fps):
    """30 and 24 fps (before: 'mel hop 160 must divide the samples per frame 533'): 4 rows per frame,
    row j of frame t = the 100 Hz log-mel rows interpolated at time (t + j / 4) / fps."""
    import torch

    from hm_talker.preprocess.audio_features import _mel_basis

    n = 2 * fps
    audio = _speech_like(2.0)
    mel = log_mel(audio, n, 16000, fps, *MEL)
    assert mel.shape == (n, 4, 80) and mel.dtype == np.float32 and np.isfinite(mel).all()
    # the reference: every 10 ms row of the same samples, interpolated at the row times in float64
    y = np.zeros(frame_start(n, 16000, fps), np.float32)
    y[: len(audio)] = audio[: len(y)]
    spec = torch.stft(torch.from_numpy(y), n_fft=512, hop_length=160, win_length=400, window=torch.hann_window(400),
                      center=True, pad_mode="reflect", return_complex=True).abs().pow(2)
    rows = torch.log((_mel_basis(16000, 512, 80, 55.0, 7600.0) @ spec).clamp_min(1e-5)).T.numpy().astype(np.float64)
    times = (np.arange(n)[:, None] + np.arange(4)[None] / 4) / fps  # [n, 4] seconds
    pos = (times * 16000 / 160).reshape(-1)
    ref = np.stack([np.interp(pos, np.arange(len(rows)), rows[:, b]) for b in range(80)], 1).reshape(n, 4, 80)
    assert np.abs(mel - ref).max() < 1e-4


def test_30_fps_rows_line_up_with_frames():
    """A tone from 1.0 s to 1.5 s is loud in frames 30..44 at 30 fps (at 25: 25..37), quiet elsewhere."""
    sr = 16000
    t = np.arange(sr * 3) / sr
    audio = np.where((t >= 1.0) & (t < 1.5), np.sin(2 * np.pi * 1000 * t), 0).astype(np.float32)
    for fps, (first, last) in ((30, (30, 44)), (25, (25, 37))):
        energy = log_mel(audio, 3 * fps, sr, fps, *MEL).max(axis=(1, 2))
        loud = energy > energy.min() + 5
        assert loud[first + 1:last].all() and not loud[:first - 1].any() and not loud[last + 2:].any(), fps


def test_an_identity_sound_is_on_the_frame_clock_across_clips():
    """Clips of one frame each at 30 fps: 533 samples alone, but the second starts at sample 533 and
    ends at 1067 (= round(2 * 16000 / 30)): it is padded by one zero, so frame i of the identity starts
    at frame_start(i) in audio.wav."""
    from types import SimpleNamespace

    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import identity_sound

    clips = [SimpleNamespace(src_indices=np.arange(1), audio=np.full(533, v, np.float32)) for v in (0.1, 0.2)]
    y = identity_sound(clips, PreprocessConfig(fps=30))
    assert len(y) == 1067 and (y[:533] == np.float32(0.1)).all() and (y[533:1066] == np.float32(0.2)).all()
    assert y[1066] == 0
    clips25 = [SimpleNamespace(src_indices=np.arange(3), audio=np.full(1920, v, np.float32)) for v in (0.1, 0.2)]
    assert np.array_equal(identity_sound(clips25, PreprocessConfig()), np.concatenate([c.audio for c in clips25]))


def test_preprocess_at_30_fps(synthetic_clip, tmp_path, capsys):
    """`preprocess --set fps=30` (before: exit 1 and a traceback): a 6 s clip at 25 fps becomes 180
    frames with 4 mel rows each, and audio.wav holds exactly frame_start(180) = 96000 samples."""
    import json

    import soundfile as sf

    from hm_talker.cli import main

    out = tmp_path / "ident30"
    assert main(["-q", "preprocess", str(synthetic_clip.path), "--out", str(out), "--size", "64",
                 "--set", "fps=30"]) == 0, capsys.readouterr().err[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["fps"] == 30 and m["num_frames"] == 180
    assert m["features"]["audio"] == {"kind": "mel", "shape": [4, 80], "rows_per_frame": 4}
    with np.load(out / "features.npz") as f:
        assert f["audio"].shape == (180, 4, 80) and np.isfinite(f["audio"]).all()
    assert sf.info(out / "audio.wav").frames == frame_start(180, 16000, 30) == 96000


def test_hubert_at_30_fps_interpolates_the_50_hz_states(tmp_path):
    """k = 2 states per frame at any fps: at 25 fps states 2t and 2t + 1 themselves, at 30 fps the
    states interpolated at (t + j / 2) / 30 s (past the last state: the last state)."""
    transformers = pytest.importorskip("transformers", reason="transformers not installed (extra 'ssl')")
    import torch

    cfg = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, conv_dim=(32,) * 7,
                                    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    transformers.HubertModel(cfg).save_pretrained(tmp_path / "tiny_hubert")
    audio = np.random.default_rng(0).normal(size=16000 * 2).astype(np.float32) * 0.1
    model = transformers.HubertModel.from_pretrained(str(tmp_path / "tiny_hubert")).eval()
    with torch.no_grad():
        a = torch.from_numpy(audio)
        h = model(((a - a.mean()) / (a.std() + 1e-7))[None]).last_hidden_state[0].numpy()
    f25 = ssl_features(audio, 50, 16000, 25, str(tmp_path / "tiny_hubert"), "hubert")
    f30 = ssl_features(audio, 60, 16000, 30, str(tmp_path / "tiny_hubert"), "hubert")
    assert f25.shape == (50, 2, 32) and f30.shape == (60, 2, 32)
    pos = ((np.arange(60)[:, None] + np.arange(2)[None] / 2) / 30 * 50).reshape(-1)
    ref = np.stack([np.interp(pos, np.arange(len(h)), h[:, d]) for d in range(32)], 1).reshape(60, 2, 32)
    idx = np.minimum(np.arange(100), len(h) - 1)
    np.testing.assert_allclose(f25, h[idx].reshape(50, 2, 32), rtol=0, atol=1e-5)
    np.testing.assert_allclose(f30, ref, rtol=0, atol=1e-5)
