"""Densification under DDP (hm_talker/training/ddp_gaussians.py): ranks keep identical Gaussians, and
the statistics they refine on are those of one process training the global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import SMALL
from hm_talker.render import DensifyStrategy, GaussianModel, StrategyConfig

N, VIEWS = 200, 4
CFG = StrategyConfig(refine_start=0, refine_every=1, reset_every=0, grad_threshold=0.5, grow_scale3d=0.05,
                     prune_opacity=0.0, seed=3)


def _views():
    """Per-view screen-space gradients of the GLOBAL-batch loss (the mean over all VIEWS views)."""
    g = torch.Generator().manual_seed(1)
    grads = torch.randn(VIEWS, N, 2, generator=g) * 0.02
    radii = (torch.rand(VIEWS, N, generator=g) > 0.3).int() * 3  # some Gaussians invisible in some views
    return grads, radii


def _meta(grads, radii):
    """As training/densify.batch_meta builds it: one row per view of the loss, n_cameras = views."""
    means2d = torch.zeros_like(grads)
    means2d.grad = grads.clone()
    return {"means2d": means2d, "radii": radii, "width": 32, "height": 32, "n_cameras": grads.shape[0]}


def _model():
    return GaussianModel.random_in_ellipsoid(N, sh_degree=0, seed=0, opacity=0.5)


def _opt(model):
    return torch.optim.Adam([{"params": [getattr(model, n)]} for n in model.gaussian_param_names])


def _rank(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from hm_talker.training.ddp_gaussians import DistributedDensifyStrategy

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=init)
    grads, radii = _views()
    mine = slice(rank * VIEWS // world, (rank + 1) * VIEWS // world)
    model = _model()
    strategy = DistributedDensifyStrategy(CFG)
    # each rank's loss is the mean over ITS views: its per-view gradients are world x the global ones,
    # and its meta has fewer views (n_cameras): the per-view statistic comes out the same
    meta = _meta(grads[mine] * world, radii[mine])
    stats = strategy.step_post_backward(model, _opt(model), meta, step=1)
    torch.save({"stats": stats, "means": model.means.detach(), "log_scales": model.log_scales.detach()}, out)
    dist.destroy_process_group()


def test_distributed_statistics_equal_one_process_on_the_global_batch(tmp_path):
    grads, radii = _views()
    model = _model()
    ref = DensifyStrategy(CFG).step_post_backward(model, _opt(model), _meta(grads, radii), step=1)
    assert ref["cloned"] + ref["split"] > 10  # the refinement has something to agree on

    ctx = mp.get_context("spawn")
    init = f"file://{tmp_path / 'pg'}"
    procs = [ctx.Process(target=_rank, args=(r, 2, init, str(tmp_path / f"r{r}.pt"))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in range(2))
    assert r0["stats"] == r1["stats"] == ref  # same clones, splits, prunes and count as one process
    assert torch.equal(r0["means"], r1["means"]) and torch.equal(r0["log_scales"], r1["log_scales"])
    assert torch.allclose(r0["means"], model.means.detach(), atol=1e-6, rtol=0)  # the split draws match too


@pytest.mark.slow  # about a minute (the 2-node SLURM test covers the same under `-m slurm`)
def test_two_process_ddp_with_densification_keeps_identical_gaussians(identity64, tmp_path):
    """`fit trainer.devices=2` with densification on (real DDP, gloo): the Gaussians grow and both ranks
    end bit-identical (every parameter, also after the parameter set changed twice)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    args = [f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=ddp", "trainer.max_steps=8",
            "trainer.devices=2", "trainer.val_every=8", "trainer.limit_val_batches=1", *SMALL,
            "strategy.refine_start=2", "strategy.refine_every=3", "strategy.grad_threshold=1e-5",
            "strategy.reset_every=0"]
    script = Path(__file__).with_name("ddp_fit.py")
    r = subprocess.run([sys.executable, str(script), str(tmp_path), *args], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0] == ranks[1]  # bit-identical replicas
    ckpt = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8
    assert ckpt["num_gaussians"]["face"] > 300  # densified at steps 3 and 6 (from 300)
    assert ckpt["state_dict"]["head.face.means"].shape[0] == ckpt["num_gaussians"]["face"]


@pytest.mark.slow
def test_two_process_ddp_resume_with_densification_is_exact(identity64, tmp_path):
    """8 DDP steps in one go == 4 steps, stop, --resume to 8 (densification at steps 3 and 6 on the
    global statistics, which the checkpoint carries across the resume)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    common = [f"data.root={identity64}", f"run.dir={tmp_path}", "trainer.devices=2", "trainer.val_every=1000",
              "trainer.checkpoint_every=1000", "trainer.limit_val_batches=1", *SMALL, "optim.decay_steps=8",
              "strategy.refine_start=2", "strategy.refine_every=3", "strategy.grad_threshold=1e-5",
              "strategy.reset_every=0", "schedule.mouth_warmup_steps=2"]
    exe = [sys.executable, "-m", "hm_talker.cli", "-q", "fit", *common]
    for extra in (["run.name=full", "trainer.max_steps=8"], ["run.name=split", "trainer.max_steps=4"],
                  ["run.name=split", "trainer.max_steps=8", "--resume"]):
        r = subprocess.run(exe + extra, capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    assert a["num_gaussians"] == b["num_gaussians"] and a["num_gaussians"]["face"] > 300
    for key, va in a["state_dict"].items():
        assert torch.allclose(va, b["state_dict"][key], atol=1e-6, rtol=0), key
