"""Adaptive density control for Gaussians (clone / split / prune / opacity reset), as in 3DGS.

The strategy keeps explicit state (accumulated screen-space gradient norms, visibility
counts, max screen radii, the sampling RNG), so training resumes exactly from
``state_dict()``.  When the set of Gaussians changes it edits the model's per-Gaussian
parameters *and* every optimiser that holds them in place: kept rows keep their Adam
moments, new rows start from zero, so manual optimisation in Lightning just goes on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from .gaussians import GaussianModel
from .projection import quat_to_rotmat


@dataclass
class StrategyConfig:
    refine_start: int = 500  # first step (exclusive) at which Gaussians may be densified / pruned
    refine_stop: int = 15_000  # from this step on: no statistics, refinement or opacity reset
    refine_every: int = 100  # steps between two refinements
    reset_every: int = 3000  # steps between opacity resets (0 disables)
    reset_stop: int = 0  # no opacity reset from this step on, so the opacities regrow before training ends (0: no limit)
    pause_after_reset: int = 0  # no refinement within this many steps after a reset (0: none)
    grad_threshold: float = 0.0002  # mean NDC-space gradient norm of means2d above which a Gaussian grows
    grow_scale3d: float = 0.01  # max scale <= this * scene_scale: clone, else split
    grow_scale2d: float = 0.05  # also split if max screen radius > this fraction of the image (see refine_scale2d_stop)
    refine_scale2d_stop: int = 0  # screen-radius split/prune rules apply before this step (0: never)
    split_into: int = 2  # children per split Gaussian
    split_shrink: float = 1.6  # children's scales are the parent's divided by this (3DGS: 0.8 * split_into)
    prune_opacity: float = 0.005  # prune Gaussians with opacity below this
    prune_scale3d: float = 0.1  # after the first reset, prune Gaussians with max scale > this * scene_scale
    prune_scale2d: float = 0.15  # prune if max screen radius > this fraction of the image (before refine_scale2d_stop)
    reset_opacity: float = 0.01  # opacities are clamped to at most this at each reset
    max_gaussians: int = 0  # cap on N when growing, the highest gradients win (0: no cap)
    seed: int = 0  # seed of the generator that samples split children


Optimizers = torch.optim.Optimizer | Iterable[torch.optim.Optimizer] | dict[str, torch.optim.Optimizer] | None


def _as_optimizer_list(optimizers: Optimizers) -> list[torch.optim.Optimizer]:
    if optimizers is None:
        return []
    if isinstance(optimizers, dict):
        optimizers = list(optimizers.values())
    elif hasattr(optimizers, "param_groups"):
        optimizers = [optimizers]
    # Lightning's LightningOptimizer wraps the torch optimiser in ``_optimizer``.
    return [getattr(o, "_optimizer", o) for o in optimizers]


def edit_gaussians(
    model: GaussianModel,
    optimizers: Optimizers,
    new_values: dict[str, Tensor],  # parameter name -> new tensor (any number of rows)
    state_fn: Callable[[Tensor], Tensor],  # old per-row optimiser-state tensor -> new one
    grad_fn: Callable[[Tensor], Tensor] | None = None,  # same for a pending .grad (default: state_fn)
) -> None:
    """Replace per-Gaussian parameters and carry optimiser state and .grad along.

    ``state_fn`` maps any tensor with the old N rows (Adam's exp_avg, exp_avg_sq) to
    the new rows; scalar entries such as Adam's ``step`` are kept.  A pending ``.grad``
    is carried too, so the strategy may run before or after ``optimizer.step()``.
    """
    grad_fn = grad_fn or state_fn
    opts = _as_optimizer_list(optimizers)
    for name, value in new_values.items():
        old = getattr(model, name)
        new = nn.Parameter(value.detach().to(old.dtype), requires_grad=old.requires_grad)
        if old.grad is not None:
            new.grad = grad_fn(old.grad)
        for opt in opts:
            for group in opt.param_groups:
                for i, p in enumerate(group["params"]):
                    if p is old:
                        group["params"][i] = new
            if old in opt.state:
                st = opt.state.pop(old)
                opt.state[new] = {
                    k: state_fn(v) if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == old.shape[0] else v
                    for k, v in st.items()
                }
        model.replace_param(name, new)


def _rows(keep: Tensor, n_zero: int) -> Callable[[Tensor], Tensor]:
    """state_fn: the ``keep`` rows in order, then ``n_zero`` zero rows."""
    def fn(t: Tensor) -> Tensor:
        kept = t.index_select(0, keep.to(t.device))
        if n_zero == 0:
            return kept
        return torch.cat([kept, t.new_zeros((n_zero, *t.shape[1:]))])

    return fn


class DensifyStrategy:
    """3DGS-style densification with explicit, checkpointable state.

    Per training step, after the backward pass (before or after ``optimizer.step()``)::

        colors, alphas, depths, meta = rasterize(..., **model.activated())
        loss.backward()
        stats = strategy.step_post_backward(model, optimizers, meta, step)

    ``meta["means2d"].grad`` (pixels) is rescaled to NDC units like 3DGS
    (x W/2, x H/2, x number of cameras) so the usual ``grad_threshold`` applies.
    """

    def __init__(self, config: StrategyConfig | None = None, scene_scale: float = 1.0):
        self.config = config or StrategyConfig()
        self.scene_scale = float(scene_scale)
        self.grad2d: Tensor | None = None  # [N] summed gradient norms
        self.count: Tensor | None = None  # [N] number of (step, camera) the Gaussian was visible
        self.max_radii: Tensor | None = None  # [N] max screen radius / max(W, H)
        self.last_reset = -1
        self.reset_due = False  # a deferred opacity reset, applied by apply_due_reset (see step_post_backward)
        self.num_refines = 0
        self.generator = torch.Generator().manual_seed(self.config.seed)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "grad2d": self.grad2d,
            "count": self.count,
            "max_radii": self.max_radii,
            "last_reset": self.last_reset,
            "reset_due": self.reset_due,
            "num_refines": self.num_refines,
            "scene_scale": self.scene_scale,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.grad2d, self.count, self.max_radii = state["grad2d"], state["count"], state["max_radii"]
        self.last_reset = int(state["last_reset"])
        self.reset_due = bool(state.get("reset_due", False))  # absent in checkpoints from before deferral
        self.num_refines = int(state["num_refines"])
        self.scene_scale = float(state["scene_scale"])
        self.generator.set_state(state["generator"])

    def _reset_stats(self, n: int, device) -> None:
        self.grad2d = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device, dtype=torch.int32)
        self.max_radii = torch.zeros(n, device=device)

    # ------------------------------------------------------------------ per step
    @torch.no_grad()
    def accumulate(self, meta: dict, num_gaussians: int) -> None:
        """Add this step's screen-space gradient norms and visibility to the statistics."""
        means2d = meta["means2d"]
        if means2d.grad is None:
            raise RuntimeError("meta['means2d'].grad is None: call backward() before the strategy step")
        grad = means2d.grad.clone()  # [C, N, 2]
        C, W, H = meta["n_cameras"], meta["width"], meta["height"]
        grad[..., 0] *= W / 2.0 * C
        grad[..., 1] *= H / 2.0 * C
        radii = meta["radii"]  # [C, N]
        if self.grad2d is None or self.grad2d.numel() != num_gaussians:
            if self.grad2d is not None and self.grad2d.numel() != 0:
                raise RuntimeError(
                    f"strategy statistics hold {self.grad2d.numel()} Gaussians, the model {num_gaussians}: "
                    "the Gaussians were changed outside the strategy"
                )
            self._reset_stats(num_gaussians, grad.device)
        if self.grad2d.device != grad.device:  # e.g. state restored on the CPU
            dev = grad.device
            self.grad2d, self.count, self.max_radii = (t.to(dev) for t in (self.grad2d, self.count, self.max_radii))
        vis = radii > 0
        self.grad2d += (grad.norm(dim=-1) * vis).sum(0).to(self.grad2d.dtype)
        self.count += vis.sum(0).to(self.count.dtype)
        if self.config.refine_scale2d_stop > 0:
            r = (radii.float() / float(max(W, H))).amax(0)
            torch.maximum(self.max_radii, r, out=self.max_radii)

    def step_post_backward(self, model: GaussianModel, optimizers: Optimizers, meta: dict, step: int,
                           defer_reset: bool = False) -> dict:
        """Update statistics, then densify / prune / reset on schedule; returns what happened.

        ``defer_reset``: a scheduled opacity reset is only marked (``reset_due``) and applied by
        ``apply_due_reset`` before the next forward pass: the same training, but whatever runs between
        two steps (validation, a checkpoint) sees the face of this step, not a faded one."""
        cfg = self.config
        out: dict = {}
        if step >= cfg.refine_stop:
            return out
        self.accumulate(meta, model.num_gaussians)
        paused = cfg.pause_after_reset > 0 and self.last_reset >= 0 and step - self.last_reset < cfg.pause_after_reset
        if step > cfg.refine_start and step % cfg.refine_every == 0 and not paused:
            out.update(self.refine(model, optimizers, step))
        late = cfg.reset_stop > 0 and step >= cfg.reset_stop
        if cfg.reset_every > 0 and step > 0 and step % cfg.reset_every == 0 and not late:
            if defer_reset:
                self.reset_due = True
            else:
                self.reset_opacity(model, optimizers)
            self.last_reset = step
            out["reset"] = True
        return out

    @torch.no_grad()
    def apply_due_reset(self, model: GaussianModel, optimizers: Optimizers) -> bool:
        """Apply an opacity reset deferred by ``step_post_backward(..., defer_reset=True)``; True if one was due."""
        if not self.reset_due:
            return False
        self.reset_opacity(model, optimizers)
        self.reset_due = False
        return True

    # ------------------------------------------------------------------ operations
    @torch.no_grad()
    def refine(self, model: GaussianModel, optimizers: Optimizers, step: int) -> dict:
        """Clone small / split large high-gradient Gaussians, then prune; resets the statistics."""
        cfg = self.config
        n0 = model.num_gaussians
        if self.grad2d is None:
            self._reset_stats(n0, model.means.device)
        avg = self.grad2d / self.count.clamp_min(1).to(self.grad2d.dtype)
        high = avg > cfg.grad_threshold
        small = model.scales.amax(dim=-1) <= cfg.grow_scale3d * self.scene_scale
        clone = high & small
        split = high & ~small
        use_2d = step < cfg.refine_scale2d_stop
        if use_2d:
            split |= self.max_radii > cfg.grow_scale2d
        if cfg.max_gaussians > 0:
            clone, split = self._cap_growth(clone, split, avg, n0)
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone or n_split:
            self._grow(model, optimizers, clone, split)

        # Prune (new rows have zero screen radius so far, like 3DGS).
        prune = model.opacities < cfg.prune_opacity
        if cfg.reset_every > 0 and step > cfg.reset_every:
            prune |= model.scales.amax(dim=-1) > cfg.prune_scale3d * self.scene_scale
        if use_2d:
            old = self.max_radii[~split]
            radii = torch.cat([old, old.new_zeros(model.num_gaussians - old.numel())])
            prune |= radii > cfg.prune_scale2d
        n_prune = int(prune.sum())
        if n_prune:
            self.prune(model, optimizers, ~prune)
        self._reset_stats(model.num_gaussians, model.means.device)
        self.num_refines += 1
        return {"cloned": n_clone, "split": n_split, "pruned": n_prune, "num_gaussians": model.num_gaussians}

    def _cap_growth(self, clone: Tensor, split: Tensor, avg: Tensor, n0: int) -> tuple[Tensor, Tensor]:
        room = self.config.max_gaussians - n0
        extra = clone.long() + split.long() * (self.config.split_into - 1)  # new rows per candidate
        if int(extra.sum()) <= room:
            return clone, split
        cand = (clone | split).nonzero().squeeze(1)
        order = cand[torch.argsort(avg[cand], descending=True)]
        ok = order[torch.cumsum(extra[order], 0) <= max(room, 0)]
        chosen = torch.zeros_like(clone)
        chosen[ok] = True
        return clone & chosen, split & chosen

    @torch.no_grad()
    def _grow(self, model: GaussianModel, optimizers: Optimizers, clone: Tensor, split: Tensor) -> None:
        """New rows: non-split originals (in order), then clones, then split children."""
        cfg, k = self.config, self.config.split_into
        keep = (~split).nonzero().squeeze(1)
        ci, si = clone.nonzero().squeeze(1), split.nonzero().squeeze(1)
        noise = torch.randn(k, si.numel(), 3, generator=self.generator).to(model.means.device)
        values = {}
        for name in model.gaussian_param_names:
            p = getattr(model, name).detach()
            parent = p[si]
            if name == "means":
                rot = quat_to_rotmat(model.quats.detach()[si])  # [S, 3, 3]
                local = noise * model.scales.detach()[si]  # [k, S, 3] sample of the parent Gaussian
                kids = (parent[None] + torch.einsum("sij,ksj->ksi", rot, local)).reshape(-1, 3)
            elif name == "log_scales":
                kids = (parent - math.log(cfg.split_shrink)).repeat(k, *([1] * (p.dim() - 1)))
            else:
                kids = parent.repeat(k, *([1] * (p.dim() - 1)))
            values[name] = torch.cat([p[keep], p[ci], kids])
        edit_gaussians(model, optimizers, values, _rows(keep, ci.numel() + k * si.numel()))

    @torch.no_grad()
    def prune(self, model: GaussianModel, optimizers: Optimizers, keep_mask: Tensor) -> None:
        """Keep only the rows where ``keep_mask`` is True (parameters, optimiser state, statistics)."""
        keep = keep_mask.nonzero().squeeze(1)
        values = {name: getattr(model, name).detach()[keep] for name in model.gaussian_param_names}
        edit_gaussians(model, optimizers, values, _rows(keep, 0))
        if self.grad2d is not None and self.grad2d.numel() == keep_mask.numel():
            self.grad2d, self.count, self.max_radii = self.grad2d[keep], self.count[keep], self.max_radii[keep]

    @torch.no_grad()
    def reset_opacity(self, model: GaussianModel, optimizers: Optimizers) -> None:
        """Clamp opacities to ``reset_opacity`` and zero their optimiser moments (3DGS)."""
        cap = math.log(self.config.reset_opacity / (1.0 - self.config.reset_opacity))
        new = torch.clamp_max(model.opacity_logits.detach(), cap)
        edit_gaussians(model, optimizers, {"opacity_logits": new}, torch.zeros_like, grad_fn=lambda g: g)
