"""GaussianModel (init, getters, checkpoints with another N) and the SH helpers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hm_talker.render import GaussianModel, rasterize, rgb_to_sh, sh_basis, sh_to_color, sh_to_rgb
from hm_talker.render.gaussians import mean_knn_distance


from conftest import toy_camera as _camera  # noqa: E402


def test_state_dict_round_trip_with_other_n():
    a = GaussianModel.random_in_ellipsoid(120, sh_degree=2, seed=1)
    with torch.no_grad():
        a.shN.normal_()
    b = GaussianModel(7, sh_degree=2)
    b.load_state_dict(a.state_dict())
    assert b.num_gaussians == 120
    for name in GaussianModel.BASE_PARAMS:
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert isinstance(getattr(b, name), nn.Parameter) and getattr(b, name).requires_grad


def test_nested_load_and_extra_param():
    class Wrapper(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.gaussians = GaussianModel(n, sh_degree=1)
            self.gaussians.register_gaussian_param("feat", nn.Parameter(torch.randn(n, 8)))
            self.head = nn.Linear(8, 3)

    src, dst = Wrapper(33), Wrapper(4)
    dst.load_state_dict(src.state_dict())  # strict: every key matched, N resized in place
    assert dst.gaussians.num_gaussians == 33 and dst.gaussians.feat.shape == (33, 8)
    assert torch.equal(dst.gaussians.feat, src.gaussians.feat)
    assert "feat" in dst.gaussians.gaussian_param_names
    with pytest.raises(RuntimeError):  # other shape mismatches still fail loudly
        bad = src.state_dict()
        bad["head.weight"] = torch.zeros(2, 2)
        dst.load_state_dict(bad)


def test_getters_and_init():
    pts = torch.rand(50, 3)
    rgb = torch.rand(50, 3)
    m = GaussianModel.from_points(pts, rgb, sh_degree=3, opacity=0.3)
    assert m.sh_degree == 3 and m.shN.shape == (50, 15, 3) and m.colors.shape == (50, 16, 3)
    torch.testing.assert_close(m.base_rgb, rgb)
    torch.testing.assert_close(m.opacities, torch.full((50,), 0.3))
    torch.testing.assert_close(m.scales[:, 0], mean_knn_distance(pts))
    torch.testing.assert_close(m.rotations.norm(dim=-1), torch.ones(50))
    act = m.activated()
    assert set(act) == {"means", "quats", "scales", "opacities", "colors"}
    e = GaussianModel.random_in_ellipsoid(300, radii=(1.0, 2.0, 3.0), seed=0)
    r = (e.means / torch.tensor([1.0, 2.0, 3.0])).norm(dim=-1)
    assert r.max() <= 1.0 + 1e-5 and (r > 0.9).float().mean() > 0.6


def test_knn_distance_matches_brute_force():
    pts = torch.randn(300, 3, dtype=torch.float64)
    d = torch.cdist(pts, pts)
    d.fill_diagonal_(math.inf)
    ref = d.topk(3, largest=False).values.mean(1)
    torch.testing.assert_close(mean_knn_distance(pts, max_block=1000), ref)


def test_sh_degree0_is_base_colour():
    m = GaussianModel.random_in_ellipsoid(80, sh_degree=3, seed=2, opacity=0.5)
    with torch.no_grad():
        m.shN.normal_()  # higher bands must be ignored at degree 0
    dirs = torch.randn(80, 3)
    torch.testing.assert_close(sh_to_color(0, m.colors, dirs), m.base_rgb.clamp_min(0))
    torch.testing.assert_close(sh_to_rgb(rgb_to_sh(torch.rand(5, 3))).shape, (5, 3))
    vm, K = _camera()
    with torch.no_grad():
        act = m.activated()
        c_sh, *_ = rasterize(**act, viewmats=vm, Ks=K, width=32, height=32, sh_degree=0, backend="torch")
        act["colors"] = m.base_rgb
        c_rgb, *_ = rasterize(**act, viewmats=vm, Ks=K, width=32, height=32, backend="torch")
    torch.testing.assert_close(c_sh, c_rgb)
    assert c_sh.abs().sum() > 0


def test_sh_basis_is_orthonormal():
    n = 100_000  # Fibonacci sphere: near-uniform directions
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = (1 - z * z).sqrt()
    dirs = torch.stack([r * phi.cos(), r * phi.sin(), z], -1)
    Y = sh_basis(3, dirs)  # [n, 16]
    gram = Y.T @ Y * (4 * math.pi / n)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=1e-3, rtol=0)


def test_sh_matches_gsplat_reference():
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    coeffs = torch.randn(64, 16, 3, dtype=torch.float64)
    dirs = torch.randn(64, 3, dtype=torch.float64)
    for deg in range(4):
        ref = impl._spherical_harmonics(deg, dirs, coeffs)
        torch.testing.assert_close(sh_to_color(deg, coeffs, dirs) - 0.5, ref.clamp_min(-0.5))
