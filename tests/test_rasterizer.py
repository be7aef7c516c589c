"""The pure-PyTorch tile rasteriser against a dense, per-Gaussian-loop reference.

The reference below is written independently of ``hm_talker.render``: its own quaternion
formula, 3x3 covariance matrices and matrix inverse, every Gaussian evaluated at every
pixel and composited one at a time in depth order, exactly like the 3DGS CUDA kernel
(alpha clamp, 1/255 skip, exclusive stop at T <= 1e-4).  Autograd through it gives the
reference gradients.
"""
from __future__ import annotations

import pytest
import torch

from hm_talker.render import RenderConfig, rasterize
from hm_talker.render.rasterize_torch import _min_quadratic_over_box

ALPHA_MIN, T_MIN = 1.0 / 255.0, 1e-4


# --------------------------------------------------------------------------- reference
def ref_rotmat(q):  # [N, 4] -> [N, 3, 3]; R = (w^2 - v.v) I + 2 v v^T + 2 w [v]_x
    q = q / q.norm(dim=-1, keepdim=True)
    w, v = q[:, :1], q[:, 1:]
    eye = torch.eye(3, dtype=q.dtype).expand(q.shape[0], 3, 3)
    vx = torch.zeros(q.shape[0], 3, 3, dtype=q.dtype)
    vx[:, 0, 1], vx[:, 0, 2], vx[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    vx = vx - vx.transpose(1, 2)
    outer = v[:, :, None] * v[:, None, :]
    return (w * w - (v * v).sum(-1, keepdim=True))[..., None] * eye + 2 * outer + 2 * w[..., None] * vx


def dense_render(means, quats, scales, opac, colors, viewmats, Ks, W, H, bg=None, alpha_max=0.99,
                 near=0.01, eps2d=0.3):
    """Every Gaussian at every pixel, composited sequentially front to back."""
    Rq = ref_rotmat(quats)
    cov3 = Rq @ torch.diag_embed(scales**2) @ Rq.transpose(1, 2)
    pix = [torch.arange(n, dtype=means.dtype) + 0.5 for n in (H, W)]  # pixel centres
    ys, xs = torch.meshgrid(*pix, indexing="ij")
    outs_c, outs_a, outs_d = [], [], []
    for c in range(viewmats.shape[0]):
        Rc, tc = viewmats[c, :3, :3], viewmats[c, :3, 3]
        fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
        pc = means @ Rc.T + tc
        T = torch.ones(H, W, dtype=means.dtype)
        done = torch.zeros(H, W, dtype=torch.bool)
        col = torch.zeros(H, W, colors.shape[-1], dtype=means.dtype)
        dep = torch.zeros(H, W, dtype=means.dtype)
        for i in torch.argsort(pc[:, 2].detach()).tolist():
            x, y, z = pc[i]
            if z < near:
                continue
            tanx, tany = 0.5 * W / fx, 0.5 * H / fy  # Jacobian taken at x/z, y/z clamped to 1.3x the fov
            u = torch.clamp(x / z, -(cx / fx + 0.3 * tanx), (W - cx) / fx + 0.3 * tanx)
            v = torch.clamp(y / z, -(cy / fy + 0.3 * tany), (H - cy) / fy + 0.3 * tany)
            J = torch.stack([torch.stack([fx / z, 0 * z, -fx * u / z]), torch.stack([0 * z, fy / z, -fy * v / z])])
            cov2 = J @ Rc @ cov3[i] @ Rc.T @ J.T + eps2d * torch.eye(2, dtype=means.dtype)
            Pinv = torch.linalg.inv(cov2)
            dx, dy = xs - (fx * x / z + cx), ys - (fy * y / z + cy)
            sig = 0.5 * (Pinv[0, 0] * dx * dx + Pinv[1, 1] * dy * dy) + Pinv[0, 1] * dx * dy
            alpha = torch.clamp(opac[i] * torch.exp(-sig), max=alpha_max)
            use = (alpha >= ALPHA_MIN) & ~done
            nextT = T * (1 - alpha)
            stop = use & (nextT <= T_MIN)
            done = done | stop
            use = use & ~stop
            w = torch.where(use, alpha * T, torch.zeros_like(T))
            col = col + w[..., None] * colors[i]
            dep = dep + w * z
            T = torch.where(use, nextT, T)
        a = 1 - T
        if bg is not None:
            col = col + T[..., None] * bg[c]
        outs_c.append(col)
        outs_a.append(a[..., None])
        outs_d.append((dep / a.clamp_min(1e-10))[..., None])
    return torch.stack(outs_c), torch.stack(outs_a), torch.stack(outs_d)


# --------------------------------------------------------------------------- scenes
def look_at(eye, target, dtype):
    """World-to-camera matrix of an OpenCV camera at ``eye`` looking at ``target`` (y down)."""
    eye, target = torch.tensor(eye, dtype=dtype), torch.tensor(target, dtype=dtype)
    f = target - eye
    f = f / f.norm()
    r = torch.linalg.cross(f, torch.tensor([0.0, -1.0, 0.0], dtype=dtype))
    r = r / r.norm()
    d = torch.linalg.cross(f, r)
    R = torch.stack([r, d, f])
    M = torch.eye(4, dtype=dtype)
    M[:3, :3], M[:3, 3] = R, -R @ eye
    return M


def make_scene(n=120, n_cams=3, W=40, H=32, dtype=torch.float64, seed=0, opaque=False):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.35
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 - 2.7)
    if opaque:
        opac = 0.6 + 0.4 * torch.rand(n, generator=g, dtype=dtype)
    else:
        opac = torch.sigmoid(torch.randn(n, generator=g, dtype=dtype) * 1.5)
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    eyes = [(0.0, 0.0, -2.5), (1.2, -0.4, -2.2), (-0.6, 0.9, -1.6), (0.3, 0.2, -1.2)][:n_cams]
    viewmats = torch.stack([look_at(e, (0.0, 0.0, 0.0), dtype) for e in eyes])
    f = 0.9 * W
    Ks = torch.tensor([[f, 0, W / 2 + 1.3], [0, f, H / 2 - 0.7], [0, 0, 1]], dtype=dtype).expand(n_cams, 3, 3).clone()
    return means, quats, scales, opac, colors, viewmats, Ks, W, H


def _leaves(scene):
    means, quats, scales, opac, colors, *rest = scene
    return [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)], rest


def _loss(c, a, d, seed=1):
    g = torch.Generator().manual_seed(seed)
    wc, wa, wd = (torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (c, a, d))
    return (c * wc).sum() + (a * wa).sum() + (d * wd * 0.1).sum()


def _compare(scene, cfg, atol, rtol=0.0, bg=None, check_grad=True):
    leaves, (viewmats, Ks, W, H) = _leaves(scene)
    c, a, d, meta = rasterize(*leaves, viewmats, Ks, W, H, backgrounds=bg, config=cfg)
    leaves_ref = [t.detach().clone().requires_grad_(True) for t in leaves]
    rc, ra, rd = dense_render(*leaves_ref, viewmats, Ks, W, H, bg=bg, alpha_max=cfg.alpha_max)
    assert meta["backend"] == "torch"
    torch.testing.assert_close(c, rc, atol=atol, rtol=rtol)
    torch.testing.assert_close(a, ra, atol=atol, rtol=rtol)
    torch.testing.assert_close(d, rd, atol=atol * 10, rtol=rtol)
    if check_grad:
        _loss(c, a, d).backward()
        _loss(rc, ra, rd).backward()
        for name, x, y in zip(("means", "quats", "scales", "opacities", "colors"), leaves, leaves_ref):
            scale = y.grad.abs().max().clamp_min(1.0)
            torch.testing.assert_close(x.grad / scale, y.grad / scale, atol=atol * 10, rtol=rtol, msg=name)
    return c, a, d, meta


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed,tile,save", [(0, 16, False), (1, 8, True)])
def test_matches_dense_float64(seed, tile, save):
    cfg = RenderConfig(backend="torch", torch_tile_size=tile, save_blocks=save, depth_chunk=8, chunk_elems=4096)
    scene = make_scene(n=150, n_cams=3, seed=seed)
    c, a, d, meta = _compare(scene, cfg, atol=1e-9)
    assert a.max() > 0.9 and (a < 0.5).any()  # the scene has both opaque and empty pixels
    means2d = meta["means2d"]
    assert means2d.shape == (3, 150, 2) and means2d.grad is not None
    assert meta["radii"].shape == (3, 150) and meta["radii"].dtype == torch.int32


def add_walls(scene, n_walls=8):
    """Stack opaque flat Gaussians in front of the left half of camera 0: whole tiles saturate."""
    means, quats, scales, opac, colors, *rest = scene
    dt = means.dtype
    wm = torch.stack([torch.tensor([-0.3, 0.0, -1.0 - 0.05 * i], dtype=dt) for i in range(n_walls)])
    wq = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dt).expand(n_walls, 4)
    ws = torch.tensor([[0.5, 0.5, 0.01]], dtype=dt).expand(n_walls, 3)
    wo = torch.full((n_walls,), 0.999, dtype=dt)
    wc = torch.rand(n_walls, 3, generator=torch.Generator().manual_seed(5), dtype=dt)
    cat = [torch.cat(p) for p in ((means, wm), (quats, wq), (scales, ws), (opac, wo), (colors, wc))]
    return (*cat, *rest)


@pytest.mark.parametrize("save", [True, False])
def test_matches_dense_opaque_termination_and_background(save):
    """Opaque splats: pixels stop early (T <= 1e-4, exclusive), whole tiles retire mid-batch."""
    scene = add_walls(make_scene(n=200, n_cams=2, seed=3, opaque=True))
    bg = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]], dtype=torch.float64)
    cfg = RenderConfig(backend="torch", depth_chunk=4, save_blocks=save)
    _, a, _, _ = _compare(scene, cfg, atol=1e-9, bg=bg)
    assert (1 - a).min() <= T_MIN * 1.01  # some pixels did saturate


def test_matches_dense_float32_and_gsplat_alpha():
    scene = [t.float() if torch.is_tensor(t) else t for t in make_scene(n=120, n_cams=2, W=48, H=48, seed=5)]
    _compare(scene, RenderConfig(backend="torch", alpha_max=0.999), atol=1e-4, rtol=1e-4)


def test_unaligned_image_and_default_chunks():
    scene = list(make_scene(n=100, n_cams=1, W=37, H=21, seed=7))
    _compare(scene, RenderConfig(backend="torch", exact_tile_cull=False, save_blocks=False), atol=1e-9)


def test_gaussians_behind_or_outside_contribute_nothing():
    means, quats, scales, opac, colors, viewmats, Ks, W, H = make_scene(n=60, n_cams=1, seed=2)
    c0, a0, d0, _ = rasterize(means, quats, scales, opac, colors, viewmats, Ks, W, H, backend="torch")
    # Behind the camera (camera looks along +z from z=-2.5) and far off to the side.
    extra = torch.tensor([[0.0, 0.0, -3.5], [0.1, 0.0, -2.6], [30.0, 0.0, 0.0], [0.0, -25.0, 0.5]], dtype=means.dtype)
    m = torch.cat([means, extra]).requires_grad_(True)
    q = torch.cat([quats, torch.tensor([[1.0, 0, 0, 0]], dtype=means.dtype).expand(4, 4)])
    s = torch.cat([scales, torch.full((4, 3), 0.3, dtype=means.dtype)])
    o = torch.cat([opac, torch.full((4,), 0.95, dtype=means.dtype)])
    col = torch.cat([colors, torch.ones(4, 3, dtype=means.dtype)])
    c1, a1, d1, meta = rasterize(m, q, s, o, col, viewmats, Ks, W, H, backend="torch")
    torch.testing.assert_close(c1, c0, atol=0, rtol=0)
    torch.testing.assert_close(a1, a0, atol=0, rtol=0)
    assert (meta["radii"][0, -4:] == 0).all()
    (c1.sum() + d1.sum()).backward()
    assert torch.isfinite(m.grad).all() and (m.grad[-4:] == 0).all()
    assert (meta["means2d"].grad[0, -4:] == 0).all()


def test_empty_scene_gives_background():
    _, _, _, _, _, viewmats, Ks, W, H = make_scene(n=1, n_cams=2)
    means = torch.tensor([[0.0, 0.0, -10.0]], dtype=torch.float64, requires_grad=True)  # behind both cameras
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    scales = torch.full((1, 3), 0.1, dtype=torch.float64)
    opac = torch.tensor([0.9], dtype=torch.float64)
    colors = torch.ones(1, 3, dtype=torch.float64)
    bg = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    c, a, d, meta = rasterize(means, quats, scales, opac, colors, viewmats, Ks, W, H, backgrounds=bg, backend="torch")
    assert c.shape == (2, H, W, 3)
    torch.testing.assert_close(c, bg.expand(2, H, W, 3))
    assert (a == 0).all() and (d == 0).all() and meta["n_pairs"] == 0
    c.sum().backward()  # still differentiable (zero gradient)
    assert (means.grad == 0).all()


def test_opaque_front_hides_back():
    dt = torch.float64
    viewmats = torch.eye(4, dtype=dt)[None]
    Ks = torch.tensor([[[32.0, 0, 16], [0, 32, 16], [0, 0, 1]]], dtype=dt)
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 4.0]], dtype=dt)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=dt)
    scales = torch.tensor([[3.0, 3.0, 0.05], [0.3, 0.3, 0.3]], dtype=dt)
    opac = torch.tensor([1.0, 1.0], dtype=dt)
    colors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=dt)
    c, a, d, _ = rasterize(means, quats, scales, opac, colors, viewmats, Ks, 32, 32, backend="torch",
                           config=RenderConfig(alpha_max=0.9999))
    centre = c[0, 14:18, 14:18]
    assert (centre[..., 0] > 0.995).all() and (centre[..., 1] < 5e-3).all()
    assert (d[0, 14:18, 14:18] - 2.0).abs().max() < 1e-2
    # Swap the depths: now the small green Gaussian is in front of the red disc.
    c2, _, d2, _ = rasterize(means.flip(0), quats, scales, opac, colors, viewmats, Ks, 32, 32, backend="torch")
    assert c2[0, 15, 15, 1] > 0.98 and c2[0, 15, 15, 0] < 0.02 and abs(d2[0, 15, 15, 0] - 2.0) < 0.05
    assert c2[0, 2, 15, 0] > 0.5  # away from the centre the red disc still shows


def test_sh_colors_match_manual_evaluation():
    from hm_talker.render import sh_to_color
    from hm_talker.render.projection import camera_centers

    means, quats, scales, opac, _, viewmats, Ks, W, H = make_scene(n=80, n_cams=2, seed=4)
    g = torch.Generator().manual_seed(0)
    shs = torch.randn(80, 16, 3, generator=g, dtype=means.dtype) * 0.3
    c_sh, *_ = rasterize(means, quats, scales, opac, shs, viewmats, Ks, W, H, sh_degree=3, backend="torch")
    dirs = means[None] - camera_centers(viewmats)[:, None]
    per_cam = sh_to_color(3, shs.expand(2, 80, 16, 3), dirs)  # [C, N, 3]
    for cam in range(2):
        one = slice(cam, cam + 1)
        c_ref, *_ = rasterize(means, quats, scales, opac, per_cam[cam], viewmats[one], Ks[one], W, H, backend="torch")
        torch.testing.assert_close(c_sh[cam : cam + 1], c_ref)


def test_min_quadratic_over_box_matches_grid_search():
    g = torch.Generator().manual_seed(0)
    n = 200
    L = torch.randn(n, 2, 2, generator=g, dtype=torch.float64)
    S = L @ L.transpose(1, 2) + 0.1 * torch.eye(2, dtype=torch.float64)
    a, b, c = S[:, 0, 0], S[:, 0, 1], S[:, 1, 1]
    x0 = torch.randn(n, generator=g, dtype=torch.float64) * 3
    y0 = torch.randn(n, generator=g, dtype=torch.float64) * 3
    x1, y1 = x0 + 2.0, y0 + 1.5
    got = _min_quadratic_over_box(a, b, c, x0, x1, y0, y1)
    t = torch.linspace(0, 1, 301, dtype=torch.float64)
    gx = x0[:, None, None] + (x1 - x0)[:, None, None] * t[None, :, None]
    gy = y0[:, None, None] + (y1 - y0)[:, None, None] * t[None, None, :]
    q = 0.5 * (a[:, None, None] * gx**2 + c[:, None, None] * gy**2) + b[:, None, None] * gx * gy
    brute = q.flatten(1).amin(1)
    assert (got <= brute + 1e-12).all() and (brute - got).max() < 1e-3 * brute.abs().max()


def test_projection_matches_gsplat_torch_reference():
    """Our EWA projection equals gsplat's own pure-PyTorch reference (runs on CPU)."""
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    from hm_talker.render.projection import project_gaussians, quat_to_rotmat

    means, quats, scales, opac, _, viewmats, Ks, W, H = make_scene(n=100, n_cams=3, seed=9)
    covars = quat_to_rotmat(quats) @ torch.diag_embed(scales**2) @ quat_to_rotmat(quats).transpose(1, 2)
    radii, m2d, depths, conics, _ = impl._fully_fused_projection(
        means, covars, viewmats, Ks, W, H, eps2d=0.3, near_plane=0.01, far_plane=1e10
    )
    ours = project_gaussians(means, quats, scales, opac, viewmats, Ks, W, H)
    both = ours.valid
    assert both.sum() > 100
    torch.testing.assert_close(ours.means2d[both], m2d[both])
    torch.testing.assert_close(ours.conics[both], conics[both])
    torch.testing.assert_close(ours.depths[both], depths[both])
    # Our boxes are opacity-aware, hence never larger than gsplat's 3-sigma boxes.
    theirs = radii if radii.dim() == 3 else radii[..., None]
    assert (ours.radii[both] <= theirs[both] + 1).all()


def test_tile_culling_and_chunking_do_not_change_the_image():
    scene = make_scene(n=150, n_cams=2, W=64, H=48, seed=11, dtype=torch.float32)
    leaves, (viewmats, Ks, W, H) = _leaves(scene)
    outs = []
    for cfg in (RenderConfig(depth_chunk=64, chunk_elems=1 << 22, torch_tile_size=16),
                RenderConfig(depth_chunk=4, chunk_elems=8192, exact_tile_cull=False, torch_tile_size=16),
                RenderConfig()):
        c, a, d, meta = rasterize(*leaves, viewmats, Ks, W, H, backend="torch", config=cfg)
        outs.append((c, a, meta["n_pairs"]))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=0)  # float32 rounding only
    torch.testing.assert_close(outs[0][0], outs[2][0], atol=1e-5, rtol=0)  # 8 px tiles
    assert outs[0][2] < outs[1][2]  # exact culling removed some (tile, splat) pairs
