"""Preemption: on the requeue signal, checkpoint between two steps, requeue the SLURM job, stop.

The handler is installed for the whole fit (`install()` before stage 1, `uninstall()` when the fit ends),
so the signal never kills the job, whenever it comes:
  * during stage 1 (CMMM): the stage-1 trainer stops at its next step and writes nothing (no cache
    entry); ranks waiting for it stop waiting; the job requeues and stage 1 runs again;
  * during a validation inside training: at its end the checkpoint of the current step is written and
    training stops (as between two steps);
  * during the final validation: the last checkpoint is already written; no summary.json is written and
    the job requeues; the requeued job resumes at trainer.max_steps, validates and writes the summary;
  * while a checkpoint is written: the write completes (a temporary file, then a rename) and the
    signal is handled at the next of the points above.

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

from hm_talker.child_signals import REQUEUE_SIGNAL

log = logging.getLogger("hm_talker")


class Preempted(Exception):
    """The requeue signal came before the Trainer existed (stage 1, or waiting for it)."""


class StopWhen(L.Callback):
    """Stop a Trainer at its next step once `flag()` is true (stage 1 under the fit's requeue signal)."""

    def __init__(self, flag=None) -> None:
        self.flag = flag

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.flag is not None and self.flag():
            trainer.should_stop = True


class Preemption(L.Callback):
    def __init__(self, signum: int = REQUEUE_SIGNAL) -> None:
        self.signum, self.received, self.requested = signum, False, False
        self._previous, self._installed = None, False

    def _handler(self, signum, frame) -> None:
        self.received = True

    def install(self) -> "Preemption":
        """Catch the signal from now on (a fit installs it before stage 1 and keeps it to its end)."""
        if not self._installed and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._handler)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(self.signum, self._previous if self._previous is not None else signal.SIG_DFL)
            self._previous, self._installed = None, False

    def on_fit_start(self, trainer, pl_module) -> None:
        self.install()  # (a Trainer used on its own; a fit has installed it already)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_signalled(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":  # a validation inside training: checkpoint this step and stop
            self._stop_if_signalled(trainer)

    def after_final_validation(self, trainer) -> bool:
        """True when the signal came (on any rank) by the end of the final validation: requeue, no summary."""
        return bool(trainer.strategy.reduce_boolean_decision(self.received, all=False))

    def _stop_if_signalled(self, trainer) -> None:
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

    def requeue(self, trainer=None, logger=None, rank_zero: bool | None = None) -> bool:
        """Close the W&B run and requeue this SLURM job (rank zero); False outside SLURM. Without a
        trainer (preempted in stage 1) `rank_zero` says who requeues."""
        zero = trainer.is_global_zero if trainer is not None else bool(rank_zero)
        if logger is not None and zero and hasattr(logger.experiment, "finish"):
            logger.experiment.finish()
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
        if not job:
            return False
        if zero:
            r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if r.returncode != 0:
                log.warning("scontrol requeue %s failed: %s", job, r.stderr.strip())
                return False
            log.warning("requeued SLURM job %s", job)
        return True
