"""The Lightning Trainer of a fit and its callbacks: the atomic checkpoint, the validation video, the lr
schedule record, progress lines, preemption (requeue), densification under DDP, graceful Ctrl-C."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig


@dataclass
class FitTrainer:
    trainer: object  # lightning.Trainer
    preemption: object  # training.preemption.Preemption: requested after a requeue signal
    interrupt: object  # training.interrupt.GracefulInterrupt: stopped after Ctrl-C / SIGTERM


@contextmanager
def deterministic_cpu(enabled: bool, accelerator: str):
    """Within: torch's deterministic algorithms when ENABLED and the run trains on the CPU (ACCELERATOR
    cpu, or auto without CUDA); afterwards torch's global flag is what it was. On the CPU the backward of
    indexed gathers sums over threads in the order they finish, so two fits of one seed part after a few
    hundred steps (once densification has grown the tensors); the deterministic algorithms sum in one
    order. On CUDA gsplat's backward accumulates with atomics that no flag orders, and some torch kernels
    would raise under the flag, so GPU runs are left as they are (the device is slurm_env.local_device's)."""
    import torch

    from hm_talker.training.slurm_env import local_device

    if not enabled or local_device(accelerator)[0] != "cpu":
        yield False
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield True
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def build_trainer(cfg: DictConfig, run_dir: Path, logger, fps: int, identity: Path,
                  callbacks: list | None = None, preemption=None) -> FitTrainer:
    import lightning as L

    from hm_talker.training import slurm_env
    from hm_talker.training.preemption import Preemption
    from hm_talker.training.checkpointing import AtomicLastCheckpoint
    from hm_talker.training.ddp_gaussians import DistributedGaussians
    from hm_talker.training.interrupt import GracefulInterrupt
    from hm_talker.training.lr_horizon import LrScheduleRecord
    from hm_talker.training.progress import ProgressLines
    from hm_talker.training.val_video import ValidationVideo

    t = cfg.trainer
    preemption, interrupt = preemption or Preemption(), GracefulInterrupt()
    trainer = L.Trainer(
        max_steps=t.max_steps, devices=t.devices,
        # DDP must allow unused parameters: the face deformation sits out the mouth warm-up
        strategy="ddp_find_unused_parameters_true" if t.devices > 1 or t.num_nodes > 1 else "auto",
        num_nodes=t.num_nodes, accelerator=t.accelerator, precision=t.precision,
        logger=logger, callbacks=[AtomicLastCheckpoint(run_dir / "checkpoints", t.checkpoint_every),
                                  ValidationVideo(run_dir / "val", fps, identity=identity),
                                  LrScheduleRecord(cfg), ProgressLines(t.progress_every),
                                  preemption, DistributedGaussians(), interrupt, *(callbacks or [])],
        plugins=slurm_env.plugins(),
        enable_checkpointing=False, log_every_n_steps=max(1, t.log_every),
        val_check_interval=t.val_every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        limit_val_batches=None if t.limit_val_batches < 0 else t.limit_val_batches,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(run_dir),
    )
    return FitTrainer(trainer, preemption, interrupt)
