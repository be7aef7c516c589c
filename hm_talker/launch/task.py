"""One run of a sweep plan: `python -m hm_talker.launch.task PLAN INDEX` (a SLURM array task).

A finished run (summary.json) is skipped, a run with a checkpoint resumes from it, a new run
starts: a requeued or re-submitted task never redoes finished work.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from hm_talker.errors import InputError
from hm_talker.launch.sweep import run_dir_root, run_state


def run_task(plan_path: str | Path, index: int) -> str:
    """Run (or skip, or resume) entry `index` of the plan; returns the state it found."""
    plan_path = Path(plan_path)
    if not plan_path.is_file():
        raise InputError(plan_path, "sweep plan not found")
    plan = json.loads(plan_path.read_text())
    if not 0 <= index < len(plan["runs"]):
        raise InputError(plan_path, f"no run {index} (the plan has {len(plan['runs'])})")
    run = plan["runs"][index]
    run_dir = run_dir_root(run["overrides"]) / run["name"]
    state = run_state(run_dir)
    print(f"sweep {plan['name']} run {index} {run['name']}: {state}", flush=True)
    if state == "finished":
        return state
    from hm_talker.training.fit import fit

    fit(plan.get("config"), run["overrides"], resume=state == "partial")
    return state


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m hm_talker.launch.task PLAN INDEX", file=sys.stderr)
        return 2
    try:
        run_task(argv[0], int(argv[1]))
    except InputError as exc:
        print(f"hm-talker: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
