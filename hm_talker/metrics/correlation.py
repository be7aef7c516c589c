"""The one Pearson correlation of the project (lip-sync metrics, CMMM's validation, the benchmarks)."""
from __future__ import annotations

import numpy as np

MIN_FRAMES = 3  # fewer valid entries than this: no correlation is reported


def pearson(a, b) -> float | None:
    """Pearson correlation over the entries finite in both (unitless); None if undefined (fewer than
    MIN_FRAMES such entries, or either is constant over them)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < MIN_FRAMES:
        return None
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else None
