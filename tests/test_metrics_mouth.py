"""Mouth-motion metrics on real frames and on the synthetic clip's known opening.

The truths are independent of the metric: a clip against itself, a copy delayed by a known number
of frames, a copy whose mouth is pasted from one closed-mouth frame, and the synthetic generator's
drawn opening.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import real_file
from hm_talker.constants import LM, MOUTH_LANDMARKS
from hm_talker.metrics.mouth import lagged_correlations, mouth_opening, mouth_scores, opening_stats


@pytest.fixture(scope="module")
def real_clip():
    """face3.mp4 (125 frames at 25 fps): frames, landmarks, opening."""
    from hm_talker.data.clips import load_frames
    from hm_talker.preprocess.landmarks import detect_landmarks

    frames = load_frames(real_file("face3.mp4"))
    lms = detect_landmarks(frames)
    return frames, lms, mouth_opening(lms)


def _measured(frames):
    from hm_talker.preprocess.landmarks import detect_landmarks

    return mouth_opening(detect_landmarks(frames))


def test_a_real_clip_against_itself_is_perfect(real_clip):
    _, _, opening = real_clip
    assert np.isfinite(opening).all() and 0.02 < np.std(opening) < 0.1  # real speech: 0.03-0.06
    s = mouth_scores(opening, opening)
    assert s["mouth_r"] == pytest.approx(1.0) and s["mouth_r_best"] == pytest.approx(1.0)
    assert s["mouth_lag"] == 0 and s["mouth_amp"] == pytest.approx(1.0) and s["mouth_jitter"] == pytest.approx(1.0)
    assert s["mouth_frames"] == 125


def test_a_copy_delayed_by_two_frames_lags_by_two(real_clip):
    frames, _, opening = real_clip
    delayed = frames[np.r_[0, 0, 0:len(frames) - 2]]  # delayed[t] = frames[t - 2]: the copy comes later
    s = mouth_scores(_measured(delayed), opening)
    assert s["mouth_lag"] == 2  # positive: the generated (delayed) mouth lags the reference
    assert s["mouth_r_best"] > 0.95 and s["mouth_r"] < s["mouth_r_best"] - 0.2
    early = mouth_scores(opening, _measured(delayed))  # swapped roles: the generated mouth leads
    assert early["mouth_lag"] == -2


def test_a_frozen_mouth_has_no_amplitude(real_clip):
    frames, lms, opening = real_clip
    lips = lms[:, MOUTH_LANDMARKS, :2]
    half = (1.2 * (lips.max(1) - lips.min(1)).max(0)).astype(int)  # [2] half width, half height
    src = int(np.argmin(opening))  # a closed mouth: unambiguous lips
    cx, cy = lips[src].mean(0).round().astype(int)
    patch = frames[src, cy - half[1]:cy + half[1], cx - half[0]:cx + half[0]]
    offset = lips[src].mean(0) - lms[src, LM["nose_tip"], :2]  # the patch follows the head (nose tip)
    frozen = frames.copy()
    for t in range(len(frames)):
        x, y = (lms[t, LM["nose_tip"], :2] + offset).round().astype(int)
        frozen[t, y - half[1]:y + half[1], x - half[0]:x + half[0]] = patch
    s = mouth_scores(_measured(frozen), opening)
    assert s["mouth_amp"] < 0.1 and s["mouth_jitter"] < 0.5


def test_measured_opening_follows_the_synthetic_known_opening(synthetic_clip):
    from hm_talker.data.clips import load_frames

    measured = _measured(load_frames(synthetic_clip.path))
    r = np.corrcoef(measured, synthetic_clip.mouth_open)[0, 1]
    assert np.isfinite(measured).all() and r >= 0.95


def test_frames_without_a_face_are_skipped_and_counted():
    rng = np.random.default_rng(0)
    t = np.arange(60)
    ref = 0.1 + 0.05 * np.sin(t / 3.0) + 0.005 * rng.standard_normal(60)
    pred = ref.copy()
    pred[[5, 17, 40]] = np.nan  # no face found there
    s = mouth_scores(pred, ref)
    assert s["mouth_frames"] == 57 and s["mouth_r"] == pytest.approx(1.0)
    assert opening_stats(pred)["mouth_open_std"] == pytest.approx(np.std(np.delete(ref, [5, 17, 40])))


def test_opening_is_gap_over_inter_ocular_distance():
    lm = np.zeros((2, 478, 2))
    lm[:, LM["r_eye_outer"]] = [10.0, 0.0]
    lm[:, LM["l_eye_outer"]] = [110.0, 0.0]
    lm[0, LM["lip_up_inner"]] = [60.0, 40.0]
    lm[0, LM["lip_low_inner"]] = [60.0, 65.0]  # gap 25 over eyes 100
    lm[1] = np.nan
    out = mouth_opening(lm)
    assert out[0] == pytest.approx(0.25) and np.isnan(out[1])


def test_lag_sign_on_a_known_shift():
    x = np.random.default_rng(1).standard_normal(100).cumsum()
    later = np.r_[x[:3], x[:-3]]  # later[t] = x[t - 3]
    lags = lagged_correlations(later, x)
    assert max(lags, key=lambda k: lags[k]) == 3


def test_a_still_reference_gives_none_with_a_reason():
    s = mouth_scores(np.linspace(0, 1, 20), np.full(20, 0.1))
    assert s["mouth_r"] is None and "does not move" in s["notes"]["mouth_r"]


def test_the_synthetic_face_says_given_speech_with_its_known_opening(tmp_path):
    """The demo's lip-sync reference: the same face saying other speech; its mouth is that speech's envelope."""
    from hm_talker.data.clips import load_frames
    from hm_talker.synthetic import make_synthetic_clip, mouth_envelope, synthesize_speech

    speech = synthesize_speech(2.5, 16000, seed=11)[:39_900]  # 2.49 s: a partial last frame
    clip = make_synthetic_clip(tmp_path / "ref.mp4", size=256, seed=0, speech=speech)
    assert clip.num_frames == 63  # ceil(2.49 s * 25)
    padded = np.pad(speech, (0, 63 * 640 - len(speech)))
    np.testing.assert_allclose(clip.mouth_open, mouth_envelope(padded, 16000, 25, 63))
    measured = _measured(load_frames(clip.path))
    assert np.corrcoef(measured, clip.mouth_open)[0, 1] >= 0.95
