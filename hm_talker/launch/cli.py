"""`hm-talker sweep SPEC --launcher local|slurm|wandb [--dry-run] [key=value ...]`."""
from __future__ import annotations

import shlex

from hm_talker.launch import launchers
from hm_talker.launch.sweep import expand, load_spec, run_state, write_plan, _run_dir_root


def run_sweep(args) -> int:
    spec = load_spec(args.spec)
    if args.config is not None and "=" in args.config:  # `sweep SPEC a=1`: no CONFIG
        args.overrides, args.config = [args.config, *args.overrides], None
    extra = list(args.overrides)
    if args.launcher == "wandb":
        if args.dry_run:
            for r in expand(spec, extra, args.count):
                print(" ".join(shlex.quote(o) for o in r.overrides))
            return 0
        sweep = launchers.register_wandb(spec, extra, args.config)
        n = args.count or spec.get("run_cap") or len(expand(spec, extra, args.count))
        job = launchers.submit_array("wandb_agent.sbatch", n, spec["name"], [sweep], args.parallel, args.sbatch)
        print(f"W&B sweep {sweep}: SLURM job {job} ({n} agent tasks)")
        return 0
    runs = expand(spec, extra, args.count)
    if args.dry_run:
        for r in runs:
            print(" ".join(shlex.quote(o) for o in r.overrides))
        return 0
    plan = write_plan(spec, runs, extra, args.config)
    if args.launcher == "local":
        failed = launchers.run_local(plan, runs)
        root = _run_dir_root(extra)
        done = sum(run_state(root / r.name) == "finished" for r in runs)
        print(f"sweep {spec['name']}: {done}/{len(runs)} runs finished under {root} (plan {plan})")
        return 1 if failed else 0
    job = launchers.submit_array("sweep_array.sbatch", len(runs), spec["name"], [str(plan)], args.parallel,
                                 args.sbatch)
    print(f"sweep {spec['name']}: SLURM array job {job} ({len(runs)} tasks, plan {plan})")
    return 0


def add_parser(subparsers) -> None:
    """Register `hm-talker sweep`."""
    p = subparsers.add_parser("sweep", help="run a W&B-format sweep: here, as a SLURM array, or with W&B agents")
    p.add_argument("spec", help="sweep YAML (W&B sweep format; see sweeps/)")
    p.add_argument("config", nargs="?", default=None, help="fit override file (default experiments/default.yaml)")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="fit overrides for every run, e.g. data.root=IDENT run.dir=runs")
    p.add_argument("--launcher", choices=["local", "slurm", "wandb"], default="local")
    p.add_argument("--dry-run", action="store_true", help="print each run's overrides, one run per line")
    p.add_argument("--count", type=int, default=None, help="configurations to draw (random / bayes)")
    p.add_argument("--parallel", type=int, default=0, help="SLURM: at most this many array tasks at once")
    p.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="extra sbatch option, e.g. --sbatch=--partition=gpu (repeatable)")
    p.set_defaults(func=run_sweep)
