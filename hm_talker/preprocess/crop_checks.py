"""Checks of the square crop boxes against each clip's video: how much of a crop lies outside the frame (repeated
edge pixels) or on the video's black bars (letterbox), with one warning per clip naming the way out."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hm_talker.preprocess.track import off_region_fraction, outside_fraction

log = logging.getLogger("hm_talker")


def per_clip_shares(clips, boxes: np.ndarray, clip_ids: np.ndarray, share, warn_above: float):
    """Per clip: (clip, largest share, frames over `warn_above`, frames), `share(clip, boxes)` -> [T] shares."""
    for cid, c in enumerate(clips):
        frac = share(c, boxes[clip_ids == cid])
        yield c, float(frac.max()) if frac.size else 0.0, int((frac > warn_above).sum()), len(frac)


def report_crop_outside(clips, boxes: np.ndarray, clip_ids: np.ndarray, warn_above: float,
                        crop_scale: float) -> list[float]:
    """Per clip, the largest share of a frame's crop box outside the video (filled with repeated edge pixels);
    one warning per clip where it exceeds `warn_above`, naming how to avoid it."""
    worst = []
    for c, top, over, n in per_clip_shares(clips, boxes, clip_ids, outside_share, warn_above):
        worst.append(top)
        if over:
            log.warning("%s: up to %.0f %% of the square crop lies outside the video on %d of %d frames; those "
                        "pixels repeat the frame's edge and show as streaks in every output. --set crop_inside=true "
                        "(the box moved inside the video), a smaller crop (--set crop_scale=..., now %g x the face) "
                        "or a shot with more room around the head avoids it",
                        Path(c.info.path).name, 100 * top, over, n, crop_scale)
    return worst


def outside_share(clip, boxes: np.ndarray) -> np.ndarray:
    return outside_fraction(boxes, clip.info.width, clip.info.height)


def bars_share(clip, boxes: np.ndarray) -> np.ndarray:
    """Share of each box inside the frame but outside its picture (on the black bars)."""
    return off_region_fraction(boxes, clip.picture) - outside_share(clip, boxes)


def report_crop_on_bars(clips, boxes: np.ndarray, clip_ids: np.ndarray, warn_above: float) -> list[float]:
    """Per clip, the largest share of a frame's crop box on the video's black bars (inside the frame, outside its
    picture: a black band in every output); one warning per clip where it exceeds `warn_above`, with the bars."""
    worst = []
    for c, top, over, n in per_clip_shares(clips, boxes, clip_ids, bars_share, warn_above):
        worst.append(top)
        if over:
            (x0, y0, x1, y1), w, h = c.picture, c.info.width, c.info.height
            log.warning("%s: the video has black bars (%d rows at the top, %d at the bottom, %d columns left, %d "
                        "right: a letterbox, or a backdrop that stays black) and up to %.0f %% of the square crop "
                        "lies on them on %d of %d frames: a black band in every output. --set crop_inside=true "
                        "keeps the box inside the picture; or cut the bars off first (ffmpeg -vf crop=%d:%d:%d:%d)",
                        Path(c.info.path).name, round(y0), round(h - y1), round(x0), round(w - x1), 100 * top,
                        over, n, int(x1 - x0) // 2 * 2, int(y1 - y0) // 2 * 2, round(x0), round(y0))
    return worst
