"""`hm-talker evaluate --paired A B`: two evaluations of the same reference mouth compared frame by frame.

Every evaluation with a reference mouth (self-driven, cross-driven by a video, a pair) writes OUT/mouth.npz:
the per-frame opening of the generated and of the reference mouth. Two such folders scored against the
same reference (the same held-out frames, or the same driving video) give r_B - r_A with a paired 95 %
interval (hm_talker/metrics/mouth_paired.py), much narrower than the two runs' own intervals when the two
mouths move alike: whether one checkpoint is better than another on that reference (whether a configuration
is, needs its seeds too).
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from hm_talker.errors import InputError
from hm_talker.safe_output import write_bytes_atomic

TRAJECTORY_FILE = "mouth.npz"


from hm_talker.metrics import FRAME_SCORE_KEYS as FRAME_ARRAYS  # optional per-frame scores of the same real frames


def save_trajectory(out: Path, trajectory: dict, inputs: dict, file_name: str = TRAJECTORY_FILE) -> None:
    """OUT/mouth.npz (or OUT/FILE_NAME) of a scorer's trajectory: float arrays ``generated`` and ``reference``
    (openings, NaN without a face), those of FRAME_ARRAYS it holds (per frame, NaN where not scored) and
    ``source`` (the evaluation's inputs as JSON text, for messages). No pickled objects."""
    arrays = {k: np.asarray(trajectory[k], np.float64) for k in ("generated", "reference", *FRAME_ARRAYS)
              if trajectory.get(k) is not None}
    buf = io.BytesIO()
    np.savez(buf, **arrays, source=np.array(json.dumps({k: v for k, v in inputs.items() if k != "render"}, default=str)))
    write_bytes_atomic(Path(out) / file_name, buf.getvalue())  # a reader (compare, --paired) never sees half a file


def load_trajectory(folder) -> dict:
    """The arrays of an evaluation folder's mouth.npz; InputError naming the folder if it has none."""
    path = Path(folder) / TRAJECTORY_FILE
    if not Path(folder).is_dir():
        raise InputError(folder, "not a folder: give two `hm-talker evaluate` output folders")
    if not path.is_file():
        raise InputError(folder, f"no {TRAJECTORY_FILE}: it holds no scored mouth (cross-driven by speech "
                                 "alone has no reference), or an older version wrote it: evaluate again")
    return read_trajectory(path)


def read_trajectory(path) -> dict:
    """The arrays of one trajectory file (generated, reference, source text); InputError if torn or malformed."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("generated", "reference", "source")}
            data.update({k: z[k] for k in FRAME_ARRAYS if k in z.files})
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"unreadable mouth trajectory ({exc})") from None
    if any(data[k].shape != data["generated"].shape for k in ("reference", *FRAME_ARRAYS) if k in data) \
            or data["generated"].ndim != 1:
        raise InputError(path, "the trajectories of its frames differ in length")
    data["source"] = str(data["source"])
    return data


REFERENCE_TOLERANCE = 1e-4  # inter-ocular units: two detections of one reference mouth (another machine's mediapipe)


def reference_mismatch(a: np.ndarray, b: np.ndarray) -> str | None:
    """Why two reference trajectories are not the same mouth (None if they are: as many frames, a face in the
    same frames, openings within REFERENCE_TOLERANCE)."""
    if len(a) != len(b) or not len(a):
        return f"{len(a)} against {len(b)} frames"
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return "a face in different frames"
    ok = np.isfinite(a)
    worst = float(np.abs(a[ok] - b[ok]).max()) if ok.any() else 0.0
    return None if worst <= REFERENCE_TOLERANCE else f"openings up to {worst:.4f} apart"


def direction(lo: float, hi: float) -> str:
    """What a 95 % interval of B - A says: above, below or not told apart."""
    return "above" if lo > 0 else "below" if hi < 0 else "not told apart"


def _where(lo: float, hi: float) -> str:
    d = direction(lo, hi)
    return d if d == "not told apart" else f"B {d} A"


def verdict(m: dict) -> str:
    """What the paired intervals say about B against A: mouth_r, then each per-frame image score both hold."""
    if m["mouth_r_diff_lo"] is None:
        line = "no interval: " + "; ".join(v for k, v in m["notes"].items() if k.startswith("mouth_r"))
    else:
        d, lo, hi = m["mouth_r_diff"], m["mouth_r_diff_lo"], m["mouth_r_diff_hi"]
        line = (f"mouth_r A {m['mouth_r_a']:.3f}, B {m['mouth_r_b']:.3f}; B - A {d:+.3f} [95 %: {lo:+.3f}, "
                f"{hi:+.3f}] over {m['mouth_frames']} frames: {_where(lo, hi)}")
    for key in FRAME_ARRAYS:
        if m.get(f"{key}_diff_lo") is not None:
            d, lo, hi = m[f"{key}_diff"], m[f"{key}_diff_lo"], m[f"{key}_diff_hi"]
            line += (f"\n  {key} A {m[key + '_a']:.4f}, B {m[key + '_b']:.4f}; B - A {d:+.4f} [95 %: {lo:+.4f}, "
                     f"{hi:+.4f}]: {_where(lo, hi)}")
    return line


def frame_differences(a: dict, b: dict) -> dict:
    """B - A of each per-frame image score both trajectories hold (the same real frames), with its paired 95 %
    interval (hm_talker/metrics/frame_paired.py); notes say why one is missing."""
    from hm_talker.metrics.frame_paired import paired_mean_difference

    out, notes = {}, {}
    for key in FRAME_ARRAYS:
        if key in a and key in b:
            values, why = paired_mean_difference(key, a[key], b[key])
            out.update(values)
            if why:
                notes[f"{key}_diff"] = why
    return {**out, "notes": notes}


def compare_trajectories(a: dict, b: dict) -> dict:
    """B's against A's on their common reference: mouth_r (hm_talker/metrics/mouth_paired.py) and each per-frame
    image score both hold (frame_differences), with their notes."""
    from hm_talker.metrics.mouth_paired import paired_difference

    m = paired_difference(a["reference"], a["generated"], b["generated"])
    frames = frame_differences(a, b)
    m.update({k: v for k, v in frames.items() if k != "notes"})
    m["notes"] = {**m["notes"], **frames["notes"]}
    return m


def evaluate_paired(a_dir, b_dir, out_dir) -> dict:
    """Compare two evaluation folders on their common reference; OUT/metrics.json and OUT/metrics.md."""
    from hm_talker.metrics.mouth_paired import PAIRED_KEYS

    a, b = load_trajectory(a_dir), load_trajectory(b_dir)
    why = reference_mismatch(a["reference"], b["reference"])
    if why:
        raise InputError(b_dir, f"not scored against the same reference mouth as {a_dir} ({why}): a paired "
                                f"comparison needs one reference (A: {a['source']}; B: {b['source']})")
    m = compare_trajectories(a, b)
    line = verdict(m)
    m["notes"]["method"] = (
        "mouth_r_a / mouth_r_b: each run's mouth_r on the frames with a face in all three clips; mouth_r_diff = "
        "B - A with Zou's (2007) 95 % interval for two correlations with a common reference, each single "
        "interval on its effective frames (hm_talker/metrics/mouth_paired.py); mouth_r_ab: the two generated "
        "mouths' correlation. psnr_face / lpips_face (self-driven and --pred --target, scored against real "
        "frames): means over the frames scored in both, B - A with a paired t interval on the per-frame "
        "differences' effective frames (hm_talker/metrics/frame_paired.py)")
    inputs = {"a": str(a_dir), "b": str(b_dir), "a_source": a["source"], "b_source": b["source"],
              "protocol": "paired"}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({**m, "verdict": line, "inputs": inputs}, indent=2))
    lines = ["# hm-talker evaluate: paired", "", f"A: {a_dir}", "", f"B: {b_dir}", "", *line.split("\n  "), "",
             "| metric | value |", "|---|---:|"]
    shown = [*PAIRED_KEYS, *(k for k in m if k.startswith(FRAME_ARRAYS) and k != "notes")]
    lines += [f"| {k} | {'n/a' if m[k] is None else format(m[k], '.4f') if isinstance(m[k], float) else m[k]} |"
              for k in shown]
    lines += ["", "## notes", ""] + [f"- {k}: {v}" for k, v in m["notes"].items()]
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    return m
