"""LMD: mouth landmark distance between generated and real frames.

Definition used for every HM-Talker number
-----------------------------------------
Inputs are mouth landmarks of the generated and of the real frames, ``[T, M, 2]`` in pixel
coordinates (x, y) of frames of size ``size = (H, W)``; normally the ``M = 40`` mediapipe lip
points :data:`MEDIAPIPE_LIP_INDICES` taken from the 478-point face mesh.

1. Optionally rescale both to a reference resolution ``reference_size = (H_ref, W_ref)``
   (x scaled by ``W_ref / W``, y by ``H_ref / H``), so numbers from different render sizes are
   comparable. The value is then *pixels at the reference resolution*; state it with the number.
2. Mean-centre each frame's point set (subtract the mean of its M points), which removes head
   translation so LMD measures mouth shape, not where the head is.
3. LMD = mean over frames and points of the Euclidean (L2) distance between corresponding
   centred points. Lower is better; identical landmarks give 0.

Frames where either set has a non-finite coordinate (landmark detector failed) are left out.
"""

from __future__ import annotations

import numpy as np

from ..constants import MOUTH_LANDMARKS

# The 40 lip vertices of mediapipe's 478-point face mesh: the set of vertices in mediapipe's
# FACEMESH_LIPS: outer contour (20, from mouth corner 61 along the upper lip to corner 291 and
# back along the lower lip), then inner contour (20, the same way from 78 to 308). Shared with
# the rest of the project through hm_talker.constants.MOUTH_LANDMARKS.
MEDIAPIPE_LIP_INDICES: tuple[int, ...] = tuple(MOUTH_LANDMARKS)


def _as_size(size) -> tuple[float, float] | None:
    if size is None:
        return None
    if np.isscalar(size):
        return float(size), float(size)
    h, w = size
    return float(h), float(w)


def lmd_per_frame(pred, target, size=None, reference_size=None) -> np.ndarray:  # [T,M,2] x2 -> [T]
    """Per-frame mean L2 distance of mean-centred mouth points (NaN where a frame is invalid).

    ``size`` / ``reference_size`` are ``(H, W)`` or an int for square frames; both or neither.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"landmarks must both be [T, M, 2], got {p.shape} and {t.shape}")
    src, ref = _as_size(size), _as_size(reference_size)
    if (src is None) != (ref is None):
        raise ValueError("give both size and reference_size to rescale, or neither")
    if src is not None:
        scale = np.array([ref[1] / src[1], ref[0] / src[0]])  # (x, y)
        p, t = p * scale, t * scale
    valid = np.isfinite(p).all(axis=(1, 2)) & np.isfinite(t).all(axis=(1, 2))
    out = np.full(p.shape[0], np.nan)
    if valid.any():
        pc = p[valid] - p[valid].mean(axis=1, keepdims=True)
        tc = t[valid] - t[valid].mean(axis=1, keepdims=True)
        out[valid] = np.linalg.norm(pc - tc, axis=-1).mean(axis=1)
    return out


def lmd(pred, target, size=None, reference_size=None) -> float | None:
    """LMD in pixels (at ``reference_size`` if given, else at the landmarks' own resolution).

    None when no frame has valid landmarks in both sets.
    """
    per_frame = lmd_per_frame(pred, target, size, reference_size)
    per_frame = per_frame[np.isfinite(per_frame)]
    return float(per_frame.mean()) if per_frame.size else None


__all__ = ["MEDIAPIPE_LIP_INDICES", "lmd", "lmd_per_frame"]
