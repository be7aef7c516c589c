"""Densification strategy: grows, prunes, keeps optimiser rows aligned, resumes exactly."""
from __future__ import annotations

import copy

import torch

from hm_talker.render import DensifyStrategy, GaussianModel, StrategyConfig, rasterize


from conftest import toy_camera as _camera  # noqa: E402


def _setup(n=150, seed=0):
    torch.manual_seed(seed)
    model = GaussianModel.random_in_ellipsoid(n, sh_degree=1, seed=seed, opacity=0.5)
    opt = torch.optim.Adam(
        [
            {"params": [model.means], "lr": 1e-3},
            {"params": [model.quats, model.log_scales, model.opacity_logits], "lr": 1e-2},
            {"params": [model.sh0, model.shN], "lr": 1e-2},
        ]
    )
    return model, opt


def _render_step(model, opt, target, step_opt=True):
    vm, K = _camera()
    c, a, d, meta = rasterize(**model.activated(), viewmats=vm, Ks=K, width=32, height=32, sh_degree=1, backend="torch")
    loss = (c - target).abs().mean()
    opt.zero_grad()
    loss.backward()
    if step_opt:
        opt.step()
    return meta


def _check_aligned(model, opt):
    names = {id(getattr(model, n)): n for n in model.gaussian_param_names}
    seen = set()
    for group in opt.param_groups:
        for p in group["params"]:
            assert id(p) in names, "optimizer holds a stale parameter"
            seen.add(names[id(p)])
            st = opt.state.get(p, {})
            for k in ("exp_avg", "exp_avg_sq"):
                if k in st:
                    assert st[k].shape == p.shape, (names[id(p)], k)
    assert seen == set(model.gaussian_param_names)


def test_densify_grows_prunes_and_keeps_adam_rows():
    model, opt = _setup()
    target = torch.rand(1, 32, 32, 3)
    # grad_threshold far above the natural gradients: only the injected ones count.
    cfg = StrategyConfig(refine_start=0, refine_every=2, reset_every=0, grad_threshold=1.0,
                         grow_scale3d=0.01, prune_opacity=0.05)
    strat = DensifyStrategy(cfg, scene_scale=1.0)
    meta = _render_step(model, opt, target)
    strat.step_post_backward(model, opt, meta, step=1)  # statistics only
    meta = _render_step(model, opt, target)
    vis = (meta["radii"][0] > 0).nonzero().squeeze(1)
    # Inject: big screen gradients on 20 visible Gaussians; half small (clone), half large (split).
    hot = vis[:20]
    with torch.no_grad():
        meta["means2d"].grad.zero_()
        meta["means2d"].grad[0, hot] = 1.0
        model.log_scales[hot[:10]] = torch.log(torch.tensor(0.005))
        model.log_scales[hot[10:]] = torch.log(torch.tensor(0.05))
        cold = vis[-5:]
        model.opacity_logits[cold] = -10.0  # below prune_opacity
    n0 = model.num_gaussians
    old_state = {k: v.clone() for k, v in opt.state[model.means].items()}
    old_means = model.means.detach().clone()
    stats = strat.step_post_backward(model, opt, meta, step=2)
    assert stats["cloned"] == 10 and stats["split"] == 10 and stats["pruned"] == 5
    assert model.num_gaussians == n0 + 10 + 10 * (2 - 1) - 5
    assert (model.opacities >= cfg.prune_opacity).all()
    _check_aligned(model, opt)
    # Rows of Gaussians that were neither split nor pruned come first, in order, with their Adam state.
    kept = torch.ones(n0, dtype=torch.bool)
    kept[hot[10:]] = False
    kept[cold] = False
    idx = kept.nonzero().squeeze(1)
    nk = idx.numel()
    torch.testing.assert_close(model.means[:nk].detach(), old_means[idx])
    for k in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(opt.state[model.means][k][:nk], old_state[k][idx])
        assert (opt.state[model.means][k][nk:] == 0).all()
    assert torch.equal(opt.state[model.means]["step"], old_state["step"])
    # Training goes on with the edited parameter set.
    before = model.means.detach().clone()
    meta = _render_step(model, opt, target)
    assert meta["means2d"].shape[1] == model.num_gaussians
    assert not torch.equal(before, model.means.detach())
    strat.step_post_backward(model, opt, meta, step=3)


def test_split_children_sample_parent_and_shrink():
    model, opt = _setup(n=40)
    strat = DensifyStrategy(StrategyConfig(grow_scale3d=0.0, split_into=3, prune_opacity=0.0), scene_scale=1.0)
    strat._reset_stats(40, "cpu")
    strat.grad2d[:4] = 1.0
    strat.count[:4] = 1
    parents_means = model.means.detach()[:4].clone()
    parent_scales = model.scales.detach()[:4].clone()
    stats = strat.refine(model, opt, step=1000)
    assert stats["split"] == 4 and model.num_gaussians == 40 - 4 + 12
    kids = model.means.detach()[-12:].reshape(3, 4, 3)
    assert ((kids - parents_means).norm(dim=-1) < 6 * parent_scales.amax(-1)).all()
    torch.testing.assert_close(model.scales.detach()[-12:].reshape(3, 4, 3), (parent_scales / 1.6).expand(3, 4, 3))
    _check_aligned(model, opt)


def test_opacity_reset_and_growth_cap():
    model, opt = _setup(n=60)
    target = torch.rand(1, 32, 32, 3)
    meta = _render_step(model, opt, target)
    strat = DensifyStrategy(StrategyConfig(refine_start=10**6, reset_every=5, reset_opacity=0.01))
    out = strat.step_post_backward(model, opt, meta, step=5)
    assert out.get("reset") and (model.opacities <= 0.01 + 1e-6).all()
    st = opt.state[model.opacity_logits]
    assert (st["exp_avg"] == 0).all() and (st["exp_avg_sq"] == 0).all()
    _check_aligned(model, opt)

    capped = DensifyStrategy(StrategyConfig(max_gaussians=65, grow_scale3d=1.0, prune_opacity=0.0))
    capped._reset_stats(60, "cpu")
    capped.grad2d[:] = torch.linspace(1, 2, 60)
    capped.count[:] = 1
    stats = capped.refine(model, opt, step=1)
    assert stats["cloned"] == 5 and model.num_gaussians == 65
    _check_aligned(model, opt)


def test_state_dict_resume_is_exact():
    model, opt = _setup(n=120, seed=3)
    target = torch.rand(1, 32, 32, 3)
    cfg = StrategyConfig(refine_start=0, refine_every=3, reset_every=0, grad_threshold=1e-5, grow_scale3d=0.01)
    strat = DensifyStrategy(cfg, scene_scale=0.5)
    for step in range(1, 5):
        meta = _render_step(model, opt, target)
        strat.step_post_backward(model, opt, meta, step)
    # Checkpoint, then continue two ways: the original objects and freshly restored ones.
    ckpt = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "strategy": strat.state_dict()})
    model2 = GaussianModel(1, sh_degree=1)
    model2.load_state_dict(ckpt["model"])
    opt2 = torch.optim.Adam(
        [
            {"params": [model2.means], "lr": 1e-3},
            {"params": [model2.quats, model2.log_scales, model2.opacity_logits], "lr": 1e-2},
            {"params": [model2.sh0, model2.shN], "lr": 1e-2},
        ]
    )
    opt2.load_state_dict(ckpt["opt"])
    strat2 = DensifyStrategy(cfg)
    strat2.load_state_dict(ckpt["strategy"])
    assert strat2.scene_scale == 0.5
    grew = False
    for step in range(5, 11):
        for m, o, s in ((model, opt, strat), (model2, opt2, strat2)):
            meta = _render_step(m, o, target)
            out = s.step_post_backward(m, o, meta, step)
            grew |= out.get("split", 0) > 0
        assert model.num_gaussians == model2.num_gaussians
        for name in model.gaussian_param_names:
            torch.testing.assert_close(getattr(model, name), getattr(model2, name), atol=0, rtol=0)
    assert grew  # the resumed run went through a split (RNG state restored)
