"""Head pose per frame: rigid (similarity) alignment of the 3D landmarks to the identity's mean shape.

The canonical head frame is the mean shape, centred, in units of the distance between the outer eye
corners. A frame's landmarks in crop pixels are approximated by s * R @ X + t; with a pinhole camera
of focal f and principal point c this is the perspective projection of the head placed at depth f / s,
which gives the camera extrinsics (world = head frame -> camera) and intrinsics of every frame.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from hm_talker.constants import LM, RIGID_LANDMARKS


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares s, R, t with dst ~ s * src @ R.T + t (Umeyama), src/dst [P, 3]."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    r = u @ fix @ vt
    s = float(np.trace(np.diag(sig) @ fix) / (a.var(0).sum() + 1e-12))
    return s, r, md - s * r @ ms


def rigid_subset(shape: np.ndarray | None = None) -> np.ndarray:
    """Indices of the points expressions barely move (`constants.RIGID_LANDMARKS`: forehead, temples,
    nose bridge, eye corners; not brows, eyelids, iris, nostrils, lips or jaw). `shape` is unused
    (the set is fixed by the landmark model); kept for callers that pass it."""
    return np.asarray(RIGID_LANDMARKS, dtype=np.int64)


def mean_shape(lms: np.ndarray, iters: int = 3) -> np.ndarray:
    """Generalised Procrustes mean of [T, P, 3] landmarks, centred, eye-corner distance 1."""
    shape = lms[0].astype(np.float64)
    idx = np.arange(lms.shape[1])
    for _ in range(iters):
        shape = shape - shape[idx].mean(0)
        shape /= np.linalg.norm(shape[LM["r_eye_outer"]] - shape[LM["l_eye_outer"]])
        total = np.zeros_like(shape)  # a running sum, not a list: memory stays one shape long
        for p in lms:
            s, r, t = similarity(p[idx], shape[idx])
            total += s * p @ r.T + t
        shape = total / len(lms)
        idx = rigid_subset(shape - shape.mean(0))
    shape = shape - shape[idx].mean(0)
    return shape / np.linalg.norm(shape[LM["r_eye_outer"]] - shape[LM["l_eye_outer"]])


def _smooth_segment(rots: np.ndarray, trans: np.ndarray, scales: np.ndarray, sigma: float):
    """Gaussian smoothing (sigma in frames) of one clip's rotations (as quaternions), translations, scales."""
    q = Rotation.from_rotvec(rots).as_quat()
    q *= np.sign((q * q[:1]).sum(1, keepdims=True))  # one hemisphere before averaging
    q = gaussian_filter1d(q, sigma, axis=0, mode="nearest")
    rots = Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True)).as_rotvec()
    return rots, gaussian_filter1d(trans, sigma, axis=0, mode="nearest"), gaussian_filter1d(scales, sigma, mode="nearest")


def head_poses(lms_crop: np.ndarray, shape: np.ndarray, size: int, focal_ratio: float,
               sigma: float, clip_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop-pixel landmarks [T, P, 3] -> extrinsics [T, 4, 4], intrinsics [T, 3, 3], canonical [T, P, 3].

    `canonical` is each frame's landmarks mapped back into the head frame (pose removed): the input
    of the AU geometry. Poses are smoothed over time within each clip (`clip_ids` [T]; None: one
    clip), never across a cut between two clips.
    """
    idx = rigid_subset(shape)
    n = len(lms_crop)
    rots, trans, scales, canon = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros(n), np.zeros_like(lms_crop, dtype=np.float64)
    for i, p in enumerate(lms_crop.astype(np.float64)):
        s, r, t = similarity(shape[idx], p[idx])
        rots[i], trans[i], scales[i] = Rotation.from_matrix(r).as_rotvec(), t, s
        canon[i] = (p - t) @ r / s
    if sigma > 0 and n > 1:
        ids = np.zeros(n, dtype=np.int64) if clip_ids is None else np.asarray(clip_ids)
        cuts = np.flatnonzero(np.diff(ids)) + 1
        for seg in np.split(np.arange(n), cuts):
            if len(seg) > 1:
                rots[seg], trans[seg], scales[seg] = _smooth_segment(rots[seg], trans[seg], scales[seg], sigma)
    f, c = focal_ratio * size, size / 2.0
    K = np.array([[f, 0, c], [0, f, c], [0, 0, 1]], dtype=np.float64)
    ext = np.tile(np.eye(4), (n, 1, 1))
    ext[:, :3, :3] = Rotation.from_rotvec(rots).as_matrix()
    depth = f / scales
    ext[:, 0, 3] = (trans[:, 0] - c) / scales
    ext[:, 1, 3] = (trans[:, 1] - c) / scales
    ext[:, 2, 3] = depth
    return ext.astype(np.float32), np.tile(K, (n, 1, 1)).astype(np.float32), canon.astype(np.float32)


def project(points: np.ndarray, ext: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of head-frame points [P, 3] with one frame's camera -> pixels [P, 2]."""
    cam = points @ ext[:3, :3].T + ext[:3, 3]
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:3]
