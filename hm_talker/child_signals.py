"""ffmpeg children that the requeue signal does not kill.

SLURM delivers `--signal=USR1@SECONDS` (and `scancel --signal=USR1`) to every process of a job step,
children included, and ffmpeg's default action for SIGUSR1 is to exit: a validation video being encoded
when the signal came made the fit fail instead of requeueing. A child started with the signal blocked
keeps it blocked across exec (the signal mask is inherited), while this thread unblocks it right after the
start, so the fit's own handler (training/preemption.py) still receives it.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager

REQUEUE_SIGNAL = signal.SIGUSR1  # what slurm/train.sbatch asks SLURM to send before the time limit


@contextmanager
def requeue_signal_blocked():
    """Start child processes within: they never see the requeue signal. Only this thread blocks it: a
    signal sent to the process meanwhile goes to another thread, or waits and is delivered when the block
    ends; either way the handler runs."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {REQUEUE_SIGNAL})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
