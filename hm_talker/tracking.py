"""The one W&B set-up: which mode a run logs in, and the settings every run starts with (fit's and
fit-cmmm's Lightning logger, evaluate's and compare's own runs). Offline unless the user is logged in
(or WANDB_MODE says otherwise); `wandb sync RUN_DIR/wandb/offline-run-*` uploads an offline run later."""
from __future__ import annotations

import os

from hm_talker.errors import InputError


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it); no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    return base in hosts


def wandb_mode(configured: str) -> str:
    """WANDB_MODE in the environment wins; "auto" is online when logged in, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if configured == "auto":
        return "online" if wandb_logged_in() else "offline"
    if configured not in ("online", "offline", "disabled"):
        raise InputError(None, f"run.wandb_mode must be auto, online, offline or disabled, not {configured!r}")
    return configured


def run_settings(name: str, project: str, save_dir, configured_mode: str = "auto", group: str = "",
                 tags=(), config: dict | None = None, job_type: str | None = None) -> dict:
    """wandb.init keyword arguments of one run (quiet: W&B's banner is not our output)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    return {"name": name, "project": project, "group": group or None, "tags": list(tags) or None,
            "dir": str(save_dir), "mode": wandb_mode(configured_mode), "config": config, "job_type": job_type}


def lightning_logger(settings: dict):
    """A Lightning WandbLogger of these settings whose run id is its name, resumed when it exists (a
    resumed or requeued fit logs into the same run)."""
    from lightning.pytorch.loggers import WandbLogger

    kw = {k: v for k, v in settings.items() if k != "dir" and v is not None}
    logger = WandbLogger(id=settings["name"], save_dir=settings["dir"], resume="allow", **kw)
    logger._wandb_init.pop("anonymous", None)  # else wandb warns that the (unused) setting is deprecated
    return logger


def start_run(settings: dict):
    """A W&B run of these settings of its own (evaluate, compare), finishing any run still open."""
    import wandb

    return wandb.init(**settings, reinit="finish_previous")
