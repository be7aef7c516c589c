"""Densification under the fit's default schedule: every 3DGS rule fires; the statistic ignores B."""
from __future__ import annotations

import math

import torch

from hm_talker.render import DensifyStrategy, GaussianModel, rasterize
from hm_talker.config.fit import DensifyConfig
from hm_talker.training.densify import batch_meta, strategy_config, warn_schedule

from conftest import toy_camera

SIZE = 24


def _scene(seed: int = 0) -> GaussianModel:
    """A small head-sized scene in view (60 small Gaussians, 6 with scale 0.04 > grow_scale3d 0.02),
    plus Gaussians the camera never sees: two oversized ones (scale 0.3 > prune_scale3d 0.2) and two
    nearly transparent ones (opacity 0.005 < prune_opacity 0.01). Unseen rows get no gradient, so
    Adam leaves them as they are."""
    torch.manual_seed(seed)
    model = GaussianModel.random_in_ellipsoid(66, sh_degree=0, seed=seed, opacity=0.5)
    with torch.no_grad():
        model.log_scales[:6] = math.log(0.04)
    extra = GaussianModel.from_points(torch.tensor([[0.0, 0.0, -5.0]] * 4), sh_degree=0, opacity=0.5,
                                      scales=torch.tensor([0.3, 0.3, 0.01, 0.01]))
    with torch.no_grad():
        extra.opacity_logits[2:] = math.log(0.005 / 0.995)
    values = {n: torch.cat([getattr(model, n).detach(), getattr(extra, n).detach()])
              for n in model.gaussian_param_names}
    out = GaussianModel(values["means"].shape[0], sh_degree=0)
    for n, v in values.items():
        out.replace_param(n, torch.nn.Parameter(v))
    return out


def _render(model, vm, K):
    c, _, _, meta = rasterize(**model.activated(), viewmats=vm, Ks=K, width=SIZE, height=SIZE, sh_degree=0,
                              backend="torch")
    return c, meta


def test_every_rule_fires_on_the_default_schedule():
    """The strategy of `fit`'s default DensifyConfig over steps 1 .. refine_stop + 1, on real rendered
    gradients (torch rasteriser, 24 px, L1 to a fixed random image), counting clones, splits, opacity
    prunes, size prunes and opacity resets. To keep it to seconds, only the steps where the schedule
    acts (multiples of refine_every or reset_every, and refine_stop + 1) render, optimise and feed
    the strategy, so each refinement averages one step's gradients instead of refine_every steps'.
    With the old defaults (reset_every 3000 > refine_stop 2000) the reset and the size prune never fired."""
    cfg = DensifyConfig()
    strategy = DensifyStrategy(strategy_config(cfg), scene_scale=1.0)
    model = _scene()
    opt = torch.optim.Adam([{"params": [getattr(model, n)], "lr": lr} for n, lr in
                            (("means", 1.6e-4), ("quats", 1e-3), ("log_scales", 5e-3),
                             ("opacity_logits", 5e-2), ("sh0", 2.5e-3), ("shN", 1e-4))], eps=1e-15)
    vm, K = toy_camera(SIZE)
    target = torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(1))
    seen = {"cloned": 0, "split": 0, "pruned_opacity": 0, "pruned_size": 0, "reset": 0}
    for step in range(1, cfg.refine_stop + 2):
        if step % cfg.refine_every and step % cfg.reset_every and step != cfg.refine_stop + 1:
            continue
        c, meta = _render(model, vm, K)
        opt.zero_grad(set_to_none=True)
        (c - target).abs().mean().backward()
        opt.step()
        refine = step > cfg.refine_start and step % cfg.refine_every == 0 and step < cfg.refine_stop
        if refine:  # what the prune will see (the rule of strategy.refine, before the strategy acts)
            with torch.no_grad():
                seen["pruned_opacity"] += int((model.opacities < cfg.prune_opacity).sum())
                if step > cfg.reset_every:
                    seen["pruned_size"] += int((model.scales.amax(-1) > cfg.prune_scale3d).sum())
        out = strategy.step_post_backward(model, opt, batch_meta([meta]), step)
        seen["cloned"] += out.get("cloned", 0)
        seen["split"] += out.get("split", 0)
        seen["reset"] += int(out.get("reset", False))
        if refine:
            assert "pruned" in out
    print(seen, model.num_gaussians)
    assert all(v > 0 for v in seen.values()), seen
    # the big unseen Gaussians are gone after the first reset, and nothing larger is left
    assert float(model.scales.detach().amax(-1).max()) <= cfg.prune_scale3d


def _stat_after(frames: list[int], batch: int, models_views) -> torch.Tensor:
    """Per-Gaussian mean screen-space gradient (grad2d / count) after feeding `frames` in batches of
    `batch`, each batch's loss the mean over its frames (as the training loss), each frame its own camera."""
    model, views, targets = models_views
    strategy = DensifyStrategy(strategy_config(DensifyConfig()), scene_scale=1.0)
    for i in range(0, len(frames), batch):
        model.zero_grad(set_to_none=True)
        metas, losses = [], []
        for f in frames[i:i + batch]:
            c, meta = _render(model, *views[f])
            metas.append(meta)
            losses.append((c - targets[f]).abs().mean())
        torch.stack(losses).mean().backward()
        strategy.accumulate(batch_meta(metas), model.num_gaussians)
    return strategy.grad2d / strategy.count.clamp_min(1)


def test_gradient_statistic_does_not_depend_on_the_batch_size():
    """Four frames (four cameras, four targets), parameters fixed: one batch of 4 and four batches
    of 1 give the same per-Gaussian statistic (relative difference < 1e-4; the old n_cameras=1
    made the batch of 4 read a quarter of it)."""
    model = _scene()
    views, targets = [], []
    for f in range(4):
        vm, K = toy_camera(SIZE, dist=0.55 + 0.05 * f)
        vm[0, 0, 3] = 0.02 * (f - 1.5)
        views.append((vm, K))
        targets.append(torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(10 + f)))
    mv = (model, views, targets)
    one_batch = _stat_after([0, 1, 2, 3], 4, mv)
    four_batches = _stat_after([0, 1, 2, 3], 1, mv)
    seen = four_batches > 0
    assert int(seen.sum()) > 50
    rel = ((one_batch - four_batches).abs()[seen] / four_batches[seen]).max()
    assert float(rel) < 1e-4, float(rel)
    # and the statistic is large enough to matter against the default threshold
    assert float(four_batches[seen].mean()) > 0.1 * DensifyConfig().grad_threshold


def test_no_opacity_reset_near_the_end_of_a_run():
    """A reset clamps every opacity to `reset_opacity`; `reset_stop` (from the run's max_steps minus
    `reset_settle_steps`) skips a reset the run could not recover from, and only that one."""
    cfg = DensifyConfig()  # reset_every 1000, reset_settle_steps 500
    assert strategy_config(cfg, max_steps=1000).reset_stop == 500
    for max_steps, faded in ((1000, False), (1600, True), (0, True)):  # 0: the run's length unknown
        model = _scene()
        strategy = DensifyStrategy(strategy_config(cfg, max_steps=max_steps), scene_scale=1.0)
        c, meta = _render(model, *toy_camera(SIZE))
        c.mean().backward()
        out = strategy.step_post_backward(model, None, batch_meta([meta]), cfg.reset_every)
        top = float(model.opacities.max())
        assert out.get("reset", False) == faded, (max_steps, out)
        assert (top <= cfg.reset_opacity + 1e-6) == faded, (max_steps, top)


def test_a_run_too_short_for_any_opacity_reset_says_so(caplog):
    """1000 steps with the defaults (first reset at 1000, none in the last 500): no reset at all, so
    floaters are never pruned; the run warns. 1600 steps reset at 1000 and stay quiet."""
    cfg = DensifyConfig()
    with caplog.at_level("WARNING", logger="hm_talker"):
        warn_schedule(cfg, max_steps=1600)
    assert not [r for r in caplog.records if "opacity reset" in r.getMessage()]
    with caplog.at_level("WARNING", logger="hm_talker"):
        warn_schedule(cfg, max_steps=1000)
    assert [r for r in caplog.records if "too short for an opacity reset" in r.getMessage()]


def test_a_fit_ending_on_a_reset_step_saves_an_unfaded_face(identity64, tmp_path, caplog):
    """The bug this guards: runs of 1000 steps (= reset_every) saved the face right after its opacity
    reset, every face Gaussian at opacity <= 0.05, and scored psnr_face about 10 dB. Here a 12-step
    run with resets every 12 steps: the saved face keeps opacities above the reset clamp."""
    from conftest import SMALL
    from hm_talker.training.fit import fit

    caplog.set_level("WARNING", logger="hm_talker")
    run = fit(None, [f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=r", "trainer.max_steps=12",
                     "trainer.val_every=12", "strategy.refine_start=2", "strategy.refine_every=3",
                     "strategy.reset_every=12", "strategy.refine_stop=100", "strategy.reset_settle_steps=4",
                     *SMALL], False)
    # its only reset would come 4 steps before the end: the run says once (not once per branch) that it has none
    assert len([r for r in caplog.records if "too short for an opacity reset" in r.getMessage()]) == 1
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    opacity = torch.sigmoid(ckpt["state_dict"]["head.face.opacity_logits"])
    assert float(opacity.max()) > 0.2, float(opacity.max())


def test_a_deferred_reset_waits_for_the_next_step_and_survives_a_checkpoint():
    """`defer_reset`: the reset step's own face stays as trained (what validation and checkpoints see);
    the reset lands before the next step, also after a save and load of the strategy's state."""
    cfg = DensifyConfig()
    model = _scene()
    strategy = DensifyStrategy(strategy_config(cfg), scene_scale=1.0)
    c, meta = _render(model, *toy_camera(SIZE))
    c.mean().backward()
    before = float(model.opacities.detach().max())
    out = strategy.step_post_backward(model, None, batch_meta([meta]), cfg.reset_every, defer_reset=True)
    assert out.get("reset") and strategy.reset_due
    assert float(model.opacities.detach().max()) == before > 0.4
    resumed = DensifyStrategy(strategy_config(cfg), scene_scale=1.0)
    resumed.load_state_dict(strategy.state_dict())
    assert resumed.apply_due_reset(model, None)
    assert float(model.opacities.max()) <= cfg.reset_opacity + 1e-6
    assert not resumed.apply_due_reset(model, None)  # once


def test_validation_on_a_reset_step_sees_the_trained_face(identity64, tmp_path):
    """The bug this guards: validation ran right after the opacity reset of the same step, so every
    reset step of a default run (1000 of 3000, val_every 500) reported a faded face (psnr_val 12 dB at
    256 px, its mouth scores meaningless). A 12-step run, validation and reset every 6 steps: the face
    validated at step 6 keeps its opacities; the first step after it starts from the reset."""
    import lightning as L

    from conftest import SMALL
    from hm_talker.training.fit import fit

    seen = {}

    class Opacity(L.Callback):
        def on_validation_end(self, trainer, module):
            seen[("val", trainer.global_step)] = float(module.face.opacities.max())

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen[("train", trainer.global_step)] = float(module.face.opacities.max())

    fit(None, [f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=r", "trainer.max_steps=12",
               "trainer.val_every=6", "strategy.refine_start=2", "strategy.refine_every=3",
               "strategy.reset_every=6", "strategy.refine_stop=100", "strategy.reset_settle_steps=0",
               *SMALL], False, callbacks=[Opacity()])
    reset_opacity = DensifyConfig().reset_opacity
    assert seen[("val", 6)] > 0.2, seen
    assert seen[("train", 7)] < 2 * reset_opacity, seen  # reset, then one optimiser step
