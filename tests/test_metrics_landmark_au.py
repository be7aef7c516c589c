"""LMD and AUE on constructed inputs."""

import numpy as np
import pytest

from hm_talker.metrics import au as au_mod
from hm_talker.metrics.landmark import MEDIAPIPE_LIP_INDICES, lmd, lmd_per_frame


def _moving_mouth(t=50, m=40, seed=0):
    """Lip points on an ellipse whose opening changes over time, plus head translation."""
    rng = np.random.default_rng(seed)
    ang = np.linspace(0, 2 * np.pi, m, endpoint=False)
    opening = 8 + 6 * np.sin(np.linspace(0, 6 * np.pi, t))  # [T]
    pts = np.stack([30 * np.cos(ang)[None].repeat(t, 0), opening[:, None] * np.sin(ang)[None]], -1)
    head = np.cumsum(rng.normal(0, 2, size=(t, 1, 2)), axis=0) + 128  # drifting head position
    return pts + head


def test_lip_indices_are_mediapipe_facemesh_lips():
    assert len(MEDIAPIPE_LIP_INDICES) == 40 == len(set(MEDIAPIPE_LIP_INDICES))
    assert all(0 <= i < 478 for i in MEDIAPIPE_LIP_INDICES)
    try:
        from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS
    except Exception:  # mediapipe is optional for this check
        pytest.skip("mediapipe not importable")
    assert set(MEDIAPIPE_LIP_INDICES) == {i for edge in FACEMESH_LIPS for i in edge}


def test_lmd_zero_for_identical_and_translation_invariant():
    x = _moving_mouth()
    assert lmd(x, x) == 0.0
    assert lmd(x + np.array([13.0, -7.0]), x) == pytest.approx(0.0, abs=1e-9)  # mean-centred


def test_one_frame_shift_is_worse_than_aligned():
    real = _moving_mouth()
    generated = real + np.random.default_rng(1).normal(0, 0.3, real.shape)
    aligned = lmd(generated[1:], real[1:])
    shifted = lmd(generated[:-1], real[1:])  # generated lags one frame
    assert shifted > aligned > 0


def test_lmd_known_value_and_rescaling():
    real = np.zeros((2, 4, 2))
    real[:, :, 0] = [0, 10, 0, 10]
    real[:, :, 1] = [0, 0, 10, 10]
    gen = real.copy()
    gen[:, 0] += [4.0, 0.0]  # one point moves 4 px in x: the centroid moves 1 px
    # centred distances: point0 |(4-1, 0)| = 3, others |(-1, 0)| = 1 -> mean 1.5
    assert lmd(gen, real) == pytest.approx(1.5)
    # landmarks measured on 512 px frames, reported at 256 px: half the pixels
    assert lmd(gen, real, size=512, reference_size=256) == pytest.approx(0.75)
    assert lmd(gen, real, size=(512, 256), reference_size=(256, 256)) == pytest.approx(1.5)  # x unscaled
    with pytest.raises(ValueError):
        lmd(gen, real, size=512)


def test_lmd_skips_frames_without_landmarks():
    x = _moving_mouth(t=5)
    y = x + 1.0
    y[2, 0, 0] = np.nan  # detector failed on frame 2
    per = lmd_per_frame(y, x)
    assert np.isnan(per[2]) and np.isfinite(per[[0, 1, 3, 4]]).all()
    assert lmd(np.full_like(x, np.nan), x) is None


def test_aue_zero_for_identical_and_known_sums():
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 5, size=(30, 17))
    res = au_mod.aue(real, real)
    assert res["aue"] == res["aue_lower"] == res["aue_upper"] == 0.0

    gen = real.copy()
    names = au_mod.AU_NAMES
    gen[:, names.index("AU25")] += 2.0  # lower face: error 4 on every frame
    gen[:15, names.index("AU01")] += 1.0  # upper face: error 1 on half the frames -> MSE 0.5
    res = au_mod.aue(gen, real)
    assert res["aue_lower"] == pytest.approx(4.0)
    assert res["aue_upper"] == pytest.approx(0.5)
    assert res["aue"] == pytest.approx(4.5)
    assert res["per_au"]["AU25"] == pytest.approx(4.0)
    assert set(au_mod.LOWER_FACE_AUS) | set(au_mod.UPPER_FACE_AUS) == set(names)
    assert not set(au_mod.LOWER_FACE_AUS) & set(au_mod.UPPER_FACE_AUS)


def test_aue_shape_checked():
    with pytest.raises(ValueError):
        au_mod.aue(np.zeros((3, 16)), np.zeros((3, 16)))
