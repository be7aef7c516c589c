"""AUE: action-unit error between generated and real frames.

Definition used for every HM-Talker number
-----------------------------------------
Inputs are AU intensity arrays ``[T, 17]`` of the generated and the real frames, columns in
OpenFace order :data:`AU_NAMES` (AU01 02 04 05 06 07 09 10 12 14 15 17 20 23 25 26 45), as an
OpenFace-compatible estimator outputs them (intensity 0..5).

* per-AU error ``e_k = mean over frames of (pred[:, k] - real[:, k])**2`` (mean squared error),
* ``AUE = sum_k e_k`` over all 17 AUs,
* ``AUE-lower`` = the sum over the lower-face AUs (AU10 12 14 15 17 20 23 25 26),
* ``AUE-upper`` = the sum over the upper-face AUs (AU01 02 04 05 06 07 09 45).

Lower is better; identical inputs give 0. The lower/upper split matters because an
audio-driven mouth mostly changes lower-face AUs, while the upper face carries expression.
Frames where either row has a non-finite value (estimator failed) are left out.
"""

from __future__ import annotations

import numpy as np

from ..constants import AU_NAMES, LOWER_AU_IDX, LOWER_FACE_AUS, UPPER_AU_IDX, UPPER_FACE_AUS

NUM_AUS = len(AU_NAMES)


def au_errors(pred, target) -> np.ndarray | None:  # [T,17] x2 -> [17]
    """Per-AU mean squared error over valid frames; None if no frame is valid."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2 or p.shape[1] != NUM_AUS:
        raise ValueError(f"AU arrays must both be [T, {NUM_AUS}] in OpenFace order, got {p.shape} and {t.shape}")
    valid = np.isfinite(p).all(axis=1) & np.isfinite(t).all(axis=1)
    if not valid.any():
        return None
    return ((p[valid] - t[valid]) ** 2).mean(axis=0)


def aue(pred, target) -> dict:
    """``{'aue', 'aue_lower', 'aue_upper', 'per_au': {name: mse}}``; values None if no valid frame."""
    err = au_errors(pred, target)
    if err is None:
        return {"aue": None, "aue_lower": None, "aue_upper": None, "per_au": {}}
    return {
        "aue": float(err.sum()),
        "aue_lower": float(err[LOWER_AU_IDX].sum()),
        "aue_upper": float(err[UPPER_AU_IDX].sum()),
        "per_au": {name: float(v) for name, v in zip(AU_NAMES, err)},
    }


__all__ = ["AU_NAMES", "LOWER_FACE_AUS", "UPPER_FACE_AUS", "NUM_AUS", "au_errors", "aue"]
