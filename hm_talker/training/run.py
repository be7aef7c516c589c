"""A fit's run: its name, its directory RUN_DIR = run.dir/run.name, its W&B run and its summary.json.

RUN_DIR holds checkpoints/last.ckpt, config.yaml (the effective config), the W&B files, the validation
videos (val/) and summary.json (what `hm-talker compare` reads), written atomically at the end.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hm_talker.errors import InputError

LAST = "last.ckpt"  # RUN_DIR/checkpoints/LAST: the one checkpoint of a run (training/checkpointing.py)


@dataclass
class Run:
    name: str  # run.name, else <identity>-<experiment>-seed<seed>-<config hash> (training/run_id.py)
    dir: Path  # RUN_DIR

    @classmethod
    def of(cls, cfg: DictConfig, config_path: str | None) -> "Run":
        from hm_talker.training.run_id import run_name
        from hm_talker.validate import check_name

        name = run_name(cfg, config_path)
        check_name("run.name", name)  # a name derived from the identity folder too
        return cls(name, Path(cfg.run.dir) / name)

    @property
    def last(self) -> Path:
        return self.dir / "checkpoints" / LAST

    def check_resume(self, resume: bool, max_steps: int | None = None) -> bool:
        """--resume as asked (or implied by a SLURM requeue), checked against what RUN_DIR holds: a checkpoint
        already past `max_steps`, or at it with the run's summary written, leaves nothing to do (an error,
        not a silent exit 0 that rewrites summary.json). At it without a summary (stopped during the final
        validation) the resumed run validates and writes it."""
        from hm_talker.training import slurm_env
        from hm_talker.safe_read import load_checkpoint

        resume = slurm_env.auto_resume(resume, self.last)  # a requeued SLURM job continues its checkpoint
        if resume and not self.last.is_file():
            raise InputError(self.last, "nothing to resume (no checkpoint)")
        ckpt = load_checkpoint(self.last) if resume else {}
        if resume and "state_dict" not in ckpt:  # truncated / unsafe: before training
            raise InputError(self.last, "not an hm-talker checkpoint (no state_dict)")
        step = int(ckpt.get("global_step", 0))
        if resume and max_steps is not None and max_steps >= 0:
            if step > max_steps:
                raise InputError(self.last, f"the checkpoint is at step {step}, past trainer.max_steps={max_steps}: "
                                            "nothing to train (raise trainer.max_steps to continue)")
            if step == max_steps and (self.dir / "summary.json").is_file():
                raise InputError(self.last, f"the run finished at step {step} (trainer.max_steps={max_steps}) and "
                                            "has its summary.json: raise trainer.max_steps to train further")
        if not resume and self.last.is_file():
            raise InputError(self.dir, "run exists: pass --resume to continue it, or set run.name")
        return resume

    def start(self, cfg: DictConfig, rank_zero: bool) -> None:
        """RUN_DIR exists; rank zero (one writer per job) keeps the effective config in config.yaml."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if rank_zero:
            OmegaConf.save(cfg, self.dir / "config.yaml")

    def logger(self, cfg: DictConfig, flat: dict):
        """The run's W&B logger (run id = run name, resumed after a restart)."""
        from hm_talker.tracking import lightning_logger, run_settings

        return lightning_logger(run_settings(self.name, cfg.run.project, self.dir, cfg.run.wandb_mode, cfg.run.group,
                                             cfg.run.tags, config=flat))

    def write_summary(self, summary: dict) -> None:
        """summary.json, atomically (compare never reads half a file)."""
        tmp = self.dir / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, self.dir / "summary.json")
