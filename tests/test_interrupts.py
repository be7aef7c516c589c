"""Signals to real processes: Ctrl-C during fit keeps a consistent checkpoint and prints the resume
line; a terminated infer leaves nothing; a killed one leaves a work folder the next run removes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SMALL
from hm_talker.cli import main


def start(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "hm_talker.cli", "-q", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(cond, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


@pytest.mark.slow  # a real process each (about a minute on 2 busy cores, mostly imports)
def test_ctrl_c_during_fit_saves_checkpoint_and_prints_resume_line(identity64, tmp_path):
    import torch

    last = tmp_path / "runs" / "r" / "checkpoints" / "last.ckpt"
    args = ["fit", f"data.root={identity64}", f"run.dir={tmp_path / 'runs'}", "run.name=r",
            "trainer.max_steps=100000", "trainer.checkpoint_every=3", "trainer.val_every=100000", *SMALL]
    proc = start(*args)
    wait_for(last.is_file, proc)  # training runs: step 3 was saved
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-2000:]
    lines = [ln for ln in err.splitlines() if "resume with:" in ln]
    assert len(lines) == 1 and lines[0].rstrip().endswith("--resume") and "run.name=r" in lines[0], err[-2000:]
    step = int(lines[0].split("interrupted at step ")[1].split(":")[0])
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert step >= 3 and ckpt["global_step"] == step  # the checkpoint holds the step it reports
    assert not (tmp_path / "runs" / "r" / "summary.json").exists()  # not a finished run
    assert not (tmp_path / "runs" / "r" / ".hm-talker.lock").exists()  # the run dir's lock went with it


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory):
    from hm_talker.synthetic import make_synthetic_speech

    d = tmp_path_factory.mktemp("long_speech")
    make_synthetic_speech(d / "long.wav", seconds=120.0, seed=3)
    make_synthetic_speech(d / "short.wav", seconds=0.5, seed=4)
    return d


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".v.mp4.partial-*"))


def rendering(folder: Path):
    return lambda: any((p / "video.mp4").is_file() and (p / "video.mp4").stat().st_size > 0
                       for p in partials(folder))


@pytest.mark.slow
def test_terminated_infer_leaves_nothing(trained_ckpt, long_speech, tmp_path):
    out = tmp_path / "v.mp4"
    proc = start("infer", "--ckpt", str(trained_ckpt), "--audio", str(long_speech / "long.wav"), "--out", str(out))
    wait_for(rendering(tmp_path), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no video, no hidden work folder
    last = [ln for ln in err.splitlines() if ln.strip()][-1]  # infer keeps nothing: it must not promise a resume
    assert last == "hm-talker: interrupted (infer keeps no progress: running it again starts over)", last


@pytest.mark.slow
def test_killed_infer_work_folder_is_removed_by_the_next_run(trained_ckpt, long_speech, tmp_path, capsys):
    out = tmp_path / "v.mp4"
    proc = start("infer", "--ckpt", str(trained_ckpt), "--audio", str(long_speech / "long.wav"), "--out", str(out))
    wait_for(rendering(tmp_path), proc)
    proc.kill()  # SIGKILL: nothing can run, the work folder stays (named after the dead process)
    proc.communicate(timeout=60)
    assert len(partials(tmp_path)) == 1 and not out.exists()
    assert main(["infer", "--ckpt", str(trained_ckpt), "--audio", str(long_speech / "short.wav"),
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
