"""Where a sweep's runs go: one after another here (local), one SLURM array job (slurm), or W&B's
sweep server with an array of `wandb agent` tasks (wandb)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hm_talker.errors import InputError
from hm_talker.launch.sweep import SweepRunSpec

SLURM_DIR = Path(__file__).resolve().parents[2] / "slurm"  # the templates of the source checkout


def _clean_env() -> dict:
    # a fresh W&B service per run, as for a user who starts each run by hand
    return {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}


def run_local(plan: Path, runs: list[SweepRunSpec]) -> int:
    """Each run in its own process, one after another; returns how many failed."""
    failed = 0
    for i in range(len(runs)):
        r = subprocess.run([sys.executable, "-m", "hm_talker.launch.task", str(plan), str(i)], env=_clean_env())
        failed += r.returncode != 0
    return failed


def _template(name: str) -> Path:
    path = SLURM_DIR / name
    if not path.is_file():
        raise InputError(path, "SLURM template not found (run from a source checkout)")
    return path


def submit_array(template: str, n: int, job_name: str, args: list[str], parallel: int = 0,
                 sbatch_args: list[str] | None = None) -> str:
    """`sbatch --array=0-(n-1)[%parallel] TEMPLATE ARGS`; returns the job id."""
    if not shutil.which("sbatch"):
        raise InputError(None, "sbatch not found: the slurm launcher needs a SLURM login node")
    array = f"0-{n - 1}" + (f"%{parallel}" if parallel > 0 else "")
    cmd = ["sbatch", "--parsable", f"--array={array}", f"--job-name={job_name}", *(sbatch_args or []),
           str(_template(template)), *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise InputError(None, f"sbatch failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return r.stdout.strip().split(";")[0]


def register_wandb(spec: dict, extra: list[str], config: str | None) -> str:
    """Create the sweep on the W&B server; returns ENTITY/PROJECT/SWEEP_ID. Needs to be online."""
    from hm_talker.tracking import wandb_logged_in

    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_logged_in():
        raise InputError(None, "the wandb launcher needs the W&B server (wandb login, WANDB_MODE unset); "
                               "offline, use --launcher slurm (W&B's search runs offline there)")
    import wandb

    project = next((o.split("=", 1)[1] for o in extra if o.startswith("run.project=")), "hm-talker")
    cfg = {k: v for k, v in spec.items() if k in ("name", "method", "metric", "parameters", "run_cap",
                                                   "early_terminate", "description")}
    # the agent runs `fit` with each run's values as key=value; the W&B run id names the run dir
    cfg["command"] = ["${env}", "python", "-m", "hm_talker.cli", "fit", *([config] if config else []), *extra,
                      f"run.group={spec['name']}", "run.name=${oc.env:WANDB_RUN_ID}", "${args_no_hyphens}"]
    try:
        sweep_id = wandb.sweep(cfg, project=project)
    except Exception as exc:  # noqa: BLE001 (network / auth: one line)
        raise InputError(None, f"W&B sweep registration failed: {str(exc).splitlines()[0]}") from None
    entity = wandb.Api().default_entity
    return f"{entity}/{project}/{sweep_id}"
