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
    width = max(4.0, 0.9 * len(groups) + 2.0)
    # labels wider than their bar's share of the axis (about 11 characters per inch at this size) are slanted
    slant = max(len(g) for g in groups) > 0.8 * 11 * width / len(groups)
    fig, ax = plt.subplots(figsize=(width, 3.6 + (1.0 if slant else 0.0)), dpi=100)
    try:
        x = list(range(len(groups)))
        bars = ax.bar(x, heights, yerr=stds, capsize=4, color="#4C72B0", ecolor="black")
        for bar, m, sd, g in zip(bars, means, stds, groups):
            if m is None:
                bar.set_hatch("//")
                bar.set_alpha(0.2)
                continue
            label = f"{m:.4g}\n(n={table.stats[g][metric].n})"
            below = m < 0  # beyond the error bar's end: above a positive mean, below a negative one
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, m - sd if below else m + sd),
                        xytext=(0, -4 if below else 4), textcoords="offset points", ha="center",
                        va="top" if below else "bottom", fontsize=8)
        ax.margins(y=0.2)  # room for the labels
        best = table.best_group(metric)
        if best is not None:
            bars[groups.index(best)].set_color("#DD8452")
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=30 if slant else 0, ha="right" if slant else "center")
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
