"""Against a real SLURM started by the `slurm_cluster` fixture (two fake nodes of 1 CPU each):
sweep arrays, preemption with requeue and resume, and 2-node DDP through the slurm/ templates.
Run with `pytest -m slurm` (root; SLURM is installed with apt where missing)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SMALL

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]
# what the fake nodes have (never more: such a job would wait forever); no GPUs there
FAKE = ["--cpus-per-task=1", "--mem=1G", "--gres=none", "--time=30"]


def _job_env(cluster, **extra) -> dict:
    env = {k: v for k, v in cluster.env().items() if not k.startswith("WANDB_SERVICE")}
    env.update({"PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "HM_TALKER_PYTHON": sys.executable, **extra})
    return env


def _tiny(identity, run_dir, steps=4) -> list[str]:
    return [f"data.root={identity}", f"run.dir={run_dir}", f"trainer.max_steps={steps}",
            f"trainer.val_every={steps}", "trainer.limit_val_batches=1", *SMALL]


def _sweep(cluster, spec, args, tmp_path) -> str:
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "sweep", str(spec), *args, "--launcher", "slurm",
                        *(f"--sbatch={o}" for o in [*FAKE, f"--output={tmp_path}/slurm-%A_%a.out"])],
                       cwd=REPO, env=_job_env(cluster), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split("array job ")[1].split()[0]


def test_sweep_array_of_two_tiny_fits(slurm_cluster, identity64, tmp_path):
    """2-task array: two summaries with the grid's values, one W&B group, one stage 1 for both (the two
    configurations differ in stage 2 only: the task that comes first trains it, the other waits for it or
    finds it); a resubmission skips them."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: slurm-test\nmethod: grid\nparameters:\n"
                    "  loss.dssim: {values: [0.0, 0.2]}\n  seed: {values: [0]}\n")
    runs = tmp_path / "runs"
    job = _sweep(slurm_cluster, spec, _tiny(identity64, runs), tmp_path)
    states = slurm_cluster.wait(job, timeout=900)
    logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert states == ["COMPLETED", "COMPLETED"], logs[-3000:]
    assert logs.count("stage 1: step 20/20") == 1, logs[-3000:]  # its progress line: trained once for the sweep
    (entry,) = (runs / "cmmm-cache").iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["last.ckpt", "stage1.json"]

    summaries = [json.loads(p.read_text()) for p in sorted(runs.glob("slurm-test-*/summary.json"))]
    assert len(summaries) == 2
    assert {s["group"] for s in summaries} == {"slurm-test"}  # one W&B group
    assert sorted(s["config"]["loss.dssim"] for s in summaries) == [0.0, 0.2]  # each task its configuration
    assert all(s["global_step"] == 4 and s["metrics"]["psnr_val"] > 5 for s in summaries)
    for s in summaries:  # one offline W&B run per configuration, id = run name, group recorded in it
        (wandb_run,) = (runs / s["name"] / "wandb").glob("offline-run-*")
        assert wandb_run.name.endswith(s["name"])
        assert b"slurm-test" in next(wandb_run.glob("*.wandb")).read_bytes()

    # re-submitted: both tasks find their run finished and do not train again
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("slurm-test-*/summary.json")}
    for p in tmp_path.glob("slurm-*.out"):
        p.unlink()
    job = _sweep(slurm_cluster, spec, _tiny(identity64, runs), tmp_path)
    assert slurm_cluster.wait(job, timeout=300) == ["COMPLETED", "COMPLETED"]
    logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert logs.count(": finished") == 2, logs[-2000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def _ckpt_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["global_step"])
    except Exception:  # noqa: BLE001 (absent, or replaced while reading)
        return -1


def test_preempted_job_checkpoints_requeues_and_resumes_exactly(slurm_cluster, identity64, tmp_path):
    """SIGUSR1 (what --signal=SIGUSR1@90 sends) to a training job of slurm/train.sbatch: it saves,
    requeues itself, and the requeued job ends at the same step and parameters as an uninterrupted run
    (densification on: the Gaussian count must match too), in the same W&B run."""
    n = 40  # steps: long enough (about 2 s on 2 cores) that the signal lands in training, not after it
    common = [*_tiny(identity64, tmp_path, n), f"optim.decay_steps={n}", "strategy.refine_start=5",
              "strategy.refine_every=6", "strategy.grad_threshold=1e-5", "strategy.reset_every=0",
              "schedule.mouth_warmup_steps=2", "trainer.checkpoint_every=2"]
    env = _job_env(slurm_cluster)
    ref = subprocess.run([sys.executable, "-m", "hm_talker.cli", "-q", "fit", *common, "run.name=full"],
                         cwd=REPO, env={**{k: v for k, v in env.items() if k != "SLURM_CONF"},
                                        "OMP_NUM_THREADS": "1"},  # as slurm/env.sh gives one-CPU tasks
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]

    last = tmp_path / "preempted" / "checkpoints" / "last.ckpt"
    out = tmp_path / "train.out"
    job = slurm_cluster.sbatch(*FAKE, "--nodes=1", "--ntasks-per-node=1", f"--output={out}",
                               "slurm/train.sbatch", *common, "run.name=preempted", cwd=REPO, env=env)
    deadline = time.time() + 600
    while _ckpt_step(last) < 4 and time.time() < deadline:
        assert slurm_cluster.job_states(job) in (["RUNNING"], ["PENDING"]), out.read_text()[-2000:]
        time.sleep(0.2)
    step = _ckpt_step(last)
    assert 4 <= step < n, f"no mid-run checkpoint (step {step})"
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm_cluster.env(), check=True)
    _requeued_and_done(slurm_cluster, job, out)

    show = subprocess.run(["scontrol", "-o", "show", "job", job], env=slurm_cluster.env(),
                          capture_output=True, text=True).stdout
    assert "Restarts=1" in show, show  # requeued once by the run itself
    log = out.read_text()
    assert "preemption signal: checkpoint at step" in log and "requeued SLURM job" in log, log[-3000:]
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == n and a["num_gaussians"] == b["num_gaussians"]
    for key, va in a["state_dict"].items():
        assert torch.allclose(va, b["state_dict"][key], atol=1e-6, rtol=0), key
    assert (tmp_path / "preempted" / "summary.json").is_file()
    attempts = list((tmp_path / "preempted" / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and all(p.name.endswith("-preempted") for p in attempts)  # one W&B run id


def _requeued_and_done(cluster, job, out: Path) -> None:
    """Wait for the job's own requeue and for the requeued job to complete. slurmctld holds a requeued job
    back until its old credential has expired (cred_expire, 10 s on the test cluster): forcing it to start
    sooner makes the node refuse it ("Job credential revoked") and the job FAILS. Until the requeue is
    recorded (Restarts=1) the killed first attempt may briefly read FAILED: not an end."""
    deadline, show = time.time() + 300, ""
    while time.time() < deadline:
        show = subprocess.run(["scontrol", "-o", "show", "job", job], env=cluster.env(),
                              capture_output=True, text=True).stdout
        if "Restarts=1" in show:
            break
        time.sleep(0.2)
    assert "Restarts=1" in show, show + out.read_text()[-3000:]
    assert cluster.wait(job, timeout=900) == ["COMPLETED"], out.read_text()[-3000:]


@pytest.mark.parametrize("kind", ["periodic", "final"])
def test_signal_during_validation_requeues_and_ends_at_the_last_step(slurm_cluster, identity64, tmp_path, kind):
    """SIGUSR1 while a validation runs: inside training (step 2 of 6) the job checkpoints that step and
    requeues; in the final validation (it used to kill the job) it requeues without a summary and the
    requeued job resumes at trainer.max_steps, validates and writes it. Either way the job ends at its
    last step with parameters and psnr_val equal to an uninterrupted run's."""
    n = 6
    common = [*_tiny(identity64, tmp_path, n), "trainer.checkpoint_every=2", "eval.lip_sync=false",
              *(["trainer.val_every=2"] if kind == "periodic" else [])]
    env = _job_env(slurm_cluster)
    ref = subprocess.run([sys.executable, "-m", "hm_talker.cli", "-q", "fit", *common, "run.name=full"],
                         cwd=REPO, env={**{k: v for k, v in env.items() if k != "SLURM_CONF"}, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    marker = tmp_path / "sig" / "validating"
    marker.parent.mkdir()
    wrapper = tmp_path / "python"  # the template's `$HM_TALKER_PYTHON -m hm_talker.cli fit ARGS`, with the wait
    wrapper.write_text(f"#!/bin/sh\nshift 3\nexec {sys.executable} {REPO / 'tests' / 'slow_validation_fit.py'} "
                       f"{marker} {kind} \"$@\"\n")
    wrapper.chmod(0o755)
    out = tmp_path / "train.out"
    job = slurm_cluster.sbatch(*FAKE, "--nodes=1", "--ntasks-per-node=1", f"--output={out}", "slurm/train.sbatch",
                               *common, "run.name=preempted", cwd=REPO,
                               env=_job_env(slurm_cluster, HM_TALKER_PYTHON=str(wrapper)))
    deadline = time.time() + 600
    while not marker.exists() and time.time() < deadline:
        assert slurm_cluster.job_states(job) in (["RUNNING"], ["PENDING"]), out.read_text()[-2000:]
        time.sleep(0.2)
    assert marker.read_text() == str(2 if kind == "periodic" else n)  # inside the chosen validation
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm_cluster.env(), check=True)
    (marker.parent / "signalled").write_text("")
    _requeued_and_done(slurm_cluster, job, out)
    log = out.read_text()
    said = ("preemption signal: checkpoint at step 2 written" if kind == "periodic"
            else "preemption signal during the final validation: requeueing")
    assert said in log, log[-3000:]
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "preempted" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == n
    for key, va in a["state_dict"].items():
        assert torch.allclose(va, b["state_dict"][key], atol=1e-6, rtol=0), key
    summary = json.loads((tmp_path / "preempted" / "summary.json").read_text())
    assert summary["global_step"] == n and summary["metrics"]["psnr_val"] == pytest.approx(
        json.loads((tmp_path / "full" / "summary.json").read_text())["metrics"]["psnr_val"], abs=1e-4)


def test_two_node_ddp_fit_through_the_multinode_template(slurm_cluster, identity64, tmp_path):
    """slurm/train_multinode.sbatch on 2 fake nodes x 1 task, densification on: DDP over both, identical
    parameters (Gaussians included) on the ranks, one run directory, one W&B run, one summary."""
    out = tmp_path / "ranks"
    out.mkdir()
    # the template runs `$HM_TALKER_PYTHON -m hm_talker.cli fit ARGS`: this stand-in runs the same fit
    # with a callback that dumps each rank's parameter sums (tests/ddp_fit.py)
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nshift 3\nexec {sys.executable} {REPO / 'tests' / 'ddp_fit.py'} {out} \"$@\"\n")
    wrapper.chmod(0o755)
    runs = tmp_path / "runs"
    # the fake nodes' names do not resolve: the master (first node) is this machine
    env = _job_env(slurm_cluster, HM_TALKER_PYTHON=str(wrapper), MASTER_ADDR="127.0.0.1")
    log = tmp_path / "mn.out"
    job = slurm_cluster.sbatch(*FAKE, "--nodes=2", "--ntasks-per-node=1", f"--output={log}",
                               "slurm/train_multinode.sbatch", *_tiny(identity64, runs), "run.name=mn",
                               "strategy.refine_start=2", "strategy.refine_every=3", "strategy.grad_threshold=1e-5",
                               "strategy.reset_every=0", cwd=REPO, env=env)
    assert slurm_cluster.wait(job, timeout=900) == ["COMPLETED"], log.read_text()[-3000:]
    text = log.read_text()
    assert text.count("CMMM stage 1 on") == 1, text[-3000:]  # rank zero trained it, once for the job
    assert len(list((runs / "cmmm-cache").iterdir())) == 1

    where = [json.loads((out / f"rank{r}.where.json").read_text()) for r in range(2)]
    assert {w["node"] for w in where} == {"n1", "n2"}  # one rank on each node
    assert all(w["world_size"] == 2 and w["num_nodes"] == 2 for w in where)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # bit-identical replicas (same all-reduced gradients, same updates)
    assert any(k.startswith("cmmm.") for k in ranks[0])  # CMMM among them: both ranks loaded one stage 1
    assert sorted(p.name for p in runs.iterdir()) == ["cmmm-cache", "mn"]  # one run directory per job (+ stage 1)
    assert len(list((runs / "mn" / "wandb").glob("offline-run-*"))) == 1  # one W&B run, from rank zero
    summary = json.loads((runs / "mn" / "summary.json").read_text())
    assert summary["global_step"] == 4 and summary["config"]["trainer.num_nodes"] == 2
    assert summary["num_gaussians"]["face"] > 300  # densified at step 3, identically on both nodes
