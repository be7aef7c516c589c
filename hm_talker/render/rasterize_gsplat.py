"""CUDA backend: a thin wrapper around ``gsplat.rasterization`` with our output layout.

Only imported when CUDA tensors are rendered.  gsplat hard-codes the per-pixel
constants (alpha <= 0.999, alpha >= 1/255, stop at T <= 1e-4), so
``RenderConfig.alpha_max`` etc. do not apply here; set ``alpha_max=0.999`` on the
torch backend to match it exactly.
"""
from __future__ import annotations

from torch import Tensor


def rasterize_gsplat(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3] activated
    opacities: Tensor,  # [N] or [C, N] activated
    colors: Tensor,  # [(C,) N, D] or [(C,) N, K, 3] SH coefficients if sh_degree is set
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [C, D] or [D]
    tile_size: int = 16,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
):
    """Same contract as :func:`hm_talker.render.rasterize_torch.rasterize_torch`."""
    from gsplat import rasterization

    C = viewmats.shape[0]
    if backgrounds is not None and backgrounds.dim() == 1:
        backgrounds = backgrounds.expand(C, backgrounds.shape[0])
    render, alphas, info = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
        packed=False,  # keeps means2d / radii as dense [C, N, ...] like the torch backend
        tile_size=tile_size, backgrounds=backgrounds, render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    means2d = info["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = info["radii"]
    radii_xy = radii if radii.dim() == 3 else radii[..., None].expand(*radii.shape, 2)
    meta = {
        "means2d": means2d,  # [C, N, 2]
        "radii": radii_xy.amax(dim=-1).int(),  # [C, N]
        "radii_xy": radii_xy.int(),  # [C, N, 2]
        "depths": info["depths"],  # [C, N]
        "conics": info["conics"],  # [C, N, 3]
        "width": width,
        "height": height,
        "n_cameras": C,
        "tile_size": tile_size,
        "n_pairs": int(info["flatten_ids"].numel()) if "flatten_ids" in info else -1,
        "backend": "gsplat",
    }
    return render[..., :-1], alphas, render[..., -1:], meta


def rasterize_gsplat_frames(
    means: Tensor,  # [B, N, 3] one deformed set of Gaussians per frame
    quats: Tensor,  # [B, N, 4]
    scales: Tensor,  # [B, N, 3] activated
    opacities: Tensor,  # [N] activated, shared by the frames
    colors: Tensor,  # [N, K, 3] SH coefficients (or [N, D]), shared by the frames
    viewmats: Tensor,  # [B, 4, 4] one camera per frame
    Ks: Tensor,  # [B, 3, 3]
    width: int,
    height: int,
    sh_degree: int | None = None,
    tile_size: int = 16,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
):
    """B frames in one gsplat call (its batch dimensions: B Gaussian sets x 1 camera each).

    Returns rgb [B, H, W, D], alpha [B, H, W, 1] and ONE meta whose ``means2d`` is [B, N, 2] (grad
    retained) and ``radii`` [B, N]: the per-frame rows the densification statistics sum over.
    """
    from gsplat import rasterization

    B, N = means.shape[:2]
    render, alphas, info = rasterization(
        means, quats, scales, opacities.expand(B, N), colors.expand(B, *colors.shape),
        viewmats[:, None], Ks[:, None], width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree, packed=False,
        tile_size=tile_size, render_mode="RGB+ED", rasterize_mode="classic",
    )  # render [B, 1, H, W, D+1]
    means2d = info["means2d"]  # [B, 1, N, 2]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = info["radii"]
    radii = radii.amax(-1) if radii.dim() == 4 else radii  # [B, 1, N]
    meta = {"means2d": means2d, "radii": radii[:, 0].int(), "width": width, "height": height,
            "n_cameras": 1, "batched": True, "backend": "gsplat"}
    return render[:, 0, ..., :-1], alphas[:, 0], meta
