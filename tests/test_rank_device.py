"""One GPU per rank (issue 18): the helper Trainers `fit` builds before DDP exists (CMMM's stage 1) take this
rank's own device. The mapping is checked here with the CUDA counts a node would report (CI has no GPU);
tests/test_cuda_pipeline.py runs it on a real GPU."""
from __future__ import annotations

import pytest
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


def test_the_fit_binds_each_rank_to_its_gpu_before_anything_is_built(monkeypatch):
    """What `fit` calls first: after it, a bare `cuda` device in this rank (the metrics', the stage-1
    calibration's) is cuda:LOCAL_RANK. The binding is observed through torch.cuda.set_device."""
    bound: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", bound.append)
    for rank in (0, 3):
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        assert slurm_env.bind_local_gpu("auto") == rank
    assert bound == [0, 3]
    assert slurm_env.bind_local_gpu("cpu") is None and bound == [0, 3]  # trainer.accelerator=cpu: no GPU touched


class _StopBeforeStage1(Exception):
    pass


def test_fit_binds_the_rank_gpu_before_stage1(identity64, tmp_path, monkeypatch):
    """The order in a real `fit` (CPU): the rank's GPU is bound before the model exists and before stage 1."""
    from conftest import SMALL

    from hm_talker.training import fit, hmmm_module, stage1

    events: list[str] = []
    real_bind, real_init = slurm_env.bind_local_gpu, hmmm_module.HMMMModule.__init__
    monkeypatch.setattr(slurm_env, "bind_local_gpu", lambda acc: (events.append(f"bind {acc}"), real_bind(acc))[1])
    monkeypatch.setattr(hmmm_module.HMMMModule, "__init__",
                        lambda self, *a, **k: (events.append("model"), real_init(self, *a, **k))[1])

    def stage1_reached(*a, **k):
        events.append("stage 1")
        raise _StopBeforeStage1

    monkeypatch.setattr(stage1, "prepare_cmmm", stage1_reached)
    with pytest.raises(_StopBeforeStage1):
        fit.fit(None, [f"data.root={identity64}", f"run.dir={tmp_path}", "trainer.accelerator=cpu", *SMALL], False)
    assert events == ["bind cpu", "model", "stage 1"]


def test_no_code_outside_the_binding_names_a_gpu():
    """Every tensor a rank creates lands on `torch.device("cuda")` (the current device, bound above), a module's
    or batch's device, or the Trainer's root device: nothing in the package or the data layer names a GPU index
    (`cuda:1`, `.cuda(0)`, `device_ids`) or rebinds the current device, which would put work of every rank on
    one GPU. slurm_env.bind_local_gpu is the one place that chooses."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    named = re.compile(r"""["']cuda:\d|f["']cuda:|\.cuda\(\s*\w|set_device\(|device_ids""")
    offenders = []
    for path in [*(repo / "hm_talker").rglob("*.py"), *(repo / "datamodules").rglob("*.py")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if named.search(code) and not (path.name == "slurm_env.py" and "set_device(devices[0])" in code):
                offenders.append(f"{path.relative_to(repo)}:{n}: {line.strip()}")
    assert not offenders, offenders
    assert "torch.cuda.set_device(devices[0])" in (repo / "hm_talker" / "training" / "slurm_env.py").read_text()
