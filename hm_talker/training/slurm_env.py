"""What `fit` takes from SLURM: devices and nodes of the allocation, the cluster plugin, auto-resume.

Inside a SLURM job step (srun, one task per device) Lightning's `SLURMEnvironment` supplies the ranks
and the master address; the Trainer's `num_nodes` / `devices` must then equal the allocation's,
so they are read from SLURM_NNODES / SLURM_NTASKS when the config leaves them at 1 and checked
against it otherwise. Lightning's own auto-requeue is switched off: it checkpoints from inside the
signal handler (mid-step); `hm_talker.training.preemption.Preemption` checkpoints between steps instead.
"""
from __future__ import annotations

import os
from pathlib import Path

from hm_talker.errors import InputError


def in_slurm() -> bool:
    """True inside a SLURM job (batch script or srun step), as Lightning detects it."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def devices_and_nodes(devices: int, num_nodes: int) -> tuple[int, int]:
    """(devices per node, nodes) for the Trainer: the config's, or the SLURM allocation's when the
    config leaves them at 1. A config that asks for another shape than SLURM launched is an error
    (Lightning would hang waiting for ranks that never start)."""
    if not in_slurm():
        return devices, num_nodes
    nodes = int(os.environ.get("SLURM_NNODES", os.environ.get("SLURM_JOB_NUM_NODES", "1")))
    tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    per_node = max(1, tasks // max(1, nodes))
    if tasks == 1:  # a batch script without srun: one process, whatever the allocation's node count
        return devices, num_nodes
    if (devices, num_nodes) == (1, 1):
        return per_node, nodes
    if (devices, num_nodes) != (per_node, nodes):
        raise InputError(None, f"trainer.devices={devices} trainer.num_nodes={num_nodes} but SLURM started "
                               f"{tasks} tasks on {nodes} nodes (use --ntasks-per-node=devices, --nodes=num_nodes)")
    return devices, num_nodes


def plugins() -> list:
    """[SLURMEnvironment without Lightning's auto-requeue] inside SLURM, else []."""
    if not in_slurm():
        return []
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def requeued() -> bool:
    """True when SLURM restarted this job (requeue after preemption or time limit)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def auto_resume(resume: bool, last: Path) -> bool:
    """--resume as asked, or implied when SLURM requeued the job and its checkpoint exists."""
    return resume or (requeued() and last.is_file())


def local_rank() -> int:
    """This process's rank on its node (Lightning's LOCAL_RANK, else SLURM's SLURM_LOCALID; 0 alone)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))


def local_device(accelerator: str) -> tuple[str, object]:
    """(accelerator, devices) for a helper Trainer of this rank (CMMM's stage 1): its own GPU,
    cuda:LOCAL_RANK among the GPUs it sees (a task given one GPU with --gpus-per-task=1 sees it as
    cuda:0), never every rank's cuda:0; one CPU process where there is no GPU or the config says cpu."""
    import torch

    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        return "cpu", 1
    count = max(1, torch.cuda.device_count())
    return ("gpu" if accelerator == "auto" else accelerator), [local_rank() % count]


def bind_local_gpu(accelerator: str) -> int | None:
    """Make this rank's own GPU (as :func:`local_device` picks it) the process's current CUDA device, before
    anything of the fit exists: every `torch.device("cuda")` of the rank (stage 1's calibration, the metrics'
    LPIPS and SyncNet, validation scoring and video) then means cuda:LOCAL_RANK, never every rank's cuda:0.
    Returns the index bound, None on the CPU."""
    import torch

    kind, devices = local_device(accelerator)
    if kind == "cpu" or not torch.cuda.is_available():
        return None
    torch.cuda.set_device(devices[0])
    return devices[0]
