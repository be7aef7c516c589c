"""Multi-resolution hash encoding (Instant-NGP style) in pure PyTorch, and its tri-plane use.

A ``HashGrid2D`` stores, for each of L levels, a table of feature vectors addressed by the
integer vertices of a square grid whose resolution grows geometrically from a base to a max
resolution. A query point is located in its cell on every level, the four cell-corner entries
are gathered and bilinearly blended, and the L per-level features are concatenated.

Levels whose dense grid fits in the table size T are indexed densely (one entry per vertex,
no collisions, and the table is only as large as the grid); finer levels are addressed by a
spatial hash of the vertex coordinates into T entries, so memory stays bounded and gradient
descent resolves collisions (the table entries of the important regions win).

All levels are evaluated in one batched pass (no Python loop over levels) so that 10k-50k
points per call stay cheap on a CPU.

``TriPlaneHashEncoding`` factorises 3D into three 2D grids on the xy, yz and xz planes (as
ER-NeRF / TalkingGaussian do): far smaller than a 3D grid at the same resolution, and it
generalises better for the sparse, surface-like point sets of a head.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hm_talker.model.config import HashGridConfig

# Large prime for the second coordinate of the spatial hash (Instant-NGP's choice); the first
# coordinate is multiplied by 1, which keeps neighbouring x in neighbouring slots (cache-friendly)
# while the XOR with the scrambled y spreads rows over the table.
HASH_PRIME_Y = 2654435761

# The hash is reduced modulo T = 2^k, and (a * b) mod 2^k == (a * (b mod 2^k)) mod 2^k, so the
# prime can be reduced modulo T first: products then fit in int32, which is several times
# faster than int64 on CPU and gives the same slots (int64 is kept only for grids so large that
# vertex * reduced-prime could overflow int32).
_INT32_LIMIT = 2**31

# Bilinear corner order used throughout: (0,0), (1,0), (0,1), (1,1) offsets in (x, y).
_CORNER_DX = (0, 1, 0, 1)
_CORNER_DY = (0, 0, 1, 1)


def level_resolutions(num_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """Cells per side of every level: geometric growth from base to max (inclusive)."""
    if num_levels < 1:
        raise ValueError("num_levels must be >= 1")
    if base_resolution < 1 or max_resolution < base_resolution:
        raise ValueError("need 1 <= base_resolution <= max_resolution")
    if num_levels == 1:
        return [base_resolution]
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))
    # round() rather than floor() so the last level hits max_resolution despite float error
    return [int(round(base_resolution * growth**level)) for level in range(num_levels)]


class _GatherRows(torch.autograd.Function):
    """``table[idx]`` whose backward is a plain ``index_add_``.

    Autograd's default for row gathers (``embedding_dense_backward``) is ~10x slower on CPU
    than a direct index_add for the millions of (level, point, corner) lookups made here.
    """

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor) -> Tensor:  # table [T, F], idx [M] -> [M, F]
        ctx.save_for_backward(idx)
        ctx.num_rows = table.shape[0]
        return table.index_select(0, idx)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # grad_out [M, F]
        (idx,) = ctx.saved_tensors
        grad_table = None
        if ctx.needs_input_grad[0]:
            num_feats = grad_out.shape[1]
            grad_table = grad_out.new_zeros(ctx.num_rows * num_feats)
            # Scatter into a flat buffer (one row per feature channel): index_add on 1-D is the
            # fastest CPU path, so feature f of row r goes to r * F + f.
            flat_idx = (idx.long().unsqueeze(1) * num_feats + torch.arange(num_feats, device=idx.device)).view(-1)
            grad_table.index_add_(0, flat_idx, grad_out.reshape(-1))
            grad_table = grad_table.view(ctx.num_rows, num_feats)
        return grad_table, None


class HashGrid2D(nn.Module):
    """2D multi-resolution hash grid: points [N, 2] in [0, 1]^2 -> features [N, L * F].

    Vertex (i, j) of level l (0 <= i, j <= R_l) sits at (i / R_l, j / R_l), so the grid spans
    the unit square exactly (corners aligned). Inputs outside [0, 1] are clamped to the border.
    """

    def __init__(
        self,
        num_levels: int,
        log2_table_size: int,
        features_per_level: int,
        base_resolution: int,
        max_resolution: int,
        init_range: float,
    ) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.table_size = 2**log2_table_size
        self.resolutions = level_resolutions(num_levels, base_resolution, max_resolution)

        # Per-level table sizes; a dense level needs (R + 1)^2 vertices.
        self.dense = [(r + 1) ** 2 <= self.table_size for r in self.resolutions]
        self.level_sizes = [(r + 1) ** 2 if d else self.table_size for r, d in zip(self.resolutions, self.dense)]
        offsets = [0]
        for size in self.level_sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.level_offsets = offsets

        # One flat parameter for all levels: a single gather per forward instead of L.
        self.table = nn.Parameter(torch.empty(sum(self.level_sizes), features_per_level))
        self.init_range = init_range
        self.reset_parameters()

        self.hash_prime_y = HASH_PRIME_Y % self.table_size  # see _INT32_LIMIT
        largest_index = max((max(self.resolutions) + 1) * self.table_size, sum(self.level_sizes))
        self.index_dtype = torch.int32 if largest_index < _INT32_LIMIT else torch.int64

        # Broadcast-ready per-level constants [L, 1, 1]; not persistent (derived from config).
        def as_lvl(values: list, dtype: torch.dtype) -> Tensor:  # [L, 1, 1]
            return torch.tensor(values, dtype=dtype).view(-1, 1, 1)

        self.register_buffer("_res_f", as_lvl(self.resolutions, torch.float32), persistent=False)
        self.register_buffer("_res_i", as_lvl(self.resolutions, self.index_dtype), persistent=False)
        self.register_buffer("_dense", as_lvl(self.dense, torch.bool), persistent=False)
        self.register_buffer("_offset", as_lvl(self.level_offsets, self.index_dtype), persistent=False)
        self.register_buffer("_corner_dx", torch.tensor(_CORNER_DX, dtype=self.index_dtype), persistent=False)
        self.register_buffer("_corner_dy", torch.tensor(_CORNER_DY, dtype=self.index_dtype), persistent=False)

    @classmethod
    def from_config(cls, cfg: HashGridConfig) -> "HashGrid2D":
        return cls(
            num_levels=cfg.num_levels,
            log2_table_size=cfg.log2_table_size,
            features_per_level=cfg.features_per_level,
            base_resolution=cfg.base_resolution,
            max_resolution=cfg.max_resolution,
            init_range=cfg.init_range,
        )

    def reset_parameters(self) -> None:
        # Tiny uniform init (Instant-NGP): features start near zero so the MLP sees an almost
        # constant input, yet every entry is distinct so gradients break symmetry at once.
        with torch.no_grad():
            self.table.uniform_(-self.init_range, self.init_range)

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def level_table(self, level: int) -> Tensor:  # [size_l, F]
        """View of one level's table (dense levels: row index = i + j * (R_l + 1))."""
        start = self.level_offsets[level]
        return self.table[start : start + self.level_sizes[level]]

    def vertex_indices(
        self,
        cx: Tensor,  # [L, N, 4] integer x vertex coordinates
        cy: Tensor,  # [L, N, 4] integer y vertex coordinates
    ) -> Tensor:  # [L, N, 4] rows of the flat table
        dense_idx = cx + cy * (self._res_i + 1)
        hashed_idx = (cx ^ (cy * self.hash_prime_y)) & (self.table_size - 1)
        return torch.where(self._dense, dense_idx, hashed_idx) + self._offset

    def forward(
        self,
        uv: Tensor,  # [N, 2] coordinates in [0, 1]^2 (clamped if outside)
    ) -> Tensor:  # [N, L * F]
        n = uv.shape[0]
        # Cell location in float32 whatever the table dtype: half precision cannot resolve
        # cells at resolution 512 (its spacing near 1.0 is ~1e-3).
        uv = uv.float().clamp(0.0, 1.0)
        pos = uv.unsqueeze(0) * self._res_f.float()  # [L, N, 2] in cell units
        # Clamp the cell index to R - 1 so a point exactly on the far border uses the last cell
        # with fraction 1 instead of reading a vertex past the grid.
        cell = pos.detach().floor().clamp(max=self._res_f - 1)  # [L, N, 2]
        frac = pos - cell  # [L, N, 2], differentiable w.r.t. uv
        cell = cell.to(self.index_dtype)

        cx = cell[..., 0:1] + self._corner_dx  # [L, N, 4]
        cy = cell[..., 1:2] + self._corner_dy  # [L, N, 4]
        idx = self.vertex_indices(cx, cy)  # [L, N, 4]

        fx, fy = frac[..., 0:1], frac[..., 1:2]  # [L, N, 1]
        wx = torch.where(self._corner_dx.bool(), fx, 1.0 - fx)  # [L, N, 4]
        wy = torch.where(self._corner_dy.bool(), fy, 1.0 - fy)  # [L, N, 4]
        weights = (wx * wy).to(self.table.dtype)  # [L, N, 4], bilinear, sums to 1

        corner_feats = _GatherRows.apply(self.table, idx.reshape(-1))  # [L * N * 4, F]
        corner_feats = corner_feats.view(*idx.shape, self.features_per_level)  # [L, N, 4, F]
        feats = torch.einsum("lnc,lncf->nlf", weights, corner_feats)  # [N, L, F]
        return feats.reshape(n, self.output_dim)


class TriPlaneHashEncoding(nn.Module):
    """3D points [N, 3] -> concat of xy, yz, xz hash-grid features [N, 3 * L * F].

    Points are normalised to [0, 1]^3 by an axis-aligned box kept as a (persistent) buffer so
    that a box fitted to a subject's point cloud is saved with the checkpoint.
    """

    # (first, second) coordinate of each plane; the order fixes the output channel layout.
    PLANES: tuple[tuple[int, int], ...] = ((0, 1), (1, 2), (0, 2))  # xy, yz, xz

    def __init__(
        self,
        grid_cfg: HashGridConfig,
        aabb_min: list[float],  # [3]
        aabb_max: list[float],  # [3]
    ) -> None:
        super().__init__()
        self.grids = nn.ModuleList(HashGrid2D.from_config(grid_cfg) for _ in self.PLANES)
        aabb = torch.tensor([list(aabb_min), list(aabb_max)], dtype=torch.float32)  # [2, 3]
        self._check_aabb(aabb)
        self.register_buffer("aabb", aabb)

    @staticmethod
    def _check_aabb(aabb: Tensor) -> None:
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"aabb must be [[min x,y,z], [max x,y,z]] with max > min, got {aabb.tolist()}")

    @property
    def output_dim(self) -> int:
        return sum(g.output_dim for g in self.grids)

    @torch.no_grad()
    def fit_aabb(
        self,
        points: Tensor,  # [N, 3]
        margin: float,
    ) -> None:
        """Set the box to the points' bounds padded by ``margin`` x extent on each side."""
        lo, hi = points.amin(0), points.amax(0)
        extent = hi - lo
        # A flat (or single-point) set has a zero extent on some axis; borrow the largest extent
        # (or 1) there so the box stays non-degenerate.
        largest = float(extent.max()) if float(extent.max()) > 0 else 1.0
        extent = torch.where(extent > 0, extent, torch.full_like(extent, largest))
        pad = extent * margin
        lo, hi = torch.where(hi > lo, lo, lo - extent / 2), torch.where(hi > lo, hi, hi + extent / 2)
        aabb = torch.stack([lo - pad, hi + pad]).to(self.aabb)
        self._check_aabb(aabb)
        self.aabb.copy_(aabb)

    def normalize(
        self,
        points: Tensor,  # [N, 3]
    ) -> Tensor:  # [N, 3] in [0, 1]^3 for points inside the box
        return (points - self.aabb[0]) / (self.aabb[1] - self.aabb[0])

    def forward(
        self,
        points: Tensor,  # [N, 3] in the box's coordinate frame
    ) -> Tensor:  # [N, 3 * L * F]
        unit = self.normalize(points)
        feats = [grid(unit[:, list(axes)]) for grid, axes in zip(self.grids, self.PLANES)]
        return torch.cat(feats, dim=-1)
