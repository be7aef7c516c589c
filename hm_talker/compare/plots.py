"""One bar plot per metric: a bar per row (mean), error bars = the spread over seeds, the best row coloured."""
from __future__ import annotations

import os
import re
from pathlib import Path

from hm_talker.compare.table import ComparisonTable, direction_arrow, metric_direction

def metric_file_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") or "metric"


def plot_metric(table: ComparisonTable, metric: str, path: str | os.PathLike) -> Path:
    """Bar plot of one metric: one bar per group (mean), error bar = std over seeds."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = table.groups
    means = [table.stats[g][metric].mean for g in groups]
    stds = [table.stats[g][metric].std or 0.0 for g in groups]
    heights = [m if m is not None else 0.0 for m in means]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(groups) + 2.0), 3.6), dpi=100)
    try:
        x = list(range(len(groups)))
        bars = ax.bar(x, heights, yerr=stds, capsize=4, color="#4C72B0", ecolor="black")
        for bar, m, g in zip(bars, means, groups):
            if m is None:
                bar.set_hatch("//")
                bar.set_alpha(0.2)
                continue
            label = f"{m:.4g}\n(n={table.stats[g][metric].n})"
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, 0), xytext=(0, 4),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8, color="white")
        best = table.best_group(metric)
        if best is not None:
            bars[groups.index(best)].set_color("#DD8452")
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=30 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center")
        title = metric + (f" ({direction_arrow(metric)} better)" if metric_direction(metric) is not None else "")
        ax.set_title(title)
        ax.set_ylabel("mean ± std over seeds")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
