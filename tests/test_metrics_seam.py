"""The seam number (hm_talker/metrics/seam.py) against lines of known depth drawn on textured frames."""
import numpy as np
import pytest

from hm_talker.metrics import ClipScorer
from hm_talker.metrics.seam import SeamStream, edge_rings, edge_valley

H = W = 96


def _frames(n=3, seed=0):
    """Real-looking frames: a smooth gradient with noise, and a darker 'neck' below the chin."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    base = 120 + 0.6 * x + 0.3 * y
    base[y > 70] -= 40  # a real step across the region's lower edge (not a seam)
    img = base[None, :, :, None] + rng.normal(0, 4, (n, H, W, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _region(n=3):
    y, x = np.mgrid[0:H, 0:W]
    ellipse = ((x - 48) / 30.0) ** 2 + ((y - 45) / 36.0) ** 2 <= 1.0
    return np.repeat(ellipse[None], n, axis=0)


def test_a_dark_line_on_the_edge_scores_its_depth():
    real, region = _frames(), _region()
    band, _, _ = edge_rings(region)
    for depth in (20, 50):
        gen = real.astype(np.int16)
        gen[band] -= depth  # a line `depth` levels darker, all along the edge
        gen = np.clip(gen, 0, 255).astype(np.uint8)
        s = SeamStream()
        s.update(gen, real, region)
        assert s.result() == pytest.approx(depth, abs=2.0)


def test_a_line_along_part_of_the_edge_scores_its_share():
    real, region = _frames(), _region()
    band, _, _ = edge_rings(region)
    lower = band.copy()
    lower[:, :60] = False  # only the jaw: the edge below row 60
    share = lower.sum() / band.sum()
    gen = np.clip(real.astype(np.int16) - 40 * lower[..., None], 0, 255).astype(np.uint8)
    s = SeamStream()
    s.update(gen, real, region)
    assert s.result() == pytest.approx(40 * share, abs=2.0)
    assert 0.1 < share < 0.5


def test_no_seam_scores_zero_whatever_the_real_edge_looks_like():
    real, region = _frames(), _region()
    assert abs(edge_valley(real, edge_rings(region)).mean()) < 3  # the step across the edge is no valley
    other = _frames(seed=1)  # different noise, the same picture: no seam
    s = SeamStream()
    s.update(other, real, region)
    assert abs(s.result()) < 1.0
    # a uniformly darker face inside the region is a step at the edge, not a line on it
    dark_face = np.where(region[..., None], np.clip(real.astype(np.int16) - 30, 0, 255), real).astype(np.uint8)
    s = SeamStream()
    s.update(dark_face, real, region)
    assert abs(s.result()) < 0.25 * 30


def test_the_clip_scorer_reports_seam_only_with_a_render_region():
    real, region = _frames(), _region()
    band, _, _ = edge_rings(region)
    gen = np.clip(real.astype(np.int16) - 30 * band[..., None], 0, 255).astype(np.uint8)
    with_region = ClipScorer(False, False)
    with_region.update(gen[:2], real[:2], render_region=region[:2])
    with_region.update(gen[2:], real[2:], render_region=region[2:])
    assert with_region.result()["seam"] == pytest.approx(30, abs=2.0)
    without = ClipScorer(False, False)
    without.update(gen, real)
    out = without.result()
    assert out["seam"] is None and "render region" in out["notes"]["seam"]
