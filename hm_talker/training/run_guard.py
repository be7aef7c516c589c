"""The run directory of `fit`: never a user's folder, and no half-made run left after a failure.

RUN_DIR must be new, empty, or hold only entries that `fit` writes (or our output marker). When a
run fails before its first checkpoint, the entries it added are removed (RUN_DIR too, when this run
created it); once checkpoints/last.ckpt exists the run is kept, since `--resume` can continue it.
The job's first process holds RUN_DIR's lock (hm_talker.output_lock) for the whole run: a second
`fit` of the same run.dir/run.name (e.g. a resubmitted SLURM job beside a running one) fails at once.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from hm_talker.errors import InputError
from hm_talker.output_lock import OutputLock
from hm_talker.safe_output import MARKER, check_writable_dir, remove_new_entries, write_marker

RUN_ENTRIES = {"checkpoints", "cmmm", "config.yaml", "summary.json", ".summary.json.tmp", "wandb", "val", MARKER}
RANK_VARS = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")  # set for the processes of a multi-process job


def _secondary_rank() -> bool:
    """A process other than the job's first (DDP children, other nodes): rank zero guards RUN_DIR."""
    return any(int(os.environ.get(v, "0") or 0) != 0 for v in RANK_VARS)


def _is_run_dir(entries: set[str]) -> bool:
    return entries <= RUN_ENTRIES


@contextmanager
def run_dir_guard(run_dir: Path, last: Path):
    """Check RUN_DIR before training (see the module docstring); clean up on failure."""
    run_dir = Path(run_dir)
    if _secondary_rank():  # the other ranks see rank zero's files; one guard per job
        yield run_dir
        return
    what = "run directory (run.dir/run.name)"
    created = check_writable_dir(run_dir, _is_run_dir, what=what)
    lock = OutputLock(run_dir, "fit", what).acquire()  # rank zero only: one lock per job
    try:
        before = set(os.listdir(run_dir))
        try:
            yield run_dir
        except BaseException as exc:
            if not Path(last).is_file():
                remove_new_entries(run_dir, before, created)
            elif run_dir.is_dir() and set(os.listdir(run_dir)) != before:
                write_marker(run_dir, "fit", os.listdir(run_dir))
            if isinstance(exc, OSError):  # a full or read-only disk: one line naming the run
                raise InputError(run_dir, f"writing failed ({exc.strerror or exc})") from None
            raise
        if run_dir.is_dir():
            write_marker(run_dir, "fit", os.listdir(run_dir))
    finally:
        lock.release()
