"""Compare runs: group by ablation and evaluation protocol, mean and spread over seeds, a table and plots.

Every fit / evaluation run directory holds ``summary.json``::

    {"name": str, "group": str (the ablation), "protocol": str (evaluations: self, cross-video,
     cross-audio), "seed": int, "tags": [str], "config": {flat key: value},
     "metrics": {name: float or null}}

:func:`compare_runs` reads those files, groups the runs by ``group`` *and* ``protocol`` (a row
per pair, labelled ``group [protocol]``: self- and cross-driven results of one ablation are
different experiments, never averaged as if they were seeds; fit runs have no protocol) and,
per metric, reports
the mean and the sample standard deviation (``ddof=1``, the spread over seeds; None with one
run) over the runs of the group whose value is a finite number (nulls are left out and the
count ``n`` says how many were used). It writes ``comparison.md`` (the table),
``comparison.json`` (the same numbers) and one bar plot with error bars per metric
(``metric_<name>.png``) into the output folder, prints the table, and returns it.

:func:`load_wandb_runs` makes the same records from runs on the W&B server (online only), and
:func:`compare_records` takes records from either source.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import InputError

SUMMARY_FILE = "summary.json"
UNGROUPED = "ungrouped"
# +1 higher is better, -1 lower is better, 0 closest to METRIC_TARGETS (default 0) is better
METRIC_DIRECTIONS = {
    "psnr": 1, "ssim": 1, "psnr_face": 1, "ssim_face": 1, "sync_c": 1, "mouth_r": 1, "mouth_r_best": 1,
    "lpips": -1, "lpips_face": -1, "lmd": -1, "aue": -1, "aue_lower": -1, "aue_upper": -1,
    "sync_d": -1, "av_offset": 0, "mouth_lag": 0, "mouth_amp": 0, "mouth_jitter": 0, "fid": -1,
}
METRIC_TARGETS = {"mouth_amp": 1.0, "mouth_jitter": 1.0}  # ratios to the real mouth: 1 is best
# headline first: the face region (full-frame numbers are inflated by compositing), then lip sync
_KNOWN_ORDER = ["psnr_face", "ssim_face", "lpips_face", "mouth_r", "mouth_r_best", "mouth_lag", "mouth_amp",
                "mouth_jitter", "lmd", "aue", "aue_lower", "aue_upper", "sync_c", "sync_d", "av_offset",
                "psnr", "ssim", "lpips", "mouth_open_mean", "mouth_open_std", "mouth_open_jitter"]
_NOT_METRICS = {"num_frames", "mouth_frames_skipped", "reference_frames"}
_ARROW = {1: "↑", -1: "↓"}


def _arrow(metric: str) -> str:
    direction = METRIC_DIRECTIONS.get(metric)
    if direction is None:
        return ""
    return _ARROW.get(direction) or f"→{METRIC_TARGETS.get(metric, 0):g}"


def row_label(group: str, protocol: str) -> str:
    """The table row of a run: its group, with the evaluation protocol when it has one."""
    return f"{group} [{protocol}]" if protocol else group


@dataclass
class RunRecord:
    """One run, as read from ``summary.json`` or W&B."""

    name: str
    group: str
    seed: Any = None
    protocol: str = ""  # evaluation protocol (self, cross-video, cross-audio, pair); "" for fit runs
    tags: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    source: str = ""


@dataclass
class MetricStats:
    mean: float | None
    std: float | None  # sample std over runs (ddof=1); None when n < 2
    n: int  # runs with a finite value


@dataclass
class ComparisonTable:
    """Per row (group, or ``group [protocol]``) and metric: :class:`MetricStats`. ``groups`` are the
    row labels in the runs' first-seen order; ``protocols`` maps each row to its protocol."""

    groups: list[str]
    metrics: list[str]
    stats: dict[str, dict[str, MetricStats]]  # row -> metric -> stats
    seeds: dict[str, list]  # row -> seeds of its runs
    runs: dict[str, list[str]]  # row -> run names
    protocols: dict[str, str] = field(default_factory=dict)  # row -> protocol ("" for fit runs)

    def best_group(self, metric: str, protocol: str | None = None) -> str | None:
        """Row with the best mean for a metric of known direction among the rows of one protocol
        (default: the protocol of the rows, when they all share one), else None."""
        direction = METRIC_DIRECTIONS.get(metric)
        rows = self.groups
        if protocol is None and len({self.protocols.get(g, "") for g in rows}) > 1:
            return None
        if protocol is not None:
            rows = [g for g in rows if self.protocols.get(g, "") == protocol]
        cands = [(g, self.stats[g][metric].mean) for g in rows if self.stats[g][metric].mean is not None]
        if direction is None or len(cands) < 2:
            return None
        target = METRIC_TARGETS.get(metric, 0.0)
        key = (lambda gv: abs(gv[1] - target)) if direction == 0 else (lambda gv: -direction * gv[1])
        return min(cands, key=key)[0]

    def to_markdown(self, digits: int = 4) -> str:
        """Rows = groups (x protocols), columns = metrics, cells ``mean ± std`` (best mean of each
        protocol in bold)."""
        with_protocol = any(self.protocols.get(g) for g in self.groups)
        header = (["group", "protocol"] if with_protocol else ["group"]) + ["runs", "seeds"] + [
            f"{m} {_arrow(m)}".rstrip() for m in self.metrics]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        protocols = list(dict.fromkeys(self.protocols.get(g, "") for g in self.groups))
        best = {(m, p): self.best_group(m, p) for m in self.metrics for p in protocols}
        for g in self.groups:
            p = self.protocols.get(g, "")
            name = g[:-len(f" [{p}]")] if p and g.endswith(f" [{p}]") else g
            cells = [_md_escape(name)] + ([p or "–"] if with_protocol else []) + [
                str(len(self.runs[g])), ", ".join(str(s) for s in self.seeds[g])]
            for m in self.metrics:
                st = self.stats[g][m]
                if st.mean is None:
                    cells.append("–")
                    continue
                text = _fmt(st.mean, digits)
                if best[(m, p)] == g:
                    text = f"**{text}**"
                text += f" ± {_fmt(st.std, digits)}" if st.std is not None else ""
                if st.n != len(self.runs[g]):
                    text += f" (n={st.n})"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("mean ± sample std (ddof=1) over the runs (seeds) of each group and protocol; "
                     "(n=k): only k runs had a value; bold: best group of each protocol; ↑/↓ higher/lower "
                     "is better, →x closest to x. Face-region columns first: full-frame PSNR/SSIM/LPIPS are "
                     "inflated (the frame outside the face is the real one).")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {
            "groups": self.groups, "metrics": self.metrics, "seeds": self.seeds, "runs": self.runs,
        "protocols": self.protocols,
            "stats": {g: {m: vars(s) for m, s in ms.items()} for g, ms in self.stats.items()},
        }

    def __str__(self) -> str:
        return self.to_markdown()


def _fmt(x: float, digits: int) -> str:
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}f}"
    return f"{x:.{digits - 1}e}"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _finite(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- loading
def protocol_from_tags(tags: Iterable[str]) -> str:
    """The evaluation protocol an ``eval-<protocol>`` tag names ("" when none)."""
    for t in tags:
        if isinstance(t, str) and t.startswith("eval-"):
            return t[len("eval-"):]
    return ""


def load_summary(run_dir: str | os.PathLike) -> RunRecord:
    """Read ``<run_dir>/summary.json`` into a :class:`RunRecord`."""
    path = Path(run_dir)
    path = path if path.name == SUMMARY_FILE else path / SUMMARY_FILE
    from .safe_read import read_json

    if not path.is_file():
        raise InputError(path, "no summary.json: not a run directory")
    data = read_json(path, "summary.json")  # binary / malformed -> one line naming the file
    if not isinstance(data, dict) or not isinstance(data.get("metrics", {}), dict):
        raise InputError(path, "expected an object with a 'metrics' object")
    if not isinstance(data.get("tags") or [], list) or not isinstance(data.get("config") or {}, dict):
        raise InputError(path, "'tags' must be a list and 'config' an object")
    tags = list(data.get("tags") or [])
    return RunRecord(
        name=str(data.get("name") or path.parent.name),
        group=str(data.get("group") or UNGROUPED),
        protocol=str(data.get("protocol") or protocol_from_tags(tags)),
        seed=data.get("seed"),
        tags=list(data.get("tags") or []),
        config=dict(data.get("config") or {}),
        metrics=dict(data.get("metrics") or {}),
        source=str(path.parent),
    )


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run directories in ``paths``: each a run dir, a ``summary.json``, or a folder searched
    recursively for them (sorted, so the order is reproducible)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == SUMMARY_FILE:
            found.append(p.parent)
        elif (p / SUMMARY_FILE).is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(s.parent for s in p.rglob(SUMMARY_FILE)))
        else:
            raise InputError(p, "no such run directory")
    unique = list(dict.fromkeys(d.resolve() for d in found))
    return unique


# --------------------------------------------------------------------------- aggregation
def aggregate(records: Sequence[RunRecord], metrics: Sequence[str] | None = None) -> ComparisonTable:
    """Group records by ``group`` and ``protocol``; mean and sample std of every metric over each
    row's runs."""
    if not records:
        raise InputError(None, "no runs to compare")
    label = {id(r): row_label(r.group, r.protocol) for r in records}
    groups: list[str] = list(dict.fromkeys(label[id(r)] for r in records))
    if metrics is None:
        names = {k for r in records for k in r.metrics if k not in _NOT_METRICS}
        metrics = [m for m in _KNOWN_ORDER if m in names] + sorted(names - set(_KNOWN_ORDER))
    stats: dict[str, dict[str, MetricStats]] = {}
    for g in groups:
        members = [r for r in records if label[id(r)] == g]
        stats[g] = {}
        for m in metrics:
            vals = [v for v in (_finite(r.metrics.get(m)) for r in members) if v is not None]
            n = len(vals)
            mean = sum(vals) / n if n else None
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n >= 2 else None
            stats[g][m] = MetricStats(mean, std, n)
    return ComparisonTable(
        groups=groups, metrics=list(metrics), stats=stats,
        seeds={g: [r.seed for r in records if label[id(r)] == g] for g in groups},
        runs={g: [r.name for r in records if label[id(r)] == g] for g in groups},
        protocols={g: next(r.protocol for r in records if label[id(r)] == g) for g in groups},
    )


def _safe_name(metric: str) -> str:
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
        title = metric + (f" ({_arrow(metric)} better)" if metric in METRIC_DIRECTIONS else "")
        ax.set_title(title)
        ax.set_ylabel("mean ± std over seeds")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def compare_records(records: Sequence[RunRecord], out_dir: str | os.PathLike,
                    metrics: Sequence[str] | None = None, print_table: bool = True) -> ComparisonTable:
    """Aggregate records and write ``comparison.md``, ``comparison.json`` and the PNGs."""
    table = aggregate(records, metrics)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(table.to_markdown())
    (out / "comparison.json").write_text(json.dumps(table.to_dict(), indent=2) + "\n")
    for m in table.metrics:
        plot_metric(table, m, out / f"metric_{_safe_name(m)}.png")
    if print_table:
        print(table.to_markdown())
    return table


def compare_runs(run_dirs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 metrics: Sequence[str] | None = None, print_table: bool = True) -> ComparisonTable:
    """Compare run directories (see the module docstring); returns the table."""
    records = [load_summary(d) for d in find_run_dirs(run_dirs)]
    return compare_records(records, out_dir, metrics, print_table)


# --------------------------------------------------------------------------- W&B
def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v:
            v = v["value"]  # the server's {"value": ..., "desc": ...} wrapping
        if isinstance(v, dict):
            flat.update(_flatten(v, key))
        else:
            flat[key] = v
    return flat


def load_wandb_runs(project: str, group: str | None = None, entity: str | None = None,
                    metric_prefix: str | None = None, api: Any = None) -> list[RunRecord]:
    """Runs of a W&B project (optionally one group) as :class:`RunRecord` s. Online only.

    ``metrics`` are the run summary's finite numbers, without W&B's ``_``-prefixed internals;
    with ``metric_prefix`` (e.g. ``"eval/"``) only keys with that prefix, prefix removed.
    ``seed`` comes from the config key ``seed``. ``api`` (a ``wandb.Api``) is for tests.
    """
    if api is None:
        mode = os.environ.get("WANDB_MODE", "").lower()
        if mode in ("offline", "disabled", "dryrun"):
            raise RuntimeError(
                f"load_wandb_runs needs the W&B server, but WANDB_MODE={mode}. Offline runs are "
                "on disk: compare their run directories with compare_runs() instead.")
        import wandb

        try:
            api = wandb.Api(timeout=30)
        except Exception as exc:
            raise RuntimeError(f"cannot use the W&B API (not logged in or offline?): {exc}") from exc
    path = f"{entity}/{project}" if entity else project
    try:
        runs = list(api.runs(path, filters={"group": group} if group else None))
    except Exception as exc:
        raise RuntimeError(f"cannot list W&B runs of {path!r} (offline or no access?): {exc}") from exc
    records = []
    for run in runs:
        config = _flatten(dict(getattr(run, "config", {}) or {}))
        summary = getattr(run, "summary_metrics", None)
        if summary is None:
            summary = dict(getattr(run, "summary", {}) or {})
        metrics = {}
        for k, v in _flatten(dict(summary)).items():
            if k.startswith("_"):
                continue
            if metric_prefix is not None:
                if not k.startswith(metric_prefix):
                    continue
                k = k[len(metric_prefix):]
            val = _finite(v)
            if val is not None or v is None:
                metrics[k] = val
        tags = list(getattr(run, "tags", []) or [])
        records.append(RunRecord(
            name=str(getattr(run, "name", None) or getattr(run, "id", "run")),
            group=str(getattr(run, "group", None) or UNGROUPED),
            protocol=protocol_from_tags(tags),
            seed=config.get("seed"),
            tags=tags,
            config=config, metrics=metrics,
            source=f"wandb:{path}/{getattr(run, 'id', '')}",
        ))
    return records


def main(argv: list[str] | None = None) -> int:
    """``python -m hm_talker.compare RUN_DIR... --out DIR`` (or ``--wandb-project``)."""
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
    from .safe_output import output_dir

    if not (args.wandb_project or args.run_dirs or args.sweep):
        parser.error("give run directories, --sweep or --wandb-project")
    try:
        with output_dir(args.out, "compare"):  # OUT: new, empty or ours; nothing left on failure
            if args.sweep:
                from hm_talker.launch.compare_sweep import compare_sweep
                compare_sweep(args.sweep, args.runs, args.out, args.metrics)
            elif args.wandb_project:
                records = load_wandb_runs(args.wandb_project, args.group, args.wandb_entity)
                compare_records(records, args.out, args.metrics)
            else:
                compare_runs(args.run_dirs, args.out, args.metrics)
    except (InputError, RuntimeError) as exc:  # errors on stderr, as every other command
        print(f"hm-talker: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
