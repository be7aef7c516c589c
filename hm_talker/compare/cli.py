"""`hm-talker compare`: a comparison of run directories, of a sweep's configurations, or of W&B runs
(the files it writes: hm_talker/compare/write.py)."""
from __future__ import annotations

import argparse
import sys

from hm_talker.compare.write import compare_records, compare_runs
from hm_talker.errors import InputError


def main(argv: list[str] | None = None) -> int:
    """`hm-talker compare RUN_DIR... --out DIR` (or `--sweep NAME`, or `--wandb-project P`)."""
    parser = argparse.ArgumentParser(description="Compare HM-Talker runs grouped by ablation.")
    parser.add_argument("run_dirs", nargs="*", help="run directories, or folders holding them")
    parser.add_argument("--out", required=True, help="output folder for comparison.md and plots")
    parser.add_argument("--metrics", nargs="+", help="metrics to show (default: all)")
    parser.add_argument("--wandb-project", help="read runs from this W&B project instead (online)")
    parser.add_argument("--wandb-entity")
    parser.add_argument("--group", help="with --wandb-project: only this group")
    parser.add_argument("--sweep", help="one row per configuration of this `hm-talker sweep` (offline)")
    parser.add_argument("--runs", default="runs", help="with --sweep: the sweep's run.dir (default runs)")
    args = parser.parse_args(argv)
    from hm_talker.safe_output import output_dir

    if not (args.wandb_project or args.run_dirs or args.sweep):
        parser.error("give run directories, --sweep or --wandb-project")
    try:
        with output_dir(args.out, "compare"):  # OUT: new, empty or ours; nothing left on failure
            if args.sweep:
                from hm_talker.compare.sweep import compare_sweep
                compare_sweep(args.sweep, args.runs, args.out, args.metrics)
            elif args.wandb_project:
                from hm_talker.compare.wandb_runs import load_wandb_runs
                records = load_wandb_runs(args.wandb_project, args.group, args.wandb_entity)
                compare_records(records, args.out, args.metrics)
            else:
                compare_runs(args.run_dirs, args.out, args.metrics)
    except (InputError, RuntimeError) as exc:  # errors on stderr, as every other command
        print(f"hm-talker: error: {exc}", file=sys.stderr)
        return 2
    return 0
