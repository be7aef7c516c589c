"""Glue between the training step and the renderer's `DensifyStrategy` (one strategy per branch).

Each frame of a batch is rasterised as its own camera; `batch_meta` turns the per-view render
metas of one branch into the single meta a strategy expects, and `densify_branches` feeds every
branch's strategy after the optimiser step.
"""
from __future__ import annotations

import logging
from dataclasses import fields

import torch

from hm_talker.render import StrategyConfig
from hm_talker.config.fit import DensifyConfig

log = logging.getLogger("hm_talker")


def strategy_config(cfg: DensifyConfig, seed_offset: int = 0, max_steps: int = 0) -> StrategyConfig:
    """The renderer's StrategyConfig from the fit config's `strategy` section; `max_steps` (the run's
    last step, 0 = unknown) stops the opacity resets `reset_settle_steps` before it: a run that ended
    right after a reset would save a faded face (opacities clamped to `reset_opacity`)."""
    # every other field has its twin in the `strategy` section: a missing one fails here, loudly
    values = {f.name: getattr(cfg, f.name) for f in fields(StrategyConfig) if f.name != "reset_stop"}
    values["seed"] = cfg.seed + seed_offset
    if max_steps > 0:
        values["reset_stop"] = max(1, max_steps - cfg.reset_settle_steps)
    return StrategyConfig(**values)


def warn_schedule(cfg: DensifyConfig, max_steps: int = 0) -> None:
    """Say once per run when its schedule leaves out the opacity reset (and with it the pruning of floaters)."""
    if cfg.enabled and cfg.reset_every > 0 and cfg.reset_every >= cfg.refine_stop:  # 0: resets off on purpose
        # the opacity reset and the size prune (which waits for step > reset_every) never happen
        log.warning("strategy.reset_every=%d is not below strategy.refine_stop=%d: no opacity reset and "
                    "no pruning of oversized Gaussians in this run", cfg.reset_every, cfg.refine_stop)
    elif cfg.enabled and max_steps > 0 and cfg.reset_every >= strategy_config(cfg, max_steps=max_steps).reset_stop:
        # too short a run for its first reset: floaters (large Gaussians in front of the face) stay
        log.warning("trainer.max_steps=%d is too short for an opacity reset (the first at strategy.reset_every=%d, "
                    "none within strategy.reset_settle_steps=%d of the end): floaters in front of the face are "
                    "not pruned; train longer or lower strategy.reset_every", max_steps, cfg.reset_every,
                    cfg.reset_settle_steps)


def batch_meta(metas: list[dict]) -> dict:
    """One strategy meta for the batch's views, stacked like the cameras of one render.

    The training loss is a mean over the B frames, so each view's screen-space gradient carries a
    1/B factor; ``n_cameras = B`` makes the strategy multiply it back (as gsplat does for C
    cameras), so the per-(step, view) mean gradient it thresholds is the same for any batch size.
    A batched render (gsplat, all frames in one call) gives one meta with [B, 1, N, 2] means2d."""
    if len(metas) == 1 and metas[0].get("batched"):
        m = metas[0]
        g = m["means2d"].grad
        means2d = m["means2d"].detach().flatten(0, 1)  # [B, N, 2]
        means2d.grad = torch.zeros_like(means2d) if g is None else g.flatten(0, 1)
        return {"means2d": means2d, "radii": m["radii"], "width": m["width"], "height": m["height"],
                "n_cameras": means2d.shape[0]}
    grads = [m["means2d"].grad if m["means2d"].grad is not None else torch.zeros_like(m["means2d"])
             for m in metas]
    means2d = torch.cat([m["means2d"].detach() for m in metas])  # [B, N, 2]
    means2d.grad = torch.cat(grads)
    return {"means2d": means2d, "radii": torch.cat([m["radii"] for m in metas]),
            "width": metas[0]["width"], "height": metas[0]["height"], "n_cameras": len(metas)}


@torch.no_grad()
def densify_branches(strategies: dict, branches: dict, opt: torch.optim.Optimizer, metas: dict,
                     step: int) -> None:
    """Statistics, then clone / split / prune / opacity reset on schedule, for every branch.

    strategies / branches: name -> DensifyStrategy / GaussianModel; metas: name -> per-view metas;
    ``step`` counts completed optimisation steps.
    """
    for name, strategy in strategies.items():
        # opacity resets wait for apply_due_resets at the next step: validation and checkpoints between two
        # steps see the trained face, not one faded to strategy.reset_opacity (psnr_val ~12 dB at 256 px)
        strategy.step_post_backward(branches[name], opt, batch_meta(metas[name]), step, defer_reset=True)


@torch.no_grad()
def apply_due_resets(strategies: dict, branches: dict, opt: torch.optim.Optimizer) -> None:
    """Before a step's forward pass: the opacity resets `densify_branches` scheduled after the previous step."""
    for name, strategy in strategies.items():
        strategy.apply_due_reset(branches[name], opt)
