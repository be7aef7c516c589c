"""The sound/mouth offset of a clip: measured against a known injected delay, and corrected by preprocess."""
import json

import numpy as np
import pytest

from hm_talker.errors import InputError
from hm_talker.preprocess.av_offset import clip_loudness, estimate_offset, in_sync
from hm_talker.preprocess.config import PreprocessConfig
from hm_talker.synthetic.speech import mouth_envelope, synthesize_speech

FPS, SR = 25, 16000


def _talk(seconds: float, lead: int, seed: int = 0):
    """(sound, true mouth opening per frame): the synthetic talker's mouth is its loudness, moved `lead`
    frames before the sound (the sound is `lead` frames late)."""
    audio = synthesize_speech(seconds, SR, seed).astype(np.float32)
    n = int(round(seconds * FPS))
    audio = np.pad(audio, (0, max(0, n * SR // FPS - len(audio))))[: n * SR // FPS]
    return audio, mouth_envelope(audio, SR, FPS, n, lead_frames=lead), n


@pytest.mark.parametrize("lead", [0, 3, 6])
def test_estimate_finds_the_injected_delay(lead):
    audio, mouth, n = _talk(20.0, lead)
    offset, r0, rb = estimate_offset(mouth, clip_loudness(audio, n, PreprocessConfig()), 8)
    assert offset == lead
    assert rb > 0.8  # the loudness follows this mouth closely once aligned
    if lead:
        assert rb - r0 > 0.2  # and clearly worse where it is not


def test_in_sync_removes_the_delay_and_drops_the_frames_without_sound():
    audio, mouth, n = _talk(20.0, 5, seed=1)
    step = SR // FPS
    kept, sound = in_sync(mouth, audio, 5, SR, FPS)
    assert len(kept) == n - 5 and len(sound) == (n - 5) * step
    assert np.array_equal(kept, mouth[:-5]) and np.array_equal(sound, audio[5 * step:])
    assert estimate_offset(kept, clip_loudness(sound, n - 5, PreprocessConfig()), 8)[0] == 0
    early, sound_e = in_sync(mouth, audio, -3, SR, FPS)  # sound 3 frames early: the first 3 frames go
    assert np.array_equal(early, mouth[3:]) and np.array_equal(sound_e, audio[:(n - 3) * step])
    with pytest.raises(ValueError):
        in_sync(mouth[:4], audio, 5, SR, FPS)


def test_lag_sign():
    x = np.sin(np.linspace(0, 40, 300))
    # "loudness" = the mouth 4 frames earlier: sound 4 frames EARLY
    assert estimate_offset(x[:-4], x[4:], 6)[0] == -4


@pytest.fixture(scope="module")
def delayed_identity(tmp_path_factory):
    """A synthetic talker whose sound is 4 frames late, preprocessed with the default auto offset."""
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip

    tmp = tmp_path_factory.mktemp("avoff")
    clip = make_synthetic_clip(tmp / "late.mp4", seconds=8.0, size=256, seed=3, mouth_lead_frames=4)
    out = {}
    for name, setting in (("auto", "auto"), ("kept", "0")):
        out[name] = tmp / name
        preprocess([clip.path], out[name], PreprocessConfig(size=64, shard_frames=64, av_offset=setting,
                                                            av_offset_min_seconds=6.0))
    return clip, out


def _speech_r(root, truth: np.ndarray) -> float:
    """r of the stored speech loudness with the true opening of the frames kept (src_frames: their source)."""
    with np.load(root / "features.npz") as f:
        energy, src = f["speech"][:, :, 0].mean(1), f["src_frames"]
    return float(np.corrcoef(energy, truth[src])[0, 1])


def test_preprocess_shifts_a_late_sound(delayed_identity):
    clip, out = delayed_identity
    auto = json.loads((out["auto"] / "manifest.json").read_text())["clips"][0]["av_offset"]
    kept = json.loads((out["kept"] / "manifest.json").read_text())["clips"][0]["av_offset"]
    assert (auto["frames"], auto["applied"]) == (4, 4)
    assert kept["applied"] == 0
    n_auto = json.loads((out["auto"] / "manifest.json").read_text())["num_frames"]
    assert n_auto == clip.num_frames - 4  # the last 4 frames had no sound of their own
    # the stored speech features now go with the true mouth (the clip's known opening) at lag 0
    assert _speech_r(out["auto"], clip.mouth_open) > _speech_r(out["kept"], clip.mouth_open) + 0.2
    assert _speech_r(out["auto"], clip.mouth_open) > 0.8


def test_short_clips_are_not_measured(synthetic_clip, tmp_path):
    from hm_talker.preprocess.pipeline import preprocess

    m = preprocess([synthetic_clip.path], tmp_path / "id", PreprocessConfig(size=64, shard_frames=64))
    off = m["clips"][0]["av_offset"]
    assert off["applied"] == 0 and off["r_zero"] is None and "not estimated" in off["reason"]


@pytest.mark.parametrize("bad", ["soon", "1.5", ""])
def test_bad_setting_is_refused(bad):
    from hm_talker.validate import check_preprocess_config

    with pytest.raises(InputError, match="av_offset"):
        check_preprocess_config(PreprocessConfig(av_offset=bad))


def test_a_late_reference_is_scored_in_step_with_its_sound(tmp_path):
    """evaluate --drive-video: a reference whose sound is 5 frames late is measured so, and its mouth moved
    by 5 frames goes with its sound at lag 0 (the yardstick a driven mouth is scored against)."""
    from hm_talker.evaluation.protocols import reference_video, shift_frames
    from hm_talker.metrics.correlation import pearson
    from hm_talker.metrics.mouth import mouth_opening
    from hm_talker.synthetic import make_synthetic_clip

    clip = make_synthetic_clip(tmp_path / "ref.mp4", seconds=16.0, size=128, seed=4, mouth_lead_frames=5)
    ref = reference_video(clip.path, SR)
    assert ref.lag == 5 and "5 frames (200 ms) later" in ref.lag_note
    sound_mouth = mouth_envelope(clip.audio, SR, FPS, clip.num_frames)  # the mouth the sound alone implies
    moved = mouth_opening(shift_frames(ref.landmarks, ref.lag))
    assert pearson(moved, sound_mouth) > pearson(mouth_opening(ref.landmarks), sound_mouth) + 0.3
    on_time = make_synthetic_clip(tmp_path / "ok.mp4", seconds=16.0, size=128, seed=4)
    assert reference_video(on_time.path, SR).lag == 0
