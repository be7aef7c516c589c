"""`hm-talker compare --sweep NAME [--runs RUN_DIR_ROOT] --out DIR`: one row per sweep configuration.

Reads the sweep's plan (RUN_DIR_ROOT/sweeps/NAME.json, written by `hm-talker sweep`) and the
summary.json of its finished runs, groups them by configuration (the searched values without the
seed) and hands them to the comparison (mean and spread over seeds, table, one plot per metric,
best configuration marked). A configuration with fewer finished seeds than the plan asked for is
flagged in its row name ("[2/3 seeds]"), never averaged silently as if it were complete.
"""
from __future__ import annotations

import json
from pathlib import Path

from hm_talker.errors import InputError


def config_label(params: dict) -> str:
    """`k=v k=v` of a run's searched values without the seed (the row name of its configuration)."""
    return " ".join(f"{k}={v}" for k, v in params.items() if k != "seed") or "base"


def sweep_records(name: str, run_root: str | Path) -> tuple[list, dict, dict | None]:
    """(records regrouped by configuration, {label: (finished, planned)}, the sweep's metric)."""
    from hm_talker.compare.records import load_summary

    run_root = Path(run_root)
    plan_path = run_root / "sweeps" / f"{name}.json"
    if not plan_path.is_file():
        raise InputError(plan_path, f"no plan of sweep {name} (run `hm-talker sweep ... run.dir={run_root}` first)")
    plan = json.loads(plan_path.read_text())
    planned: dict[str, list] = {}
    for run in plan["runs"]:
        planned.setdefault(config_label(run["params"]), []).append(run["name"])
    counts = {label: (sum((run_root / n / "summary.json").is_file() for n in names), len(names))
              for label, names in planned.items()}
    records = []
    for label, names in planned.items():
        done, asked = counts[label]
        row = label if done == asked else f"{label} [{done}/{asked} seeds]"
        for n in names:
            if (run_root / n / "summary.json").is_file():
                rec = load_summary(run_root / n)
                rec.group = row
                records.append(rec)
    if not records:
        raise InputError(plan_path, f"sweep {name} has no finished run yet")
    return records, counts, plan.get("metric")


def best_configuration(table, metric: dict | None) -> str | None:
    """Row with the best mean of the sweep's metric ({name, goal: maximize|minimize}), else None."""
    if not metric or metric.get("name") not in table.metrics:
        return None
    sign = -1.0 if metric.get("goal") == "minimize" else 1.0
    rows = [(sign * table.stats[g][metric["name"]].mean, g) for g in table.groups
            if table.stats[g][metric["name"]].mean is not None]
    return max(rows)[1] if rows else None


def compare_sweep(name: str, run_root: str | Path, out: str | Path, metrics=None):
    """Write the comparison of the sweep's configurations into `out`; returns the table and the records."""
    from hm_talker.compare.write import compare_records

    records, counts, metric = sweep_records(name, run_root)
    for label, (done, asked) in counts.items():
        if done < asked:
            print(f"incomplete: {label}: {done} of {asked} seeds finished")
    table = compare_records(records, out, metrics)
    best = best_configuration(table, metric)
    if best is not None:
        line = f"best configuration by {metric['name']} ({metric.get('goal', 'maximize')}): {best}"
        print(line)
        with open(Path(out) / "comparison.md", "a") as f:
            f.write(f"\n{line}\n")
    return table, records
