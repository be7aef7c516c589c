"""How far below the nose the rendered region must reach: the widest jaw of the identity's own frames.

The pose region (`GaussianHead.pose_region`) is the mean shape's face outline under the frame's head pose,
with the part below the nose tip stretched down so that an open jaw stays inside it. Too little room cuts the
open chin off (the real, closed chin shows under it); too much reaches past the chin over the neck and the
collar, which move with the torso, not the head: the Gaussians cannot follow them and a line shows there.
`jaw_room` measures the stretch each training frame needs: its nose-tip-to-chin distance (landmarks) over
that of the mean shape projected with the same camera, minus one.
"""
from __future__ import annotations

import numpy as np

from hm_talker.constants import LM
from hm_talker.preprocess.pose import project

JAW_QUANTILE = 99.0  # percentile of the frames' needed stretch: a few frames of landmark error do not widen it


def needed_stretch(landmarks: np.ndarray, mean_shape: np.ndarray, extrinsics: np.ndarray,
                   intrinsics: np.ndarray) -> np.ndarray:
    """[T] the share by which each frame's nose-tip-to-chin distance exceeds the mean shape's under its pose.

    landmarks [T, 478, >=2] pixels; mean_shape [478, 3] head frame; extrinsics [T, 4, 4]; intrinsics [T, 3, 3].
    """
    nose, chin = LM["nose_tip"], LM["chin"]
    uv = np.stack([project(mean_shape[[nose, chin]], e, k) for e, k in zip(extrinsics, intrinsics)])  # [T, 2, 2]
    mean_len = np.linalg.norm(uv[:, 1] - uv[:, 0], axis=-1)
    real_len = np.linalg.norm(landmarks[:, chin, :2] - landmarks[:, nose, :2], axis=-1)
    return real_len / np.maximum(mean_len, 1e-6) - 1.0


def jaw_room(features: dict, frames: slice | range | np.ndarray, margin: float) -> float:
    """The region's chin stretch (`model.face_region_chin`) for an identity: the JAW_QUANTILE-th percentile of
    `needed_stretch` over `frames` (its training frames) plus `margin`, at least `margin`."""
    need = needed_stretch(features["landmarks"][frames], features["mean_shape"], features["extrinsics"][frames],
                          features["intrinsics"][frames])
    need = need[np.isfinite(need)]
    if need.size == 0:
        raise ValueError("no frame to measure the jaw on")
    return float(max(np.percentile(need, JAW_QUANTILE), 0.0) + margin)
