"""Densification under DDP: every rank ends every step with the same Gaussians.

DDP builds its gradient buckets from the parameters it sees when it wraps the module; densification
replaces the Gaussian parameter tensors (`render.strategy.edit_gaussians`), so DDP would go on
reducing the old, dropped tensors and the new ones would train on each rank's own gradient. Instead:

- the Gaussian parameters are kept out of DDP (`_ddp_params_and_buffers_to_ignore`, by name: the
  names stay when the tensors change) and their gradients are averaged here, in one flat all-reduce
  per step just before the optimiser step (an optimiser step pre-hook, which sees the current
  tensors whatever densification did);
- the statistics are per view (`training/densify.batch_meta` undoes the loss's 1/B, so a view's
  screen-space gradient does not depend on how many views share its loss): the gradient-norm sums
  and visibility counts (sum) and max screen radii (max) are all-reduced before each refinement, so
  every rank decides on the statistics of the global batch;
- split positions come from each strategy's generator, seeded identically on every rank, and the
  Gaussians are broadcast from rank zero once at the first step, so identical inputs give identical
  edits. The deformation networks stay under DDP as before.
Cost: the Gaussians' gradients (14 floats per Gaussian at sh_degree 0, 59 at degree 3) once per step,
not overlapped with the backward pass, and 3 floats per Gaussian per refinement.
"""
from __future__ import annotations

import lightning as L
import torch
import torch.distributed as dist

from hm_talker.render import DensifyStrategy

BRANCHES = ("face", "mouth")


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class DistributedDensifyStrategy(DensifyStrategy):
    """A DensifyStrategy whose statistics are those of the global batch (see the module docstring)."""

    @classmethod
    def from_strategy(cls, strategy: DensifyStrategy) -> "DistributedDensifyStrategy":
        new = cls(strategy.config, strategy.scene_scale)
        new.load_state_dict(strategy.state_dict())
        return new

    def state_dict(self) -> dict:
        """The global statistics (all ranks call this together when a checkpoint is written)."""
        state = super().state_dict()
        if _world() > 1 and self.grad2d is not None:
            grad2d, count, radii = self.grad2d.clone(), self.count.to(torch.float64), self.max_radii.clone()
            dist.all_reduce(grad2d, op=dist.ReduceOp.SUM)
            dist.all_reduce(count, op=dist.ReduceOp.SUM)
            dist.all_reduce(radii, op=dist.ReduceOp.MAX)
            state.update(grad2d=grad2d, count=count.round().to(self.count.dtype), max_radii=radii)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Global statistics go to rank zero (the other ranks start from zero sums): the next
        all-reduce adds them up once."""
        super().load_state_dict(state)
        if _world() > 1 and dist.get_rank() != 0 and self.grad2d is not None:
            self.grad2d, self.count = torch.zeros_like(self.grad2d), torch.zeros_like(self.count)

    @torch.no_grad()
    def refine(self, model, optimizers, step: int) -> dict:
        if _world() > 1 and self.grad2d is not None:
            dist.all_reduce(self.grad2d, op=dist.ReduceOp.SUM)
            count = self.count.to(torch.float64)  # gloo has no int32 all-reduce on every build
            dist.all_reduce(count, op=dist.ReduceOp.SUM)
            self.count = count.round().to(self.count.dtype)
            dist.all_reduce(self.max_radii, op=dist.ReduceOp.MAX)
        return super().refine(model, optimizers, step)


def gaussian_param_names(pl_module) -> list[str]:
    """Fully qualified names of the Gaussian parameters (e.g. head.face.means)."""
    ids = {id(p) for b in BRANCHES for p in getattr(pl_module, b).parameters()}
    return [n for n, p in pl_module.named_parameters() if id(p) in ids]


class DistributedGaussians(L.Callback):
    """Makes densification DDP-safe (module docstring); does nothing in a single process."""

    def __init__(self) -> None:
        self._hook = None
        self._synced = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.world_size <= 1 or stage != "fit":
            return
        # read by torch's DistributedDataParallel when Lightning wraps the module (after this hook)
        pl_module._ddp_params_and_buffers_to_ignore = gaussian_param_names(pl_module)
        pl_module.strategies = {name: DistributedDensifyStrategy.from_strategy(s)
                                for name, s in pl_module.strategies.items()}

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.world_size <= 1:
            return
        module = pl_module

        def average_gaussian_grads(optimizer, args, kwargs):
            grads = [p.grad for b in BRANCHES for p in getattr(module, b).parameters() if p.grad is not None]
            if not grads:
                return
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= dist.get_world_size()
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()

        opt = trainer.optimizers[0]
        self._hook = opt.register_step_pre_hook(average_gaussian_grads)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.world_size <= 1 or self._synced:
            return
        with torch.no_grad():  # same start on every rank (also after a resume: a no-op then)
            for b in BRANCHES:
                for p in getattr(pl_module, b).parameters():
                    dist.broadcast(p.data, src=0)
        self._synced = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
