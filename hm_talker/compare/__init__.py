"""Comparing runs: group by ablation and evaluation protocol, mean and spread over seeds, a table and
plots. Reading runs (records.py: summary.json; wandb_runs.py: the W&B server), the table and its
statistics (table.py), the plots (plots.py), the files written (write.py), a sweep's configurations
(sweep.py) and the command (cli.py)."""
from hm_talker.compare.cli import main
from hm_talker.compare.records import RunRecord, find_run_dirs, load_summary
from hm_talker.compare.table import ComparisonTable, aggregate
from hm_talker.compare.wandb_runs import load_wandb_runs
from hm_talker.compare.write import compare_records, compare_runs

__all__ = ["ComparisonTable", "RunRecord", "aggregate", "compare_records", "compare_runs", "find_run_dirs",
           "load_summary", "load_wandb_runs", "main"]
