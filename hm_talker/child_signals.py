"""ffmpeg children that the requeue signal does not kill.

SLURM delivers `--signal=USR1@SECONDS` (and `scancel --signal=USR1`) to every process of a job step,
children included, and ffmpeg's default action for SIGUSR1 is to exit: a validation video being encoded
when the signal came made the fit fail instead of requeueing. A child started with the signal blocked
keeps it blocked across exec (the signal mask is inherited), while this thread unblocks it right after the
start, so the fit's own handler (training/preemption.py) still receives it. Long-running children (the
video writer, the frame reader) start inside `requeue_signal_blocked`; short probes and sound decodes go
through `run_child`.
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


def run_child(cmd: list[str], *, text: bool = False) -> "subprocess.CompletedProcess":
    """`subprocess.run(cmd, capture_output=True, text=text)` with the child started under
    `requeue_signal_blocked`: the short probes and decodes a fit starts (ffprobe, a driving sound read by
    ffmpeg) finish when the requeue signal comes while they run."""
    import subprocess

    with requeue_signal_blocked():
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)
    with proc:
        try:
            out, err = proc.communicate()
        except BaseException:  # as subprocess.run: an interrupted read does not leave the child running
            proc.kill()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
