"""Pure-PyTorch tile rasteriser for 3D Gaussians (the CPU backend).

Same maths as the 3DGS / gsplat CUDA kernels: per pixel, in front-to-back order of
camera depth, ``alpha = min(alpha_max, o * exp(-0.5 d^T Sigma^-1 d))``; splats with
``alpha < alpha_min`` are skipped; the pixel stops (exclusively) at the first splat
that would bring its transmittance ``T`` to ``<= transmittance_min``; colour is
``sum c_i alpha_i T_i + T_final * background``.

How the work is organised (and what it costs):

1. ``project_gaussians``: O(C*N) autograd maths.
2. Binning (no grad): each Gaussian is paired with the tiles (8x8 px by default)
   its opacity-aware box touches; pairs whose tile misses the alpha >= alpha_min
   ellipse are dropped (exact min of the quadratic over the tile); pairs are sorted
   by tile then depth.  O(P log P), P = number of pairs.
3. Per pair, log-alpha over the tile is a quadratic in the pixel offset:
   ``log(o) - sigma = coeffs . [1, u, v, u^2, uv, v^2]``, so a block of
   (tile, splat) pairs is evaluated with one matmul.
4. ``_CompositeTiles`` composites [tiles, tile px, k] blocks, k splats per tile at a
   time, carrying T from block to block and dropping tiles whose splat list is
   exhausted or whose pixels are all saturated (T <= transmittance_min).  A block
   holds at most ``chunk_elems`` elements (cache-sized), never [N, H*W].  Backward
   walks the blocks back to front with the analytic 3DGS gradient, either reusing
   two saved [tiles, px, k] tensors per block (8 bytes per element, the default)
   or recomputing them (``save_blocks=False``: ~20 % slower, memory ~ pairs * px / k).

Per element the work is ~11 tensor passes forward and ~10 backward; tiles of
8x8 px waste fewer of them on pixels a splat does not reach than 16x16 (about
2/3 of the (pair, pixel) elements of a 16 px tile have alpha = 0 for small splats).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .projection import Projected, camera_centers, project_gaussians
from .sh import sh_to_color

_EMPTY_LOGALPHA = -1.0e4  # log-alpha of padding slots: exp() is exactly 0
_CULL_MARGIN = 1.0e-3  # slack (in log-alpha) of the exact tile test, so rounding never drops a splat


@dataclass
class TileBins:
    """(tile, Gaussian) pairs of a frame batch, sorted by tile then depth."""

    pair_gid: Tensor  # [P] flat camera*N + gaussian index of each pair
    pair_tile: Tensor  # [P] global tile id: camera*tiles_y*tiles_x + row*tiles_x + col
    tile_ids: Tensor  # [T] non-empty tile ids, by decreasing pair count
    tile_start: Tensor  # [T] index of each tile's first pair
    tile_count: Tensor  # [T] number of pairs of each tile
    tiles_x: int
    tiles_y: int


def _min_quadratic_over_box(
    a: Tensor, b: Tensor, c: Tensor,  # [P] conic entries
    x0: Tensor, x1: Tensor, y0: Tensor, y1: Tensor,  # [P] box of offsets d = pixel - mean
) -> Tensor:  # [P] min of 0.5*(a dx^2 + 2b dx dy + c dy^2) over the box
    """Exact minimum of the (convex) Gaussian exponent over an axis-aligned box.

    If the centre lies in the box the minimum is 0; otherwise it is on an edge, where
    the exponent is a 1D parabola minimised at a clamped stationary point.
    """
    def q(dx, dy):
        return 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy

    cands = []
    for xe in (x0, x1):
        cands.append(q(xe, torch.minimum(torch.maximum(-b * xe / c, y0), y1)))
    for ye in (y0, y1):
        cands.append(q(torch.minimum(torch.maximum(-b * ye / a, x0), x1), ye))
    best = torch.stack(cands).amin(0)
    inside = (x0 <= 0) & (x1 >= 0) & (y0 <= 0) & (y1 >= 0)
    return torch.where(inside, torch.zeros_like(best), best)


@torch.no_grad()
def bin_tiles(
    proj: Projected,
    opacities: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = 16,
    alpha_min: float = 1.0 / 255.0,
    exact_cull: bool = True,
) -> TileBins:
    """List the (tile, Gaussian) pairs that can contribute, sorted by tile then depth.

    Cost: O(P log P) for one sort, P = number of pairs (a few per visible Gaussian).
    Per-pair arithmetic is done in floating point (small exact integers): integer
    division and boolean-mask indexing are several times slower on CPU.
    """
    C, N = proj.valid.shape
    dev = proj.means2d.device
    ts = tile_size
    tiles_x, tiles_y = math.ceil(width / ts), math.ceil(height / ts)
    gid = proj.valid.reshape(-1).nonzero().squeeze(1)  # [V]
    V = gid.numel()
    m = proj.means2d.detach().reshape(-1, 2).index_select(0, gid)
    r = proj.radii.reshape(-1, 2).index_select(0, gid).to(m.dtype)
    size = torch.tensor([width, height], device=dev, dtype=m.dtype)
    # Pixels whose centre (i + 0.5) lies inside the box [m - r, m + r], then their tiles.
    lo = torch.ceil(m - r - 0.5)
    hi = torch.floor(m + r - 0.5)
    nonempty = ((hi >= lo) & (hi >= 0) & (lo < size)).all(-1)
    t0 = torch.floor(torch.minimum(torch.clamp_min(lo, 0), size - 1) / ts)  # [V, 2] first tile (x, y)
    t1 = torch.floor(torch.minimum(torch.clamp_min(hi, 0), size - 1) / ts)
    nt = t1 - t0 + 1
    n = (nt[:, 0] * nt[:, 1]).long() * nonempty
    owner = torch.repeat_interleave(torch.arange(V, device=dev), n)  # [P] index into gid
    P = owner.numel()
    local = (torch.arange(P, device=dev) - (torch.cumsum(n, 0) - n).index_select(0, owner)).to(m.dtype)
    # One gather of everything per-Gaussian the pairs need: tile origin, tile-grid width, ...
    per_g = [t0, nt[:, :1]]
    if exact_cull:
        con = proj.conics.detach().reshape(-1, 3).index_select(0, gid)
        logo = torch.log(opacities.reshape(-1).index_select(0, gid))[:, None]
        per_g += [m, con, logo]
    pg = torch.cat(per_g, dim=1).t().index_select(1, owner)  # [3 (+6), P], contiguous rows
    ty = torch.floor((local + 0.5) / pg[2])
    tx = pg[0] + (local - ty * pg[2])
    ty = ty + pg[1]

    if exact_cull and P > 0:
        mx, my, a, b, c, lg = pg[3:]
        x0 = tx * ts + 0.5 - mx
        x1 = torch.clamp_max(tx * ts + ts, width) - 0.5 - mx
        y0 = ty * ts + 0.5 - my
        y1 = torch.clamp_max(ty * ts + ts, height) - 0.5 - my
        qmin = _min_quadratic_over_box(a, b, c, x0, x1, y0, y1)
        keep = (lg - qmin >= math.log(alpha_min) - _CULL_MARGIN).nonzero().squeeze(1)
        owner, tx, ty = owner.index_select(0, keep), tx.index_select(0, keep), ty.index_select(0, keep)

    pgid = gid.index_select(0, owner)
    tile = (pgid // N) * (tiles_x * tiles_y) + ty.long() * tiles_x + tx.long()
    depth_rank = torch.empty(V, dtype=torch.long, device=dev)
    depth_rank[torch.argsort(proj.depths.detach().reshape(-1).index_select(0, gid))] = torch.arange(V, device=dev)
    order = torch.argsort(tile * max(V, 1) + depth_rank.index_select(0, owner))
    pair_gid, pair_tile = pgid.index_select(0, order), tile.index_select(0, order)

    counts = torch.bincount(pair_tile, minlength=C * tiles_x * tiles_y)
    starts = torch.cumsum(counts, 0) - counts
    tile_ids = torch.argsort(counts, descending=True, stable=True)
    tile_ids = tile_ids[: int((counts > 0).sum())]
    return TileBins(pair_gid, pair_tile, tile_ids, starts[tile_ids], counts[tile_ids], tiles_x, tiles_y)


def pixel_features(tile_size: int, dtype: torch.dtype, device) -> Tensor:  # [ts*ts, 6]
    """Monomials [1, u, v, u^2, uv, v^2] of each pixel's offset from its tile centre (row-major)."""
    off = torch.arange(tile_size, dtype=dtype, device=device) - (tile_size - 1) / 2.0
    v, u = torch.meshgrid(off, off, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v], dim=-1)


def pair_coefficients(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    opacities: Tensor,  # [C, N]
    bins: TileBins,
    tile_size: int,
) -> Tensor:  # [P, 6]
    """Coefficients of log-alpha over each pair's tile, expanded around the tile centre.

    ``log(o) - 0.5 (d^T Sigma^-1 d)`` with ``d = centre + (u, v) - mean`` is a quadratic
    in (u, v); expanding around the centre keeps float32 cancellation small.
    """
    g = bins.pair_gid
    mx, my = means2d.reshape(-1, 2).t().index_select(1, g)  # contiguous [P] rows
    a, b, c = conics.reshape(-1, 3).t().index_select(1, g)
    log_o = torch.log(opacities.reshape(-1).index_select(0, g))
    local = bins.pair_tile % (bins.tiles_x * bins.tiles_y)
    half = tile_size / 2.0
    ox = (local % bins.tiles_x).to(mx.dtype) * tile_size + half - mx
    oy = (local // bins.tiles_x).to(mx.dtype) * tile_size + half - my
    return torch.stack(
        [
            log_o - (0.5 * a * ox * ox + b * ox * oy + 0.5 * c * oy * oy),
            -(a * ox + b * oy),
            -(b * ox + c * oy),
            -0.5 * a,
            -b,
            -0.5 * c,
        ],
        dim=-1,
    )


@dataclass(frozen=True)
class _CompositeOpts:
    alpha_min: float
    alpha_max: float
    t_min: float
    k_chunk: int
    chunk_elems: int
    may_clamp: bool  # some opacity exceeds alpha_max, so the clamp's zero derivative must be applied
    save_blocks: bool  # keep 8 bytes per (pair, pixel) for backward instead of recomputing the block


def _chunk_index(start: Tensor, count: Tensor, act: slice | Tensor, k0: int, kc: int, dummy: int) -> Tensor:
    """[A, kc] pair indices of splats k0..k0+kc of the active tiles (``dummy`` past the end).

    ``act`` (the active tiles) is a slice while they are a contiguous run, which keeps
    every per-block gather / scatter of per-tile data a cheap view; an index tensor after that.
    """
    k = torch.arange(k0, k0 + kc, device=start.device)
    idx = start[act].unsqueeze(1) + k
    return torch.where(k < count[act].unsqueeze(1), idx, torch.full_like(idx, dummy))


def _block(coeffs: Tensor, feats: Tensor, t_start: Tensor, o: _CompositeOpts):
    """Composite one block of splats; returns (r, T_next, w), each [A, px, k].

    ``alpha``: log-alpha is clamped to [-30, log(alpha_max)] before exp(), because exp
    of very negative inputs (padding uses -1e4) leaves the vectorised fast path or
    yields denormals, 20-200x slower per element on x86; the threshold after it makes
    skipped splats exactly 0.  ``T_next`` is the transmittance after each splat,
    zeroed once it drops to <= t_min: since T only decreases this also terminates the
    pixel for later blocks.  ``r = alpha / (1 - alpha)`` gives ``w = alpha * T = r * T_next``,
    which is exactly 0 for a terminated splat, and is the factor the gradient needs.
    """
    ell = torch.matmul(feats, coeffs.transpose(1, 2))
    alpha = F.threshold_(ell.clamp_(-30.0, math.log(o.alpha_max)).exp_(), o.alpha_min, 0.0)
    om = torch.sub(1.0, alpha)
    t_next = torch.cumprod(om, dim=-1).mul_(t_start)
    F.threshold_(t_next, o.t_min, 0.0)
    r = alpha.div_(om)
    return r, t_next, r * t_next


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back compositing of sorted splat lists per tile, with a hand-written backward.

    Inputs: pair coefficients [P, 6], pair values [P, D] (colour channels + depth),
    tile_start/tile_count [T] (tiles ordered by decreasing count), pixel features
    [px, 6].  Output: per tile and pixel, ``sum_i w_i [v_i, 1]`` -> [T, px, D + 1]
    (the last channel is the accumulated alpha, 1 - T_final).
    """

    @staticmethod
    def forward(ctx, coeffs, vals, tile_start, tile_count, feats, opts: _CompositeOpts):
        P, D = vals.shape
        n_tiles, npx = tile_start.numel(), feats.shape[0]
        co = torch.cat([coeffs, coeffs.new_tensor([[_EMPTY_LOGALPHA, 0, 0, 0, 0, 0]])])
        va = torch.cat([torch.cat([vals, vals.new_ones(P, 1)], 1), vals.new_zeros(1, D + 1)])
        acc = vals.new_zeros(n_tiles, npx, D + 1)
        counts = tile_count.tolist()
        records = []  # per block: active tiles, k0, k, T at block start (+ r, T_next if saved)
        b0 = 0
        while b0 < n_tiles:
            kc = max(1, min(opts.k_chunk, counts[b0]))  # tiles come by decreasing count
            nb = max(1, opts.chunk_elems // (kc * npx))
            act = slice(b0, min(b0 + nb, n_tiles))
            left = counts[act]  # splat counts of the active tiles (python ints: no sync)
            b0 += nb
            t_run = vals.new_ones(len(left), npx, 1)
            k0 = 0
            while left:
                kb = max(1, min(kc, max(left) - k0))  # no block longer than the longest list left
                idx = _chunk_index(tile_start, tile_count, act, k0, kb, P)
                r, t_next, w = _block(co[idx], feats, t_run, opts)
                acc[act] += torch.bmm(w, va[idx])
                records.append((act, k0, kb, t_run) + ((r, t_next) if opts.save_blocks else ()))
                k0 += kb
                t_run = t_next[..., -1:]
                # A tile goes on while it has splats left and some pixel is not saturated.
                live = [c > k0 for c in left]
                if any(live):
                    sat = (t_run.amax(dim=(1, 2)) > 0).tolist()
                    live = [a and b for a, b in zip(live, sat)]
                if not all(live):
                    n_live = sum(live)
                    if isinstance(act, slice) and all(live[:n_live]):  # still a contiguous run
                        act, t_run = slice(act.start, act.start + n_live), t_run[:n_live]
                    else:
                        keep = torch.tensor(live, device=co.device)
                        if isinstance(act, slice):
                            act = torch.arange(act.start, act.stop, device=co.device)
                        act, t_run = act[keep], t_run[keep]
                    left = [c for c, a in zip(left, live) if a]
        ctx.save_for_backward(co, va, tile_start, tile_count, feats)
        ctx.records, ctx.opts, ctx.P, ctx.D = records, opts, P, D
        return acc

    @staticmethod
    def backward(ctx, g_acc):
        co, va, tile_start, tile_count, feats = ctx.saved_tensors
        o, P, D = ctx.opts, ctx.P, ctx.D
        g_acc = g_acc.contiguous()
        g_co = torch.zeros_like(co)
        g_va = torch.zeros_like(va) if ctx.needs_input_grad[1] else None
        if o.may_clamp:  # clamped entries share r* = a*/(1-a*); anything within a few ulps counts as clamped
            a_star = float(torch.tensor(math.log(o.alpha_max), dtype=co.dtype).exp())
            r_th = a_star / (1.0 - a_star) * (1.0 - 64.0 * torch.finfo(co.dtype).eps)
        # R: per tile and pixel, sum of w_j * s_j over all blocks behind the current one.
        R = g_acc.new_zeros(g_acc.shape[0], g_acc.shape[1], 1)
        for rec in reversed(ctx.records):
            act, k0, kc, t_start = rec[:4]
            idx = _chunk_index(tile_start, tile_count, act, k0, kc, P)
            v = va[idx]
            if o.save_blocks:
                r, t_next = rec[4:]
                w = r * t_next
            else:
                r, t_next, w = _block(co[idx], feats, t_start, o)
            gb = g_acc[act]
            s = torch.bmm(gb, v.transpose(1, 2))  # [A, px, k] dL/dw
            if g_va is not None:
                g_va[idx] = torch.bmm(w.transpose(1, 2), gb)
            cs = torch.cumsum(w.mul_(s), dim=-1)  # w is a fresh tensor in both modes
            r_after = R[act]
            total = cs[..., -1:]
            if o.may_clamp:  # d alpha / d log-alpha is 0 where alpha was clamped (out of place: r may be saved)
                r = r - F.threshold(r, r_th, 0.0)
            # dL/dlog(alpha_i) = alpha_i * (T_i s_i - sum_{j>i} w_j s_j / (1 - alpha_i))
            #                  = r_i * (T_next_i s_i - sum_{j>i} w_j s_j)
            suffix = torch.sub(total, cs).add_(r_after)
            g_ell = s.mul_(t_next).sub_(suffix).mul_(r)
            g_co[idx] = torch.matmul(g_ell.transpose(1, 2), feats)
            R[act] = r_after + total
        g_vals = None if g_va is None else g_va[:P, :D]
        return g_co[:P], g_vals, None, None, None, None


def composite_tiles(
    coeffs: Tensor,  # [P, 6]
    vals: Tensor,  # [P, D]
    bins: TileBins,
    tile_size: int,
    alpha_min: float,
    alpha_max: float,
    transmittance_min: float,
    k_chunk: int,
    chunk_elems: int,
    may_clamp: bool = True,  # False only if no opacity exceeds alpha_max (skips one pass in backward)
    save_blocks: bool = True,  # backward reuses 8 bytes per (pair, tile pixel) instead of recomputing
) -> Tensor:  # [T, tile_size^2, D + 1] for bins.tile_ids
    feats = pixel_features(tile_size, coeffs.dtype, coeffs.device)
    opts = _CompositeOpts(alpha_min, alpha_max, transmittance_min, k_chunk, chunk_elems, may_clamp, save_blocks)
    return _CompositeTiles.apply(coeffs, vals, bins.tile_start, bins.tile_count, feats, opts)


def _expand_colors(colors: Tensor, C: int, N: int) -> Tensor:  # -> [C, N, D]
    if colors.dim() == 2:
        return colors.unsqueeze(0).expand(C, N, colors.shape[-1])
    return colors


def rasterize_torch(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3] activated
    opacities: Tensor,  # [N] or [C, N] activated
    colors: Tensor,  # [(C,) N, D] features, or [(C,) N, K, 3] SH coefficients if sh_degree is set
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [C, D] or [D]
    tile_size: int = 8,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    alpha_min: float = 1.0 / 255.0,
    alpha_max: float = 0.99,
    transmittance_min: float = 1e-4,
    k_chunk: int = 32,
    chunk_elems: int = 1 << 17,
    save_blocks: bool = True,
    exact_cull: bool = True,
):
    """Render C views; returns colours [C, H, W, D], alphas [C, H, W, 1], expected depths [C, H, W, 1], meta.

    See :func:`hm_talker.render.rasterize` for the meaning of the outputs; this is the
    backend it uses for CPU tensors (it also runs on CUDA tensors, mainly for tests).
    """
    C, N = viewmats.shape[0], means.shape[0]
    opac = opacities.expand(C, N) if opacities.dim() == 1 else opacities
    proj = project_gaussians(
        means, quats, scales, opac, viewmats, Ks, width, height, near_plane, far_plane, eps2d, alpha_min
    )
    means2d = proj.means2d
    if means2d.requires_grad:
        means2d.retain_grad()  # screen-space gradients drive densification

    if sh_degree is not None:
        dirs = means[None, :, :] - camera_centers(viewmats)[:, None, :]  # [C, N, 3]
        shs = colors if colors.dim() == 4 else colors.unsqueeze(0).expand(C, *colors.shape)
        feat = sh_to_color(sh_degree, shs, dirs)  # [C, N, 3]
    else:
        feat = _expand_colors(colors, C, N)
    D = feat.shape[-1]

    bins = bin_tiles(proj, opac, width, height, tile_size, alpha_min, exact_cull)
    coeffs = pair_coefficients(means2d, proj.conics, opac, bins, tile_size)
    g = bins.pair_gid
    vals = torch.cat([feat.reshape(-1, D)[g], proj.depths.reshape(-1, 1)[g]], dim=-1)  # [P, D + 1]
    acc = composite_tiles(
        coeffs, vals, bins, tile_size, alpha_min, alpha_max, transmittance_min, k_chunk, chunk_elems,
        may_clamp=bool(opac.max() > alpha_max) if opac.numel() else False, save_blocks=save_blocks,
    )  # [T, ts*ts, D + 2]

    ts = tile_size
    full = acc.new_zeros(C * bins.tiles_y * bins.tiles_x, ts * ts, D + 2).index_copy(0, bins.tile_ids, acc)
    img = (
        full.view(C, bins.tiles_y, bins.tiles_x, ts, ts, D + 2)
        .permute(0, 1, 3, 2, 4, 5)
        .reshape(C, bins.tiles_y * ts, bins.tiles_x * ts, D + 2)[:, :height, :width]
    )
    alphas = img[..., D + 1 :]
    out = img[..., :D]
    if backgrounds is not None:
        bg = backgrounds.expand(C, D) if backgrounds.dim() == 1 else backgrounds
        out = out + (1.0 - alphas) * bg[:, None, None, :]
    depths = img[..., D : D + 1] / alphas.clamp_min(1e-10)

    meta = {
        "means2d": means2d,  # [C, N, 2]; .grad after backward
        "radii": proj.radii.amax(dim=-1),  # [C, N] int32, 0 = culled
        "radii_xy": proj.radii,  # [C, N, 2]
        "depths": proj.depths,  # [C, N]
        "conics": proj.conics,  # [C, N, 3]
        "width": width,
        "height": height,
        "n_cameras": C,
        "tile_size": tile_size,
        "n_pairs": int(bins.pair_gid.numel()),
        "backend": "torch",
    }
    return out, alphas, depths, meta
