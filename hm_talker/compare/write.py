"""A comparison on disk: ``comparison.md`` (the table), ``comparison.json`` (the same numbers) and one bar
plot with error bars per metric (``metric_<name>.png``) in the output folder; the table is printed too."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from hm_talker.compare.plots import metric_file_name, plot_metric
from hm_talker.compare.records import RunRecord, find_run_dirs, load_summary
from hm_talker.compare.table import ComparisonTable, aggregate


def compare_records(records: Sequence[RunRecord], out_dir: str | os.PathLike,
                    metrics: Sequence[str] | None = None, print_table: bool = True) -> ComparisonTable:
    """Aggregate records and write ``comparison.md``, ``comparison.json`` and the PNGs."""
    table = aggregate(records, metrics)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(table.to_markdown())
    (out / "comparison.json").write_text(json.dumps(table.to_dict(), indent=2) + "\n")
    for m in table.metrics:
        plot_metric(table, m, out / f"metric_{metric_file_name(m)}.png")
    if print_table:
        print(table.to_markdown())
    return table


def compare_runs(run_dirs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 metrics: Sequence[str] | None = None, print_table: bool = True) -> ComparisonTable:
    """Compare run directories (see the module docstring); returns the table."""
    records = [load_summary(d) for d in find_run_dirs(run_dirs)]
    return compare_records(records, out_dir, metrics, print_table)
