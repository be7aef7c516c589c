"""Two models' mouths against one reference: is B's mouth_r above A's, beyond noise?

Two runs driven by the same reference share its frames, so their mouth_r are not independent: both
rise and fall with how predictable that stretch of speech is. Comparing their two 95 % intervals
(each as wide as the clip's effective frames allow, :func:`hm_talker.metrics.mouth.r_interval`) throws
that away; the difference r_B - r_A has an interval of its own, often much narrower.

The interval is Zou's (2007) for two overlapping correlations r_RA, r_RB of a common R: it combines
the two single intervals with the correlation between the two estimates, which follows from r_AB
(how alike the two generated mouths are):
    c = ((r_AB - r_RA r_RB / 2)(1 - r_RA^2 - r_RB^2 - r_AB^2) + r_AB^3) / ((1 - r_RA^2)(1 - r_RB^2)).
Each single interval counts its effective frames (Bartlett, as mouth_r's own interval), so a smooth
mouth is not taken for more independent frames than it is. Frames valid in all three trajectories count.
"""
from __future__ import annotations

import numpy as np

from hm_talker.metrics.correlation import MIN_FRAMES, pearson
from hm_talker.metrics.mouth import MIN_STD, effective_frames, r_interval

PAIRED_KEYS = ("mouth_r_a", "mouth_r_b", "mouth_r_diff", "mouth_r_diff_lo", "mouth_r_diff_hi", "mouth_r_ab",
               "mouth_frames")


def _overlap_correlation(r_ra: float, r_rb: float, r_ab: float) -> float:
    """Correlation between the estimates r_RA and r_RB (Zou 2007, overlapping correlations)."""
    den = (1.0 - r_ra ** 2) * (1.0 - r_rb ** 2)
    if den <= 1e-12:
        return 0.0
    c = ((r_ab - 0.5 * r_ra * r_rb) * (1.0 - r_ra ** 2 - r_rb ** 2 - r_ab ** 2) + r_ab ** 3) / den
    return float(np.clip(c, -1.0, 1.0))


def paired_difference(reference, a, b) -> dict:
    """r_B - r_A against one reference mouth, with its 95 % interval: :data:`PAIRED_KEYS` and ``notes``
    (why a value is None). ``mouth_r_a`` / ``mouth_r_b`` are each run's mouth_r on the frames valid in
    all three trajectories (so they can differ slightly from the runs' own reports)."""
    ref, pa, pb = (np.asarray(x, np.float64) for x in (reference, a, b))
    n = min(len(ref), len(pa), len(pb))
    ref, pa, pb = ref[:n], pa[:n], pb[:n]
    ok = np.isfinite(ref) & np.isfinite(pa) & np.isfinite(pb)
    out: dict = {k: None for k in PAIRED_KEYS}
    out["mouth_frames"] = int(ok.sum())
    if ok.sum() < MIN_FRAMES:
        out["notes"] = {"mouth_r_diff": f"only {int(ok.sum())} frame(s) with a face in all three clips"}
        return out
    ref, pa, pb = (np.where(ok, x, np.nan) for x in (ref, pa, pb))
    if float(np.nanstd(ref)) < MIN_STD:
        out["notes"] = {"mouth_r_diff": "the reference mouth does not move"}
        return out
    r_ra, r_rb, r_ab = pearson(pa, ref), pearson(pb, ref), pearson(pa, pb)
    out.update(mouth_r_a=r_ra, mouth_r_b=r_rb, mouth_r_ab=r_ab)
    if r_ra is None or r_rb is None or r_ab is None:
        out["notes"] = {"mouth_r_diff": "a generated mouth does not move"}
        return out
    out["mouth_r_diff"] = r_rb - r_ra
    interval = difference_interval(r_ra, r_rb, r_ab, effective_frames(pa, ref), effective_frames(pb, ref))
    if interval is None:
        out["notes"] = {"mouth_r_diff_lo": "fewer than 4 independent frames"}
        return out
    out["mouth_r_diff_lo"], out["mouth_r_diff_hi"] = interval
    out["notes"] = {}
    return out


def difference_interval(r_ra: float, r_rb: float, r_ab: float, n_a: float, n_b: float) -> tuple[float, float] | None:
    """Zou's 95 % interval of r_RB - r_RA (a common R), r_RA's single interval on n_a independent frames and
    r_RB's on n_b; None below 4 of them. It always contains the difference."""
    ia, ib = r_interval(r_ra, n_a), r_interval(r_rb, n_b)
    if ia is None or ib is None:
        return None
    c = _overlap_correlation(r_ra, r_rb, r_ab)
    (la, ua), (lb, ub) = ia, ib
    d = r_rb - r_ra
    low = d - np.sqrt(max((r_rb - lb) ** 2 + (ua - r_ra) ** 2 - 2 * c * (r_rb - lb) * (ua - r_ra), 0.0))
    high = d + np.sqrt(max((ub - r_rb) ** 2 + (r_ra - la) ** 2 - 2 * c * (ub - r_rb) * (r_ra - la), 0.0))
    return float(min(low, d)), float(max(high, d))


__all__ = ["PAIRED_KEYS", "paired_difference", "difference_interval"]
