"""The GPU path end to end (marker gpu; skipped without CUDA): a short fit at 512 px with validation,
a resume, inference and evaluation on CUDA, and gsplat against the PyTorch rasteriser on the same
trained scene (the batched gsplat call included)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

REPO = Path(__file__).resolve().parents[1]
STEPS = ["model.gaussians.num_face=2000", "model.gaussians.num_mouth=300", "data.num_workers=0",
         "cmmm.pretrain_steps=20", "trainer.accelerator=gpu"]


@pytest.fixture(scope="module")
def identity512(tmp_path_factory):
    """HM_TALKER_GPU_DATA, or the check script's .gpu/data, or a synthetic clip preprocessed here."""
    for cand in (os.environ.get("HM_TALKER_GPU_DATA"), REPO / ".gpu" / "data"):
        if cand and (Path(cand) / "manifest.json").is_file():
            return Path(cand)
    pytest.importorskip("mediapipe", reason="no preprocessed 512 px identity and no mediapipe to make one")
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip

    tmp = tmp_path_factory.mktemp("gpu")
    clip = make_synthetic_clip(tmp / "talker.mp4", seconds=8.0, size=512, seed=0)
    preprocess([clip.path], tmp / "ident", PreprocessConfig(size=512))
    return tmp / "ident"


@pytest.fixture(scope="module")
def cuda_run(identity512, tmp_path_factory):
    import shutil

    from hm_talker.training.fit import fit

    if shutil.which("ffmpeg") is None:  # the fit writes its validation videos with it
        pytest.skip("no ffmpeg on PATH (fit refuses to start without it)")

    runs = tmp_path_factory.mktemp("runs")
    args = [f"data.root={identity512}", f"run.dir={runs}", "run.name=cuda", "trainer.val_every=4", *STEPS]
    fit(None, [*args, "trainer.max_steps=4"], False)
    run = fit(None, [*args, "trainer.max_steps=8"], True)
    return run


def test_fit_validates_and_resumes_on_cuda(cuda_run):
    ckpt = torch.load(cuda_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8
    assert ckpt["render"]["backend"] in ("gsplat", "torch")
    summary = json.loads((cuda_run / "summary.json").read_text())
    assert summary["metrics"]["psnr_val"] > 5


def test_infer_and_evaluate_on_cuda(cuda_run, identity512, tmp_path):
    from hm_talker.evaluation.cli import evaluate_self
    from hm_talker.driving.infer import infer
    from hm_talker.synthetic import make_synthetic_speech

    speech = tmp_path / "speech.wav"
    make_synthetic_speech(speech, seconds=2.0, seed=3)
    r = infer(cuda_run / "checkpoints" / "last.ckpt", speech, tmp_path / "driven.mp4", device="cuda")
    assert r["frames"] == 50 and r["device"].startswith("cuda") and r["end_to_end_fps"] > 0
    m = evaluate_self(cuda_run / "checkpoints" / "last.ckpt", identity512, tmp_path / "eval")
    assert m["psnr_face"] is not None and m["psnr_face"] > 5


def test_gsplat_matches_torch_on_the_trained_scene(cuda_run, identity512):
    from datamodules import TalkingHeadDataModule
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.render.rasterizer import GSPLAT_ALPHA_MAX, gsplat_available

    if not gsplat_available():
        pytest.skip("gsplat's CUDA kernels are not available")
    module, root, _ = load_module(cuda_run / "checkpoints" / "last.ckpt", device="cuda")
    dm = TalkingHeadDataModule(str(root), num_workers=0, val_batch_size=4)
    dm.setup()
    batch = {k: v.cuda() for k, v in next(iter(dm.val_dataloader())).items()}
    with torch.no_grad():
        deformed = module.deform(batch)
        module.head.render_cfg.backend = "gsplat"  # all 4 frames in one batched call
        g = module.render(batch, deformed)["rgb"]
        module.head.render_cfg.backend, module.head.render_cfg.alpha_max = "torch", GSPLAT_ALPHA_MAX
        t = module.render(batch, deformed)["rgb"]
    assert (g - t).abs().mean() < 2e-3, float((g - t).abs().mean())


def test_stage1_of_a_rank_runs_on_its_own_gpu(identity512, tmp_path, monkeypatch):
    """The rank-device rule on CUDA (one process, LOCAL_RANK=0): CMMM's stage-1 Trainer, built before DDP,
    trains on cuda:LOCAL_RANK and its weights come back from there."""
    from hm_talker.training import slurm_env
    from hm_talker.training.stage1 import stage1_checkpoint
    from hm_talker.config.fit import load_config
    from hm_talker.data.identity import load_manifest, speech_rows

    monkeypatch.setenv("LOCAL_RANK", "0")
    assert slurm_env.local_device("auto") == ("gpu", [0])
    cfg = load_config(None, [f"data.root={identity512}", f"run.dir={tmp_path}", "cmmm.pretrain_steps=10",
                             "trainer.accelerator=gpu"])
    m = load_manifest(identity512)
    k, d = m["features"]["audio"]["shape"]
    cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim = int(k), int(d)
    cfg.cmmm.net.speech_rows = speech_rows(m)
    import lightning

    devices: list[torch.device] = []

    class Recording(lightning.Trainer):  # the device each Trainer built in this rank trains on
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            devices.append(self.strategy.root_device)

    monkeypatch.setattr(lightning, "Trainer", Recording)
    ckpt = stage1_checkpoint(cfg, identity512, tmp_path / "r", 0)
    assert ckpt.is_file() and ckpt.parent.parent.name == "cmmm-cache"
    assert devices == [torch.device("cuda", 0)], devices
    assert slurm_env.bind_local_gpu("gpu") == 0 and torch.cuda.current_device() == 0
