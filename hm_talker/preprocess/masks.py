"""Face, lips and inner-mouth masks drawn from the landmark polygons."""
from __future__ import annotations

import numpy as np

from hm_talker.constants import FACE_OVAL, LIPS_INNER, LIPS_OUTER

MASK_NAMES = ["face", "lips", "mouth"]  # channel order of decoded masks; bit k of masks.png is MASK_NAMES[k]


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """[H, W, 3] 0/255 masks -> [H, W] uint8 bit flags (face 1, lips 2, inner mouth 4): one small PNG
    channel instead of three, which decodes about 4x faster in the loader."""
    return ((masks[..., 0] > 0) * 1 + (masks[..., 1] > 0) * 2 + (masks[..., 2] > 0) * 4).astype(np.uint8)


def unpack_masks(bits: np.ndarray) -> np.ndarray:
    """[H, W] bit flags -> [3, H, W] float32 0/1 masks in MASK_NAMES order."""
    return np.stack([(bits >> k) & 1 for k in range(len(MASK_NAMES))]).astype(np.float32)


def draw_masks(lms: np.ndarray, size) -> np.ndarray:
    """Pixel landmarks [478, 3] -> [H, W, 3] uint8 masks (0 / 255): face, lips, inner mouth.

    `size` is the side of a square frame or (H, W)."""
    import cv2

    h, w = (size, size) if np.isscalar(size) else size
    out = np.zeros((h, w, 3), dtype=np.uint8)
    pts = lambda idx: np.round(lms[idx, :2] * 16).astype(np.int32)  # 4 fractional bits  # noqa: E731
    chans = [np.zeros((h, w), np.uint8) for _ in range(3)]
    cv2.fillPoly(chans[0], [cv2.convexHull(pts(FACE_OVAL))], 255, cv2.LINE_8, shift=4)
    cv2.fillPoly(chans[1], [pts(LIPS_OUTER)], 255, cv2.LINE_8, shift=4)
    cv2.fillPoly(chans[2], [pts(LIPS_INNER)], 255, cv2.LINE_8, shift=4)
    for c in range(3):
        out[..., c] = chans[c]
    return out
