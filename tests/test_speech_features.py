"""Speaker-normalised audio features: gain/tilt invariance, and they predict the synthetic mouth."""
from __future__ import annotations

import numpy as np
import pytest

from hm_talker.preprocess.audio_features import log_mel
from hm_talker.preprocess.speech_features import (cmvn, frame_energy, mouth_audio_features,
                                                   mouth_window_features, with_deltas)
from hm_talker.synthetic.speech import mouth_envelope, synthesize_speech

SR, FPS = 16000, 25


def _mel(audio: np.ndarray, n: int) -> np.ndarray:
    return log_mel(audio, n, SR, FPS, 80, 160, 400, 55.0, 7600.0)


def _tilted(audio: np.ndarray, gain_db: float, pre_emphasis: float) -> np.ndarray:
    """Another 'microphone': a gain and a first-order spectral tilt y[n] = x[n] - a x[n-1]."""
    y = audio.astype(np.float64).copy()
    y[1:] -= pre_emphasis * audio[:-1]
    return (y * 10 ** (gain_db / 20)).astype(np.float32)


def test_gain_and_tilt_leave_the_features_nearly_unchanged():
    audio = synthesize_speech(6.0, SR, seed=1)
    audio = audio + np.random.default_rng(1).normal(scale=0.01, size=audio.shape).astype(np.float32)  # room
    n = len(audio) // (SR // FPS)
    a, b = _mel(audio, n), _mel(_tilted(audio, -6.0, 0.5), n)
    raw_err = np.abs(a - b).mean() / a.std()
    assert raw_err > 0.3  # log-mel itself moves by a third of its spread
    for feat in (cmvn, frame_energy):
        fa, fb = feat(a), feat(b)
        r = np.corrcoef(fa.ravel(), fb.ravel())[0, 1]
        assert r > 0.98, (feat.__name__, r)
    assert np.abs(cmvn(a) - cmvn(b)).mean() < 0.1  # in units of each band's std


def test_cmvn_removes_a_constant_offset_exactly():
    mel = np.random.default_rng(0).normal(scale=0.5, size=(20, 4, 8)).astype(np.float32)
    shifted = mel + np.linspace(-2, 2, 8, dtype=np.float32)  # per-band offset (tilt/colouring)
    np.testing.assert_allclose(cmvn(mel), cmvn(shifted), atol=1e-5)
    out = cmvn(mel).reshape(-1, 8)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1, atol=1e-4)
    assert with_deltas(mel).shape == (20, 4, 16)


def test_energy_predicts_the_synthetic_mouth_of_unheard_speech():
    """Ridge on the energy window, fitted on one synthetic utterance, tested on another seed's
    speech against the generator's own mouth opening (the truth the clip is drawn from)."""
    def data(seed):
        audio = synthesize_speech(8.0, SR, seed=seed)
        n = len(audio) // (SR // FPS)
        x = mouth_window_features(frame_energy(_mel(audio, n)), window=8)
        return x, mouth_envelope(audio, SR, FPS, n)

    x, y = data(0)
    xt, yt = data(1)
    x1 = np.c_[x, np.ones(len(x))]
    w = np.linalg.solve(x1.T @ x1 + 1.0 * np.eye(x1.shape[1]), x1.T @ y)
    pred = np.c_[xt, np.ones(len(xt))] @ w
    r = np.corrcoef(pred, yt)[0, 1]
    assert r > 0.8, r
    assert 0.6 < pred.std() / yt.std() < 1.4


def test_clips_of_one_identity_are_normalised_separately():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 4, 80)).astype(np.float32)
    b = rng.normal(size=(20, 4, 80)).astype(np.float32) + 3.0  # a louder second recording
    ids = np.r_[np.zeros(30, int), np.ones(20, int)]
    both = mouth_audio_features(np.concatenate([a, b]), "energy", clip_ids=ids)
    np.testing.assert_allclose(both[:30], mouth_audio_features(a, "energy"), atol=1e-5)
    np.testing.assert_allclose(both[30:], mouth_audio_features(b, "energy"), atol=1e-5)
    assert mouth_audio_features(a, "energy+cmvn").shape == (30, 4, 82)


def test_phones_mark_speech_and_silence():
    pytest.importorskip("pocketsphinx", reason="pocketsphinx not installed (extra 'phones')")
    from hm_talker.preprocess.phones import PHONES, phone_features

    speech = synthesize_speech(4.0, SR, seed=3)
    audio = np.concatenate([np.zeros(2 * SR, np.float32), speech, np.zeros(2 * SR, np.float32)])
    n = len(audio) // (SR // FPS)
    ph = phone_features(audio, n, SR, FPS, 160)
    assert ph.shape == (n, 4, len(PHONES)) and np.allclose(ph.sum(-1), 1)
    sil = ph[..., 0].mean(1)  # [T] share of silence rows per frame
    loud = mouth_envelope(audio, SR, FPS, n) > 0.2
    assert sil[5:45].mean() > 0.9 and sil[-45:-5].mean() > 0.9  # the silent seconds
    assert sil[loud].mean() < 0.3  # frames where the synthetic mouth is open are phones


def _vowel(f0: float, formants: tuple[float, ...], seconds: float) -> np.ndarray:
    """A glottal pulse train at f0 through two-pole resonators at `formants` (Hz, 80 Hz wide): a vowel
    whose formants are known."""
    from scipy.signal import lfilter

    n = int(seconds * SR)
    x = np.zeros(n)
    x[:: int(SR / f0)] = 1.0
    x = lfilter([1.0], [1.0, -0.9], x)  # a voice's -6 dB/octave roll-off (glottal source and lip radiation)
    for f in formants:
        r = np.exp(-np.pi * 80.0 / SR)
        x = lfilter([1.0 - r], [1.0, -2 * r * np.cos(2 * np.pi * f / SR), r * r], x)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_formants_read_the_synthesised_vowels():
    from hm_talker.preprocess.formants import formant_features, formant_tracks

    a, i = _vowel(120, (750, 1200, 2600, 3500, 4500), 1.0), _vowel(120, (300, 2300, 3000, 3700, 4500), 1.0)  # /a/, /i/
    audio = np.concatenate([a, i, np.zeros(SR // 2, np.float32)])
    times = np.array([0.5, 1.5])
    f, voiced = formant_tracks(audio, SR, times)
    assert voiced.all()
    np.testing.assert_allclose(f[:, 0], [750, 300], rtol=0.12)  # F1: open vs close vowel
    np.testing.assert_allclose(f[:, 1], [1200, 2300], rtol=0.12)  # F2: back vs front
    n = len(audio) // (SR // FPS)
    z = formant_features(audio, n, SR, FPS, 160)
    assert z.shape == (n, 4, 4)
    assert z[5:20, :, 0].mean() > 0.5 > -0.5 > z[30:45, :, 0].mean()  # z-scored log F1: open > close
    assert z[-8:, :, 3].max() == 0 and np.all(z[-8:, :, :3] == 0)  # the silent end: unvoiced, no formants
