"""A comparison logged into W&B (`hm-talker compare ... --wandb`): one run of job type `compare` in the
runs' group (a sweep's name), holding a `wandb.Table` of the rows (mean and std over seeds per metric,
the seeds and run names) and, per metric, a bar chart of the means and the plot with the seed spread as
error bars. Offline unless logged in (as every run of the project); `wandb sync` uploads it later."""
from __future__ import annotations

import math
from pathlib import Path

from hm_talker.compare.records import RunRecord
from hm_talker.compare.table import ComparisonTable


def _common(records: list[RunRecord], key: str, default: str) -> str:
    values = {str(r.config.get(key)) for r in records if r.config.get(key)}
    return values.pop() if len(values) == 1 else default


PAIR_COLUMNS = ("row", "seed", "reference", "run", "baseline_run", "mouth_frames", "mouth_r_a", "mouth_r_b",
                "mouth_r_diff", "mouth_r_diff_lo", "mouth_r_diff_hi", "verdict",
                *(f"{m}{s}" for m in ("psnr_face", "lpips_face") for s in ("_diff", "_diff_lo", "_diff_hi")))


def log_comparison(table: ComparisonTable, records: list[RunRecord], group: str, out_dir,
                   pairs: list | None = None) -> str:
    """Log the comparison into the W&B group `group` (with `compare --baseline`'s pairs as `comparison/paired`:
    PAIR_COLUMNS of paired.json's rows); returns the run's directory."""
    import wandb

    from hm_talker.compare.plots import metric_file_name
    from hm_talker.tracking import run_settings, start_run

    project = _common(records, "run.project", "hm-talker")
    mode = _common(records, "run.wandb_mode", "auto")
    run = start_run(run_settings(f"{group}-comparison", project, out_dir, mode, group, ("comparison",),
                                 {"runs": [r.name for r in records], "metrics": table.metrics}, job_type="compare"))
    columns = ["row", "runs", "seeds"] + [f"{m} {s}" for m in table.metrics for s in ("mean", "std")]
    rows = []
    for g in table.groups:
        cells = [g, len(table.runs[g]), ", ".join(str(s) for s in table.seeds[g])]
        for m in table.metrics:
            st = table.stats[g][m]
            cells += [_value(st.mean), _value(st.std)]
        rows.append(cells)
    logged = {"comparison/table": wandb.Table(columns=columns, data=rows)}
    for m in table.metrics:
        bars = wandb.Table(columns=["row", "mean", "std"],
                           data=[[g, _value(table.stats[g][m].mean), _value(table.stats[g][m].std)] for g in table.groups])
        logged[f"comparison/{m}"] = wandb.plot.bar(bars, "row", "mean", title=f"{m} (mean over seeds)")
        png = Path(out_dir) / f"metric_{metric_file_name(m)}.png"
        if png.is_file():  # the same bars with the seed spread as error bars
            logged[f"comparison/{m}_spread"] = wandb.Image(str(png), caption=f"{m}: mean ± std over seeds")
    if pairs:
        logged["comparison/paired"] = wandb.Table(columns=list(PAIR_COLUMNS),
                                                  data=[[_value(p.get(c)) for c in PAIR_COLUMNS] for p in pairs])
    run.log(logged)
    best = {m: table.best_group(m) for m in table.metrics}
    run.summary.update({f"best/{m}": g for m, g in best.items() if g is not None})
    run_dir = run.dir
    run.finish()
    return run_dir


def _value(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
