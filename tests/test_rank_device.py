"""One GPU per rank (issue 18): the helper Trainers `fit` builds before DDP exists (CMMM's stage 1) take this
rank's own device. The mapping is checked here with the CUDA counts a node would report (CI has no GPU);
tests/test_cuda_pipeline.py runs it on a real GPU."""
from __future__ import annotations

import torch

from hm_talker.training import slurm_env


def test_each_rank_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # every task sees the node's 4 GPUs
    for rank in range(4):
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        assert slurm_env.local_device("auto") == ("gpu", [rank])
        assert slurm_env.local_device("gpu") == ("gpu", [rank])
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("SLURM_LOCALID", "2")  # srun sets this before Lightning sets LOCAL_RANK
    assert slurm_env.local_device("auto") == ("gpu", [2])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # --gpus-per-task=1: its one GPU is cuda:0
    assert slurm_env.local_device("auto") == ("gpu", [0])


def test_cpu_when_asked_or_without_gpus(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert slurm_env.local_device("cpu") == ("cpu", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert slurm_env.local_device("auto") == ("cpu", 1)
