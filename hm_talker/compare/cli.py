"""`hm-talker compare`: a comparison of run directories, of a sweep's configurations, or of W&B runs
(the files it writes: hm_talker/compare/write.py)."""
from __future__ import annotations

import argparse
import sys

from hm_talker.compare.records import find_run_dirs, load_summary
from hm_talker.compare.write import compare_records
from hm_talker.errors import InputError


def main(argv: list[str] | None = None) -> int:
    """`hm-talker compare RUN_DIR... --out DIR` (or `--sweep NAME`, or `--wandb-project P`; `--baseline GROUP`:
    paired, hm_talker/compare/paired.py)."""
    parser = argparse.ArgumentParser(description="Compare HM-Talker runs grouped by ablation.")
    parser.add_argument("run_dirs", nargs="*", help="run directories, or folders holding them")
    parser.add_argument("--out", required=True, help="output folder for comparison.md and plots")
    parser.add_argument("--metrics", nargs="+", help="metrics to show (default: all)")
    parser.add_argument("--wandb-project", help="read runs from this W&B project instead (online)")
    parser.add_argument("--wandb-entity")
    parser.add_argument("--group", help="with --wandb-project: only this group")
    parser.add_argument("--sweep", help="one row per configuration of this `hm-talker sweep` (offline)")
    parser.add_argument("--runs", default="runs", help="with --sweep: the sweep's run.dir (default runs)")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the comparison (a table, a bar chart per metric with the seed spread) into "
                             "W&B, in the sweep's group (offline unless logged in)")
    parser.add_argument("--baseline", metavar="GROUP",
                        help="also pair every other group's runs with this group's run of the same seed on one "
                             "reference mouth (mouth_r difference with a paired 95 %% interval; needs run folders)")
    args = parser.parse_args(argv)
    from hm_talker.safe_output import output_dir

    if not (args.wandb_project or args.run_dirs or args.sweep):
        parser.error("give run directories, --sweep or --wandb-project")
    if args.baseline and args.wandb_project:
        parser.error("--baseline pairs the runs' mouths kept in their folders: give run directories or --sweep")
    try:
        with output_dir(args.out, "compare"):  # OUT: new, empty or ours; nothing left on failure
            if args.sweep:
                from hm_talker.compare.sweep import compare_sweep
                table, records = compare_sweep(args.sweep, args.runs, args.out, args.metrics)
                group = args.sweep
            elif args.wandb_project:
                from hm_talker.compare.wandb_runs import load_wandb_runs
                records = load_wandb_runs(args.wandb_project, args.group, args.wandb_entity)
                table, group = compare_records(records, args.out, args.metrics), args.group or "comparison"
            else:
                records = [load_summary(d) for d in find_run_dirs(args.run_dirs)]
                table = compare_records(records, args.out, args.metrics)
                groups = {r.group for r in records}
                group = groups.pop() if len(groups) == 1 else "comparison"
            pairs = None
            if args.baseline:
                from hm_talker.compare.paired import write_pairs
                pairs = write_pairs(records, args.baseline, args.out)
            if args.wandb:
                from hm_talker.compare.wandb_log import log_comparison
                where = log_comparison(table, records, group, args.out, pairs)
                print(f"W&B: comparison logged in group {group} ({where})")
    except (InputError, RuntimeError) as exc:  # errors on stderr, as every other command
        print(f"hm-talker: error: {exc}", file=sys.stderr)
        return 2
    return 0
