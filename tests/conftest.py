"""Shared fixtures: media made on the fly with ffmpeg, the shared real clips when present."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("GLOG_minloglevel", "2")

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("HM_TALKER_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
REAL_CLIPS = {  # name -> (source frames, source fps)
    "face1.mp4": (135, 22.13), "face2.mp4": (125, 25.0), "face3.mp4": (125, 25.0),
    "face4_30fps.mp4": (199, 30.0), "face5.mp4": (122, 25.0),
}


def toy_camera(size: int = 32, dist: float = 0.6):
    """One pinhole camera [1, 4, 4], [1, 3, 3] looking down +z at a ~0.24-unit scene `dist` away."""
    import torch

    vm = torch.eye(4)[None]
    vm[0, 2, 3] = dist
    f = 0.8 * size * 0.5 / 0.12
    K = torch.tensor([[[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]]])
    return vm, K


def ar1(rng, n: int, phi: float):
    """A stationary AR(1) series of unit variance (a smooth mouth, a smooth per-frame score error)."""
    import numpy as np

    x = np.empty(n)
    x[0] = rng.standard_normal()
    e = rng.standard_normal(n) * np.sqrt(1 - phi ** 2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def real_file(name: str) -> Path:
    p = REAL / name
    if not p.is_file():
        pytest.skip(f"real clip {name} not found under {REAL} (set HM_TALKER_REAL_DATA)")
    return p


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory):
    """A 6 s procedural talking face at 25 fps with sound (no files from outside the repo)."""
    from hm_talker.synthetic import make_synthetic_clip

    path = tmp_path_factory.mktemp("synthetic") / "talker.mp4"
    return make_synthetic_clip(path, seconds=6.0, size=256, seed=0)


@pytest.fixture(scope="session")
def synthetic_identity(tmp_path_factory, synthetic_clip):
    """The synthetic clip preprocessed at 128 px into small shards."""
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    out = tmp_path_factory.mktemp("ident") / "synth"
    preprocess([synthetic_clip.path], out, PreprocessConfig(size=128, shard_frames=16))
    return out


# small and fast on 2 CPU cores: 64 px frames, a few hundred Gaussians, no loader workers
SMALL = [
    "model.gaussians.num_face=300",
    "model.gaussians.num_mouth=50",
    "data.num_workers=0",
    "data.batch_size=2",
    "cmmm.pretrain_steps=20",  # CMMM stage 1: a few steps (its quality has tests of its own)
]


@pytest.fixture(scope="session")
def identity64(tmp_path_factory, synthetic_clip):
    """The synthetic clip preprocessed at 64 px (train 136 frames, val 14)."""
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    out = tmp_path_factory.mktemp("ident64") / "synth64"
    preprocess([synthetic_clip.path], out, PreprocessConfig(size=64, shard_frames=16))
    return out


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory, identity64):
    """A briefly trained model of the 64 px identity (its last.ckpt)."""
    from hm_talker.training.fit import fit

    run = fit(None, [f"data.root={identity64}", f"run.dir={tmp_path_factory.mktemp('runs')}",
                     "run.name=brief", "trainer.max_steps=20", *SMALL], False)
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real SLURM (munged, slurmctld, two fake nodes n1, n2 of 1 CPU each) for the session; skipped
    with the reason where it cannot run (not root, no apt). Stopped by process id at the end."""
    import shutil
    import tempfile

    from slurm_cluster import SlurmCluster, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    # not under pytest's 0700 temp root: munged (user munge) must traverse the socket's parents
    root = Path(tempfile.mkdtemp(prefix="hm-slurm-"))
    cluster = SlurmCluster(root)
    try:
        cluster.start()
    except Exception as exc:  # noqa: BLE001 (a machine that cannot run the daemons: skip with why)
        cluster.stop()
        pytest.skip(f"could not start SLURM: {exc}")
    yield cluster
    cluster.stop()
    if not os.environ.get("HM_TALKER_KEEP_SLURM"):
        shutil.rmtree(root, ignore_errors=True)
