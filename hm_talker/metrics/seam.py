"""The seam: a line along the edge of the region where the head is rendered (the real frame outside it).

The head is composited into the real frame inside a region (``model.face_region``): where its Gaussians
leave that edge uncovered or draw it too dark, the jaw line shows a dark seam that the real frame does not
have. Its number, per frame, is the edge's *valley depth*: the mean luma (BT.601, 0-255) of the two
`RING_PX`-wide rings just inside and just outside the edge, minus the mean luma of the `RING_PX`-wide band
on the edge itself. A dark line on the edge makes it positive, a bright halo negative, a plain step from
one side to the other scores about 0. The real frame's own edge (a shadow under the jaw, a collar) has a
valley too, so ``seam`` is the generated frame's valley minus the real frame's at the same pixels,
averaged over frames:

    seam = mean_t [ valley(generated_t, region_t) - valley(real_t, region_t) ]   (luma levels; 0: none)

A line d levels darker than its surroundings covering the whole band scores d; one covering a quarter of
the edge's length scores about d / 4. It needs the region the renderer used, so it is scored where the
real frame behind the render is known (self-driven evaluation and validation).
"""
from __future__ import annotations

import numpy as np

RING_PX = 3  # width of the edge band and of each ring beside it, in pixels (at any resolution)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601 weights of R, G, B


def _grow(masks, r: int):  # [n, H, W] float tensor -> dilated by r pixels (square neighbourhood)
    import torch.nn.functional as F

    return F.max_pool2d(masks[:, None], 2 * r + 1, 1, r)[:, 0]


def edge_rings(region: np.ndarray, width: int = RING_PX):
    """Boolean [n, H, W] (band on the edge, ring inside, ring outside) of regions bool [n, H, W]."""
    import torch

    m = torch.as_tensor(np.asarray(region, dtype=np.float32))
    half = width // 2
    out_half, out_far = _grow(m, half), _grow(m, half + width)
    in_half, in_far = 1 - _grow(1 - m, half), 1 - _grow(1 - m, half + width)
    band = (out_half - in_half) > 0.5
    inner = (in_half - in_far) > 0.5
    outer = (out_far - out_half) > 0.5
    return band.numpy(), inner.numpy(), outer.numpy()


def edge_valley(frames: np.ndarray, rings) -> np.ndarray:
    """Valley depth [n] (luma levels) of uint8 frames [n, H, W, 3] along the edge given by `edge_rings`;
    NaN for a frame whose region has no edge (empty or the whole frame)."""
    luma = np.asarray(frames, dtype=np.float32) @ LUMA  # [n, H, W]
    band, inner, outer = rings

    def mean(sel):
        count = sel.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, (luma * sel).sum(axis=(1, 2)) / np.maximum(count, 1), np.nan)

    return (mean(inner) + mean(outer)) / 2 - mean(band)


class SeamStream:
    """``seam`` of a clip fed in chunks (generated, real, region): running sums only."""

    def __init__(self) -> None:
        self.total, self.frames = 0.0, 0

    def update(self, pred: np.ndarray, target: np.ndarray, region: np.ndarray) -> None:
        rings = edge_rings(region)
        excess = edge_valley(pred, rings) - edge_valley(target, rings)
        ok = np.isfinite(excess)
        self.total += float(excess[ok].sum())
        self.frames += int(ok.sum())

    def result(self) -> float | None:
        return self.total / self.frames if self.frames else None
