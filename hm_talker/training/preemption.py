"""Preemption: on the requeue signal, checkpoint between two steps, requeue the SLURM job, stop.

sbatch `--signal=SIGUSR1@90` sends SIGUSR1 to every task 90 s before the time limit (a preempting
scheduler sends it too). The handler only sets a flag; after the next optimisation step the ranks
agree (one all-reduce of a boolean per step under DDP: any rank that got the signal stops all),
the checkpoint callback writes last.ckpt as at any step, and training stops. `fit` then calls
`requeue()`, which closes the W&B run (the requeued job resumes it: the run id is the run name) and,
on rank zero inside SLURM, runs `scontrol requeue JOB`; the requeued job finds the checkpoint and
resumes (`slurm_env.auto_resume`).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading

import lightning as L

log = logging.getLogger("hm_talker")


class Preemption(L.Callback):
    def __init__(self, signum: int = signal.SIGUSR1) -> None:
        self.signum, self.received, self.requested = signum, False, False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.received = True

    def on_fit_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._handler)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = trainer.strategy.reduce_boolean_decision(self.received, all=False)
        if not stop or self.requested:
            return
        self.requested = True
        for cb in trainer.callbacks:  # the atomic last.ckpt writer of fit.py
            if getattr(cb, "saved_step", None) is not None and hasattr(cb, "save"):
                if cb.saved_step != trainer.global_step:
                    cb.save(trainer)
        log.warning("preemption signal: checkpoint at step %d written, stopping", trainer.global_step)
        trainer.should_stop = True

    def requeue(self, trainer, logger=None) -> bool:
        """Close the W&B run and requeue this SLURM job (rank zero); False outside SLURM."""
        if logger is not None and trainer.is_global_zero and hasattr(logger.experiment, "finish"):
            logger.experiment.finish()
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
        if not job:
            return False
        if trainer.is_global_zero:
            r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if r.returncode != 0:
                log.warning("scontrol requeue %s failed: %s", job, r.stderr.strip())
                return False
            log.warning("requeued SLURM job %s", job)
        return True
