"""One face track over time: filling short landmark gaps and a temporally smooth square crop box."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d


def missing_runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """[(start, length)] of consecutive True runs."""
    runs, start = [], None
    for i, m in enumerate(list(missing) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def interpolate_gaps(lms: np.ndarray) -> np.ndarray:
    """[T, P, 3] landmarks with NaN rows for face-less frames -> linearly interpolated in time."""
    found = ~np.isnan(lms[:, 0, 0])
    if found.all():
        return lms
    t = np.arange(len(lms))
    flat = lms.reshape(len(lms), -1)
    out = np.empty_like(flat)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, t[found], flat[found, j])  # edges hold the nearest found frame
    return out.reshape(lms.shape)


def crop_boxes(lms: np.ndarray, scale: float, center_y: float, sigma: float,
               clip_ids: np.ndarray) -> np.ndarray:
    """[T, 478, 3] landmarks -> [T, 3] square boxes (cx, cy, side) in source pixels.

    The side is constant within a clip (median face size x `scale`) so the head keeps its size;
    the centre is smoothed over time so the crop does not shake with landmark noise.
    """
    boxes = np.zeros((len(lms), 3), dtype=np.float64)
    for c in np.unique(clip_ids):
        sel = clip_ids == c
        p = lms[sel]
        lo, hi = p[:, :, :2].min(1), p[:, :, :2].max(1)
        side = float(np.median((hi - lo).max(1))) * scale
        centre = (lo + hi) / 2 + np.array([0.0, center_y * side])
        if sigma > 0 and len(centre) > 1:
            centre = gaussian_filter1d(centre, sigma, axis=0, mode="nearest")
        boxes[sel, :2], boxes[sel, 2] = centre, side
    return boxes


def outside_fraction(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """[T] share of each square crop box ([T, 3]: cx, cy, side in source pixels) lying outside a width x height
    frame: :func:`crop_frame` fills it by repeating the frame's edge pixels (streaks in every output)."""
    return off_region_fraction(boxes, (0.0, 0.0, float(width), float(height)))


def off_region_fraction(boxes: np.ndarray, region) -> np.ndarray:
    """[T] share of each square crop box ([T, 3]: cx, cy, side) lying outside `region` (x0, y0, x1, y1)."""
    b = np.asarray(boxes, np.float64)
    x0, y0, x1, y1 = (float(v) for v in region)
    half = b[:, 2] / 2
    inside_w = np.clip(np.minimum(b[:, 0] + half, x1) - np.maximum(b[:, 0] - half, x0), 0, None)
    inside_h = np.clip(np.minimum(b[:, 1] + half, y1) - np.maximum(b[:, 1] - half, y0), 0, None)
    return np.clip(1.0 - inside_w * inside_h / np.maximum(b[:, 2] ** 2, 1e-12), 0.0, 1.0)  # no -1e-16 from rounding


def picture_region(row_max: np.ndarray, col_max: np.ndarray, level: int, width: int, height: int):
    """(x0, y0, x1, y1) in source pixels of a width x height video's picture: its frame less the border rows and
    columns whose brightest pixel (`row_max` [H'], `col_max` [W'] over every analysed frame, decoded at H' x W')
    stayed at or below `level` (letterbox / pillarbox bars). The whole frame when nothing is brighter than
    `level` (a dark video is not all bar)."""
    rows, cols = np.flatnonzero(np.asarray(row_max) > level), np.flatnonzero(np.asarray(col_max) > level)
    if rows.size == 0 or cols.size == 0:
        return 0.0, 0.0, float(width), float(height)
    sy, sx = height / len(row_max), width / len(col_max)
    return float(cols[0] * sx), float(rows[0] * sy), float((cols[-1] + 1) * sx), float((rows[-1] + 1) * sy)


def fit_into_region(boxes: np.ndarray, region) -> np.ndarray:
    """Square boxes ([T, 3]: cx, cy, side) moved the least distance that puts them inside `region` (x0, y0, x1, y1:
    the frame, or its picture without black bars), a side larger than the region's short side shrunk to it
    (preprocess --set crop_inside=true)."""
    x0, y0, x1, y1 = (float(v) for v in region)
    b = np.asarray(boxes, np.float64).copy()
    b[:, 2] = np.minimum(b[:, 2], min(x1 - x0, y1 - y0))
    half = b[:, 2] / 2
    b[:, 0] = np.clip(b[:, 0], x0 + half, x1 - half)
    b[:, 1] = np.clip(b[:, 1], y0 + half, y1 - half)
    return b


def crop_frame(frame: np.ndarray, box, size: int, decode_scale: float = 1.0) -> np.ndarray:
    """Cut the square `box` (source pixels) out of `frame` (decoded at `decode_scale`) at size x size.

    Parts of the box outside the frame repeat the border pixels instead of turning black.
    """
    import cv2

    cx, cy, side = (float(v) * decode_scale for v in box)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    patch = frame[y0:y0 + s, x0:x0 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def to_crop_coords(lms: np.ndarray, box, size: int) -> np.ndarray:
    """Landmarks [P, 3] in source pixels -> pixels of the size x size crop (z scaled like x)."""
    cx, cy, side = box
    s = size / side
    x0, y0 = round(cx - side / 2), round(cy - side / 2)  # same rounding as crop_frame at scale 1
    out = lms.astype(np.float64).copy()
    out[:, 0] = (out[:, 0] - x0) * s
    out[:, 1] = (out[:, 1] - y0) * s
    out[:, 2] = out[:, 2] * s
    return out.astype(np.float32)
