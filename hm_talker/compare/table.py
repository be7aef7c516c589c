"""The comparison table: runs grouped by ablation and evaluation protocol (a row per pair, labelled
``group [protocol]``: self- and cross-driven results of one ablation are different experiments, never
averaged as if they were seeds; fit runs have no protocol), and per metric the mean and the sample
standard deviation (``ddof=1``, the spread over seeds; None with one run) over the runs of the row whose
value is a finite number (nulls are left out and the count ``n`` says how many were used)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from hm_talker.compare.records import RunRecord
from hm_talker.errors import InputError

# +1 higher is better, -1 lower is better, 0 closest to METRIC_TARGETS (default 0) is better
METRIC_DIRECTIONS = {
    "psnr": 1, "ssim": 1, "psnr_face": 1, "ssim_face": 1, "sync_c": 1, "mouth_r": 1, "mouth_r_best": 1, "mouth_r_gain": 1,
    "lpips": -1, "lpips_face": -1, "lmd": -1, "aue": -1, "aue_lower": -1, "aue_upper": -1,
    "sync_d": -1, "av_offset": 0, "seam": 0, "mouth_lag": 0, "mouth_amp": 0, "mouth_jitter": 0, "fid": -1,
}
METRIC_TARGETS = {"mouth_amp": 1.0, "mouth_jitter": 1.0}  # ratios to the real mouth: 1 is best
# headline first: the face region (full-frame numbers are inflated by compositing), then lip sync
_KNOWN_ORDER = ["psnr_face", "ssim_face", "lpips_face", "seam", "mouth_r", "mouth_r_best", "mouth_lag", "mouth_amp",
                "mouth_jitter", "lmd", "aue", "aue_lower", "aue_upper", "sync_c", "sync_d", "av_offset",
                "psnr", "ssim", "lpips", "mouth_open_mean", "mouth_open_std", "mouth_open_jitter"]
# a fit's validation keys (hm_talker/evaluation/validation.py): lip sync first, as SFP sweeps rank by it
_VAL_ORDER = ["val/psnr_face", "val/lpips_face", "val/mouth_r", "val/mouth_amp", "val/mouth_jitter",
              "val/cross_mouth_r", "val/cross_mouth_amp", "val/cross_mouth_jitter", "val/lmd", "val/seam",
              "val/cross_mouth_r_deaf", "val/cross_mouth_amp_deaf", "val/cross_mouth_jitter_deaf", "psnr_val"]
_NOT_METRICS = {"num_frames", "mouth_frames_skipped", "reference_frames"}
# one run's interval bounds (mouth_r_lo / mouth_r_hi, any prefix or _deaf suffix): a mean of bounds over seeds is no
# interval of the mean, so the tables leave them out (they stay in each run's summary.json and W&B run)
_INTERVAL_BOUNDS = ("mouth_r_lo", "mouth_r_hi", "mouth_r_gain_lo", "mouth_r_gain_hi")
_ARROW = {1: "↑", -1: "↓"}


def base_metric(metric: str) -> str:
    """The metric a key measures: val/cross_mouth_r, val/cross/REF/mouth_r and val/mouth_r are mouth_r;
    psnr_val is psnr; a deaf control's key keeps its suffix (it has no better direction)."""
    if metric == "psnr_val":
        return "psnr"
    name = metric.split("/")[-1]
    return name[len("cross_"):] if name.startswith("cross_") else name


def _is_metric(key: str) -> bool:
    """A summary key the tables show: not a count, not one run's interval bound."""
    return key not in _NOT_METRICS and not base_metric(key).removesuffix("_deaf").endswith(_INTERVAL_BOUNDS)


def metric_direction(metric: str) -> int | None:
    """+1 higher is better, -1 lower, 0 closest to its target, None unknown (see METRIC_DIRECTIONS)."""
    return METRIC_DIRECTIONS.get(base_metric(metric))


def metric_target(metric: str) -> float:
    return METRIC_TARGETS.get(base_metric(metric), 0.0)


def direction_arrow(metric: str) -> str:
    direction = metric_direction(metric)
    if direction is None:
        return ""
    return _ARROW.get(direction) or f"→{metric_target(metric):g}"


def row_label(group: str, protocol: str) -> str:
    """The table row of a run: its group, with the evaluation protocol when it has one."""
    return f"{group} [{protocol}]" if protocol else group


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
        direction = metric_direction(metric)
        rows = self.groups
        if protocol is None and len({self.protocols.get(g, "") for g in rows}) > 1:
            return None
        if protocol is not None:
            rows = [g for g in rows if self.protocols.get(g, "") == protocol]
        cands = [(g, self.stats[g][metric].mean) for g in rows if self.stats[g][metric].mean is not None]
        if direction is None or len(cands) < 2:
            return None
        target = metric_target(metric)
        key = (lambda gv: abs(gv[1] - target)) if direction == 0 else (lambda gv: -direction * gv[1])
        return min(cands, key=key)[0]

    def to_markdown(self, digits: int = 4) -> str:
        """Rows = groups (x protocols), columns = metrics, cells ``mean ± std`` (best mean of each
        protocol in bold)."""
        with_protocol = any(self.protocols.get(g) for g in self.groups)
        header = (["group", "protocol"] if with_protocol else ["group"]) + ["runs", "seeds"] + [
            f"{m} {direction_arrow(m)}".rstrip() for m in self.metrics]
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


def finite_number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _repeated_per_reference(records: Sequence[RunRecord], names: set[str]) -> set[str]:
    """The per-reference validation keys (val/cross/REF/m) of runs with a single reference: they equal the
    mean over references (val/cross_m) in every run, so a column of them would repeat that column."""
    refs = {k.split("/")[2] for k in names if k.startswith("val/cross/") and k.count("/") == 3}
    if len(refs) != 1:
        return set()
    ref = refs.pop()
    out = set()
    for k in names:
        if k.startswith(f"val/cross/{ref}/"):
            mean_key = "val/cross_" + k.split("/")[3]  # val/cross/REF/mouth_r_deaf -> val/cross_mouth_r_deaf
            if all(finite_number(r.metrics.get(k)) == finite_number(r.metrics.get(mean_key)) for r in records):
                out.add(k)
    return out


def aggregate(records: Sequence[RunRecord], metrics: Sequence[str] | None = None) -> ComparisonTable:
    """Group records by ``group`` and ``protocol``; mean and sample std of every metric over each
    row's runs."""
    if not records:
        raise InputError(None, "no runs to compare")
    label = {id(r): row_label(r.group, r.protocol) for r in records}
    groups: list[str] = list(dict.fromkeys(label[id(r)] for r in records))
    if metrics is None:
        names = {k for r in records for k in r.metrics if _is_metric(k)}
        names -= _repeated_per_reference(records, names)
        # each reference's gain over its deaf control beside the deaf columns (lip sync first)
        gains = sorted(k for k in names if base_metric(k) == "mouth_r_gain")
        cut = _VAL_ORDER.index("psnr_val")
        known = [m for m in _VAL_ORDER[:cut] if m in names] + gains + [m for m in _VAL_ORDER[cut:] + _KNOWN_ORDER
                                                                       if m in names]
        metrics = known + sorted(names - set(known))
    stats: dict[str, dict[str, MetricStats]] = {}
    for g in groups:
        members = [r for r in records if label[id(r)] == g]
        stats[g] = {}
        for m in metrics:
            vals = [v for v in (finite_number(r.metrics.get(m)) for r in members) if v is not None]
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
