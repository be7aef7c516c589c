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


def _ar1(n: int, phi: float, rng) -> np.ndarray:
    """A stationary AR(1) series of unit innovations: neighbouring frames correlated by phi, like a mouth."""
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0] / np.sqrt(1 - phi ** 2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def _pairs(rho: float, phi: float, n: int, draws: int, seed: int = 0):
    """Pairs of smooth trajectories whose true correlation is rho: y = rho x + sqrt(1 - rho^2) e with x and e
    independent AR(1) series of one phi."""
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        x, e = _ar1(n, phi, rng), _ar1(n, phi, rng)
        yield x, rho * x + np.sqrt(1 - rho ** 2) * e


def test_the_interval_of_mouth_r_covers_the_true_correlation_of_smooth_trajectories():
    """Against the known correlation of simulated smooth trajectories (100 frames, 4 s, neighbouring frames
    correlated at 0.85): the 95 % interval covers it in about 95 % of draws. Counting every frame as
    independent, the same interval covers it far less often: that is what effective_frames corrects."""
    from hm_talker.metrics.mouth import effective_frames, r_interval

    rho, covered, naive, widths, n_eff = 0.5, 0, 0, [], []
    for x, y in _pairs(rho, 0.85, 100, 300):
        s = mouth_scores(x, y)
        assert s["mouth_r_lo"] <= s["mouth_r"] <= s["mouth_r_hi"]
        covered += s["mouth_r_lo"] <= rho <= s["mouth_r_hi"]
        lo, hi = r_interval(s["mouth_r"], len(x))
        naive += lo <= rho <= hi
        widths.append(s["mouth_r_hi"] - s["mouth_r_lo"])
        n_eff.append(effective_frames(x, y))
    assert 0.90 <= covered / 300 <= 0.99, covered
    assert naive / 300 < 0.75, naive
    assert 0.4 < np.mean(widths) < 0.8 and np.mean(n_eff) < 100 / 3
    print(f"covered {covered / 300:.2f}, naive {naive / 300:.2f}, width {np.mean(widths):.2f}, n_eff {np.mean(n_eff):.1f}")


def test_effective_frames_of_independent_and_of_smooth_frames():
    from hm_talker.metrics.mouth import effective_frames

    rng = np.random.default_rng(3)
    white = [effective_frames(rng.standard_normal(400), rng.standard_normal(400)) for _ in range(50)]
    assert 0.85 * 400 <= np.mean(white) <= 400  # independent frames are worth themselves
    phi = 0.9  # Bartlett for two AR(1) series: n (1 - phi^2) / (1 + phi^2) = 42 of 400
    smooth = [effective_frames(x, y) for x, y in _pairs(0.0, phi, 400, 50, seed=4)]
    bartlett = 400 * (1 - phi ** 2) / (1 + phi ** 2)
    assert 0.7 * bartlett < np.mean(smooth) < 1.4 * bartlett


def test_no_interval_without_a_moving_mouth():
    ref = np.sin(np.arange(50) / 3.0)
    s = mouth_scores(np.full(50, 0.125), ref)
    assert s["mouth_r"] is None and s["mouth_r_lo"] is None and s["mouth_r_hi"] is None
    assert s["notes"]["mouth_r_lo"] == "the generated mouth does not move"


def test_frames_without_a_face_do_not_narrow_the_interval():
    """With 40 % of the frames missing at random (no face found), the remaining frames are worth fewer
    independent ones than the whole clip, not more, and the interval still covers the true correlation."""
    from hm_talker.metrics.mouth import effective_frames

    rng = np.random.default_rng(5)
    full, holed, covered = [], [], 0
    for x, y in _pairs(0.5, 0.9, 200, 200, seed=6):
        full.append(effective_frames(x, y))
        x = np.where(rng.random(len(x)) < 0.4, np.nan, x)
        holed.append(effective_frames(x, y))
        s = mouth_scores(x, y)
        covered += s["mouth_r_lo"] <= 0.5 <= s["mouth_r_hi"]
    assert np.mean(holed) < np.mean(full)
    assert covered / 200 >= 0.9, covered
    print(f"n_eff whole {np.mean(full):.1f}, 40 % missing {np.mean(holed):.1f}, covered {covered / 200:.2f}")


def test_a_perfect_correlation_is_inside_its_interval():
    x = np.random.default_rng(7).standard_normal(60)
    s = mouth_scores(x, x)  # r = 1, where Fisher's z is infinite
    assert s["mouth_r_lo"] <= s["mouth_r"] <= s["mouth_r_hi"]
