"""The learning-rate schedule's horizon, recorded in checkpoints and checked on resume.

With ``optim.decay_steps = 0`` both exponential decays run over ``trainer.max_steps``, so resuming
with a longer (or shorter) run stretches the schedule mid-run. The callback writes the horizon
into every checkpoint and warns when a resumed run decays over a different one.
"""
from __future__ import annotations

import logging

import lightning as L

from hm_talker.config.fit import FitConfig

log = logging.getLogger("hm_talker")
KEY = "lr_schedule"  # checkpoint entry: {"horizon", "decay_steps", "max_steps"}


def lr_horizon(cfg: FitConfig) -> int:
    """Steps over which the lrs decay (as HMMMModule._set_lrs): decay_steps, else max_steps."""
    return max(1, cfg.optim.decay_steps or cfg.trainer.max_steps)


class LrScheduleRecord(L.Callback):
    """Saves the lr horizon in the checkpoint; on resume, warns when the horizon changed."""

    def __init__(self, cfg: FitConfig) -> None:
        self.cfg = cfg
        self.resumed_from: dict | None = None  # the checkpoint's record, once loaded

    def _record(self) -> dict:
        return {"horizon": lr_horizon(self.cfg), "decay_steps": int(self.cfg.optim.decay_steps),
                "max_steps": int(self.cfg.trainer.max_steps)}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[KEY] = self._record()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        old = checkpoint.get(KEY)
        self.resumed_from = old
        new = self._record()
        if old is None:
            log.warning("the checkpoint does not record its lr schedule; this run decays over %d steps",
                        new["horizon"])
        elif int(old["horizon"]) != new["horizon"]:
            log.warning("lr schedule changes on resume: the checkpoint decayed over %d steps, this run over %d "
                        "(optim.decay_steps=0 follows trainer.max_steps); pass optim.decay_steps=%d to keep it",
                        int(old["horizon"]), new["horizon"], int(old["horizon"]))
