"""`hm-talker sweep SPEC --launcher local|slurm|wandb [--dry-run] [--max-runs N] [key=value ...]`.

The plan is counted (more than --max-runs runs: refused at once, with the count), then checked run by
run (`hm_talker.launch.sweep.SweepPlan`). A dry run prints each run as soon as it is checked; a launch
checks every run before it writes the plan or submits anything. A refused plan is one line, exit 2.
"""
from __future__ import annotations

import os
import shlex
import sys

from hm_talker.launch import launchers
from hm_talker.launch.sweep import (DEFAULT_MAX_RUNS, PLACEHOLDER_ROOT, SweepPlan, run_dir_root, load_spec,
                                    run_state, write_plan)


def _print_dry_run(spec: dict, plan: SweepPlan) -> int:
    """One line per run, printed as it is checked: its overrides, then `# sfp: measured=...`."""
    header = [f"# sweep {spec['name']}: {plan.size} runs ({plan.shape})"]
    if plan.placeholder:
        header.append(f"# no data.root given: runs checked with data.root={PLACEHOLDER_ROOT} (a launch needs "
                      "data.root=IDENT)")
    stage1: dict[str, int] = {}  # stage-1 group -> runs using it
    try:
        for i, r in enumerate(plan):
            if i == 0:  # after the first run's check: a plan refused at its first run prints nothing
                print("\n".join(header), flush=True)
            stage1[r.stage1] = stage1.get(r.stage1, 0) + 1
            print(" ".join(shlex.quote(o) for o in r.overrides) + f"  # sfp: {r.sfp} | stage 1: {r.stage1}", flush=True)
        trained = [k for k in stage1 if k not in ("given", "none")]
        print(f"# stage 1: {len(trained)} training(s) for {sum(stage1.values())} runs ("
              + ", ".join(f"{k}: {n} run(s)" for k, n in stage1.items())
              + "); each is trained once by the first run that needs it and cached in run.dir/cmmm-cache",
              flush=True)
    except BrokenPipeError:  # `... --dry-run | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def run_sweep(args) -> int:
    spec = load_spec(args.spec)
    if args.config is not None and "=" in args.config:  # `sweep SPEC a=1`: no CONFIG
        args.overrides, args.config = [args.config, *args.overrides], None
    extra = list(args.overrides)
    plan = SweepPlan(spec, extra, args.count, args.config, source=args.spec, max_runs=args.max_runs,
                     placeholder_root=args.dry_run)
    if args.dry_run:
        return _print_dry_run(spec, plan)
    runs = list(plan)  # every run checked before anything is written or submitted (at most --max-runs)
    if args.launcher == "wandb":
        sweep = launchers.register_wandb(spec, extra, args.config)
        n = args.count or spec.get("run_cap") or len(runs)
        job = launchers.submit_array("wandb_agent.sbatch", n, spec["name"], [sweep], args.parallel, args.sbatch)
        print(f"W&B sweep {sweep}: SLURM job {job} ({n} agent tasks)")
        return 0
    path = write_plan(spec, runs, extra, args.config)
    if args.launcher == "local":
        failed = launchers.run_local(path, runs)
        root = run_dir_root(extra)
        done = sum(run_state(root / r.name) == "finished" for r in runs)
        print(f"sweep {spec['name']}: {done}/{len(runs)} runs finished under {root} (plan {path})")
        return 1 if failed else 0
    job = launchers.submit_array("sweep_array.sbatch", len(runs), spec["name"], [str(path)], args.parallel,
                                 args.sbatch)
    print(f"sweep {spec['name']}: SLURM array job {job} ({len(runs)} tasks, plan {path})")
    return 0


def add_parser(subparsers) -> None:
    """Register `hm-talker sweep`."""
    p = subparsers.add_parser("sweep", help="run a W&B-format sweep: here, as a SLURM array, or with W&B agents")
    p.add_argument("spec", help="sweep YAML (W&B sweep format; see sweeps/)")
    p.add_argument("config", nargs="?", default=None,
                   help="fit override file (default experiments/hm_talker.yaml, as for fit)")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="fit overrides for every run, e.g. data.root=IDENT run.dir=runs")
    p.add_argument("--launcher", choices=["local", "slurm", "wandb"], default="local")
    p.add_argument("--dry-run", action="store_true",
                   help="check every run and print it as it is checked, one run per line with its SFP measured "
                        "share; writes and submits nothing (data.root may be left out)")
    p.add_argument("--count", type=int, default=None, help="configurations to draw (random / bayes)")
    p.add_argument("--max-runs", type=int, default=DEFAULT_MAX_RUNS, metavar="N",
                   help=f"refuse a sweep of more than N runs (configurations x seeds, counted before expanding; "
                        f"default {DEFAULT_MAX_RUNS})")
    p.add_argument("--parallel", type=int, default=0, help="SLURM: at most this many array tasks at once")
    p.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="extra sbatch option, e.g. --sbatch=--partition=gpu (repeatable)")
    p.set_defaults(func=run_sweep)
