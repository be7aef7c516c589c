"""`hm-talker compare ... --baseline GROUP`: every other group's runs paired with the baseline's runs of the same
seed on one reference mouth, frame by frame (mouth_r B - A with Zou's 95 % interval,
hm_talker/metrics/mouth_paired.py), beside the table of means.

Two runs driven by one reference are not independent (both do well where the speech is easy to read), so the
spread of their means over seeds says less than a paired interval on each seed. The mouths come from the run
folders: an evaluation's OUT/mouth.npz (its one reference), a fit's latest validation
(RUN_DIR/val/step_<step>_self.mouth.npz and step_<step>_cross-<reference>.mouth.npz). Runs are paired within one
evaluation protocol and one identity (the same `data.root`: two faces driven by one speaker share the reference
mouth, not the model); a pair whose reference mouths differ (another clip, another held-out split) is reported as
such, never compared.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hm_talker.compare.records import RunRecord
from hm_talker.errors import InputError

EVALUATION_REFERENCE = "evaluation"  # the key of an evaluation folder's one reference mouth
_VAL_FILE = re.compile(r"step_(\d+)_(self|cross-.+)\.mouth\.npz$")


def run_trajectories(record: RunRecord) -> tuple[dict[str, Path], int | None]:
    """({reference key: trajectory file}, validation step) of a run folder: `evaluation` for an evaluation's
    mouth.npz (step None); `self` and `cross-<reference>` of a fit's latest validation that kept any (a reference
    whose mouth that validation did not find has none: an earlier step's file is not taken for it). Nothing for
    W&B records."""
    from hm_talker.evaluation.paired import TRAJECTORY_FILE

    if not record.source or not Path(record.source).is_dir():
        return {}, None
    folder = Path(record.source)
    if (folder / TRAJECTORY_FILE).is_file():
        return {EVALUATION_REFERENCE: folder / TRAJECTORY_FILE}, None
    by_step: dict[int, dict[str, Path]] = {}
    for path in (folder / "val").glob("step_*.mouth.npz"):
        m = _VAL_FILE.match(path.name)
        if m:
            by_step.setdefault(int(m.group(1)), {})[m.group(2)] = path
    if not by_step:
        return {}, None
    step = max(by_step)
    return by_step[step], step


@dataclass
class Pair:
    row: str  # the compared group's table row
    run: str
    baseline_run: str
    seed: object
    reference: str
    result: dict | None  # paired_difference's keys, None when not compared
    note: str = ""

    def verdict(self) -> str:
        r = self.result
        if r is None:
            return self.note
        if r["mouth_r_diff_lo"] is None:
            return "; ".join(v for k, v in r["notes"].items() if k.startswith("mouth_r")) or "no interval"
        from hm_talker.evaluation.paired import direction

        return direction(r["mouth_r_diff_lo"], r["mouth_r_diff_hi"])


def _in_group(record: RunRecord, group: str) -> bool:
    """A record of GROUP (a sweep row may carry an "[n/m seeds]" tag after the label, and nothing else)."""
    return record.group == group or re.fullmatch(re.escape(group) + r" \[\d+/\d+ seeds\]", record.group) is not None


def _pair_one(row: str, rec: RunRecord, base: RunRecord, key: str, mine: Path, theirs: Path) -> "Pair":
    """rec's mouth on one reference against base's (a torn or old file is said in the pair, not fatal)."""
    from hm_talker.evaluation.paired import compare_trajectories, read_trajectory, reference_mismatch

    try:
        a, b = read_trajectory(theirs), read_trajectory(mine)
    except InputError as exc:
        return Pair(row, rec.name, base.name, rec.seed, key, None, f"not compared: {exc}")
    why = reference_mismatch(a["reference"], b["reference"])
    if why:
        return Pair(row, rec.name, base.name, rec.seed, key, None, f"different reference mouths ({why})")
    return Pair(row, rec.name, base.name, rec.seed, key, compare_trajectories(a, b))


def paired_against(records: list[RunRecord], baseline: str) -> list[Pair]:
    """Each non-baseline run paired with the baseline run of its protocol, seed and identity (data.root) on every
    reference both hold (fits: each one's latest validation, at the same step)."""
    from hm_talker.compare.table import row_label

    base = [r for r in records if _in_group(r, baseline)]
    if not base:
        groups = sorted({r.group for r in records})
        raise InputError(None, f"--baseline {baseline!r} is none of the compared groups ({', '.join(groups)})")
    pairs = []
    for rec in records:
        if _in_group(rec, baseline):
            continue
        row, (mine, step) = row_label(rec.group, rec.protocol), run_trajectories(rec)

        def unpaired(why: str, with_run: str = "") -> None:
            pairs.append(Pair(row, rec.name, with_run, rec.seed, "", None, why))

        if not mine:
            unpaired("no mouth trajectory in the run folder")
            continue
        if rec.seed is None:
            unpaired("seed unknown: not paired")
            continue
        ident = rec.config.get("data.root")
        match = sorted((b for b in base if b.protocol == rec.protocol and b.seed == rec.seed
                        and b.config.get("data.root") == ident), key=lambda b: b.name)
        if len(match) != 1:
            what = (f"{baseline} run" + (f" of protocol {rec.protocol}" if rec.protocol else "") +
                    f" with seed {rec.seed}" + (f" on {ident}" if ident else ""))
            unpaired(f"no {what}" if not match else
                     f"{len(match)} runs are the {what} ({', '.join(b.name for b in match)}): ambiguous, not paired")
            continue
        other, other_step = run_trajectories(match[0])
        if step != other_step:
            unpaired(f"validations at different steps ({match[0].name} {other_step}, this run {step})", match[0].name)
            continue
        for key in sorted(mine):
            if key not in other:
                pairs.append(Pair(row, rec.name, match[0].name, rec.seed, key, None, f"{match[0].name} has no {key} mouth"))
                continue
            pairs.append(_pair_one(row, rec, match[0], key, mine[key], other[key]))
    return pairs


def _num(v) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


def _psnr_cell(r: dict) -> str:
    """psnr_face B - A [95 %] in dB (held-out frames: the renders of the same real frames), '-' without."""
    if r.get("psnr_face_diff") is None:
        return "-"
    lo, hi = r.get("psnr_face_diff_lo"), r.get("psnr_face_diff_hi")
    bounds = f" ({r['notes'].get('psnr_face_diff', 'no interval')})" if lo is None else f" [{lo:+.2f}, {hi:+.2f}]"
    return f"{r['psnr_face_diff']:+.2f}{bounds}"


def mean_over_pairs(diffs: list[float]) -> tuple[float, float | None, float | None]:
    """Mean of the pairs' differences with a 95 % Student t interval over the pairs (None, None below 3 pairs
    or with no spread): each pair is one observation of the configuration's effect."""
    from hm_talker.metrics.frame_paired import t_half_width

    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    if len(d) < 3 or sd < 1e-12:  # no spread (float rounding aside): no interval
        return mean, None, None
    half = t_half_width(sd, len(d))
    return mean, mean - half, mean + half


def tally_pairs(pairs: list[Pair]) -> list[dict]:
    """Per row and reference: how many pairs, their mean difference with its interval over pairs
    (mean_over_pairs), and how many are above / below / not told apart."""
    groups: dict[tuple, list[Pair]] = {}
    for p in pairs:
        if p.result is not None and p.result.get("mouth_r_diff") is not None:
            groups.setdefault((p.row, p.reference), []).append(p)
    out = []
    for (row, ref), ps in groups.items():
        verdicts = [p.verdict() for p in ps]
        mean, lo, hi = mean_over_pairs([p.result["mouth_r_diff"] for p in ps])
        out.append({"row": row, "reference": ref, "pairs": len(ps), "mean": mean, "lo": lo, "hi": hi,
                    **{v: verdicts.count(v) for v in ("above", "below", "not told apart")}})
    return out


def pairs_markdown(pairs: list[Pair], baseline: str) -> str:
    """The pairs as a markdown section: a row per pair, then per group and reference how many are above/below."""
    lines = [f"## Paired against {baseline}", "",
             "mouth_r of each run (B) minus that of the baseline run of its seed (A) on one reference mouth, frame by "
             "frame, with Zou's 95 % interval; above / below: the interval excludes 0. psnr_face (dB), where both "
             "were scored against the same real frames: B - A with a paired 95 % interval.", "",
             "| row | seed | reference | baseline run | frames | A | B | B - A [95 %] | verdict | psnr_face B - A [95 %] |",
             "|---|---|---|---|---:|---:|---:|---|---|---|"]
    for p in pairs:
        r = p.result or {}
        interval = ("n/a" if r.get("mouth_r_diff") is None else
                    f"{_num(r['mouth_r_diff'])} [{_num(r.get('mouth_r_diff_lo'))}, {_num(r.get('mouth_r_diff_hi'))}]")
        lines.append(f"| {p.row} | {p.seed} | {p.reference or '-'} | {p.baseline_run or '-'} | "
                     f"{r.get('mouth_frames', '-')} | {_num(r.get('mouth_r_a'))} | {_num(r.get('mouth_r_b'))} | "
                     f"{interval} | {p.verdict()} | {_psnr_cell(r)} |")
    tally = tally_pairs(pairs)
    if tally:
        lines += ["", "| row | reference | pairs | mean B - A [95 % over pairs] | above | below | not told apart |",
                  "|---|---|---:|---|---:|---:|---:|"]
        for t in tally:
            mean = f"{t['mean']:+.3f}" + ("" if t["lo"] is None else f" [{t['lo']:+.3f}, {t['hi']:+.3f}]")
            lines.append(f"| {t['row']} | {t['reference']} | {t['pairs']} | {mean} | {t['above']} | {t['below']} | "
                         f"{t['not told apart']} |")
        lines += ["", "Each pair has its own 95 % interval, with no correction for how many there are: among 40 pairs "
                  "of equal runs about 2 fall outside by chance. The interval over pairs (3 or more) is Student's t on "
                  "the pairs' differences, each pair (a seed, an identity) one observation: it says whether the "
                  "difference holds across them, not within one."]
    return "\n".join(lines) + "\n"


def write_pairs(records: list[RunRecord], baseline: str, out_dir) -> list[dict]:
    """Pair the runs against BASELINE; append the section to OUT/comparison.md, write OUT/paired.json, print it;
    returns paired.json's rows."""
    pairs = paired_against(records, baseline)
    text = pairs_markdown(pairs, baseline)
    out = Path(out_dir)
    with open(out / "comparison.md", "a") as f:
        f.write("\n" + text)
    rows = [{"row": p.row, "run": p.run, "baseline_run": p.baseline_run, "seed": p.seed, "reference": p.reference,
             "verdict": p.verdict(), **{k: v for k, v in (p.result or {}).items() if k != "notes"},
             "notes": (p.result or {}).get("notes", {})} for p in pairs]
    summary = {"baseline": baseline, "pairs": rows, "tally": tally_pairs(pairs)}
    (out / "paired.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(text)
    return rows
