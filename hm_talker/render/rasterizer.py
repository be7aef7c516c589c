"""One rendering entry point with two backends: gsplat on CUDA, pure PyTorch elsewhere."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import Tensor

BACKENDS = ("auto", "torch", "gsplat")
GSPLAT_ALPHA_MAX = 0.999  # gsplat's hard-coded per-splat alpha clamp (set it on the torch backend to match)


@dataclass
class RenderConfig:
    backend: str = "auto"  # "auto" (gsplat for CUDA tensors if it imports, else torch), "torch" or "gsplat"
    tile_size: int = 16  # gsplat tile edge in pixels (the only size gsplat is tested with)
    near_plane: float = 0.01  # Gaussians with camera depth below this are culled
    far_plane: float = 1e10  # ... and above this
    eps2d: float = 0.3  # low-pass dilation added to the 2D covariance diagonal (px^2), as in 3DGS
    alpha_min: float = 1.0 / 255.0  # splats with alpha below this are skipped (torch backend; gsplat fixes 1/255)
    alpha_max: float = 0.99  # per-splat alpha clamp: 0.99 is 3DGS, gsplat hard-codes 0.999 (torch backend only)
    transmittance_min: float = 1e-4  # a pixel stops before the splat that would take T to <= this (torch only)
    torch_tile_size: int = 8  # torch backend tile edge: 8 wastes less work on empty pixels than 16 on CPU
    depth_chunk: int = 32  # torch backend: splats per tile composited per block (T is carried between blocks)
    chunk_elems: int = 1 << 17  # torch backend: tile-pixel x splat elements per block (cache-sized; bounds memory)
    save_blocks: bool = True  # torch backend: keep 8 B per (splat, tile px) for backward; False: recompute, ~20% slower
    exact_tile_cull: bool = True  # torch backend: drop (tile, splat) pairs whose tile misses the splat's ellipse

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")


@functools.lru_cache(maxsize=1)
def gsplat_available() -> bool:
    """True if gsplat and its CUDA kernels import (checked once per process)."""
    try:
        from gsplat.cuda._backend import _C  # imports gsplat and builds / loads its kernels

        return _C is not None
    except Exception:  # ImportError, or a failed CUDA build
        return False


def resolve_backend(backend: str, is_cuda: bool) -> str:
    """Backend actually used for tensors on CUDA (``is_cuda``) or not."""
    if backend == "auto":
        return "gsplat" if is_cuda and gsplat_available() else "torch"
    if backend == "gsplat" and not is_cuda:
        raise ValueError("the gsplat backend needs CUDA tensors")
    return backend


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: Tensor,  # [N, 3] activated (positive) scales
    opacities: Tensor,  # [N] or [C, N] activated opacities
    colors: Tensor,  # [(C,) N, D] features, or [(C,) N, K, 3] SH coefficients when sh_degree is set
    viewmats: Tensor,  # [C, 4, 4] world-to-camera, OpenCV axes (x right, y down, z forward)
    Ks: Tensor,  # [C, 3, 3] pixel intrinsics
    width: int,
    height: int,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [C, D] or [D]
    backend: str | None = None,  # overrides config.backend when given
    config: RenderConfig | None = None,
) -> tuple[Tensor, Tensor, Tensor, dict]:
    """Render Gaussians into C views.

    Returns ``(colors [C, H, W, D], alphas [C, H, W, 1], depths [C, H, W, 1], meta)``:
    colours include ``(1 - alpha) * background``; depths are expected camera z
    (``sum w_i z_i / alpha``, 0 where nothing was hit).  With ``sh_degree`` set, colours
    are ``max(SH(dir) + 0.5, 0)`` for the camera-to-Gaussian direction.

    ``meta`` holds ``means2d`` [C, N, 2] (``retain_grad()`` already called, so its
    ``.grad`` is the screen-space gradient used for densification), ``radii`` [C, N]
    (int32, 0 for culled Gaussians), ``radii_xy`` [C, N, 2], ``depths`` [C, N],
    ``conics`` [C, N, 3], ``width``, ``height``, ``n_cameras`` and ``backend``.
    """
    cfg = config or RenderConfig()
    name = resolve_backend(backend or cfg.backend, means.is_cuda)
    common = dict(
        sh_degree=sh_degree, backgrounds=backgrounds, near_plane=cfg.near_plane, far_plane=cfg.far_plane,
        eps2d=cfg.eps2d,
    )
    if name == "gsplat":
        from .rasterize_gsplat import rasterize_gsplat

        return rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, tile_size=cfg.tile_size, **common
        )
    from .rasterize_torch import rasterize_torch

    return rasterize_torch(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, tile_size=cfg.torch_tile_size,
        **common, alpha_min=cfg.alpha_min, alpha_max=cfg.alpha_max, transmittance_min=cfg.transmittance_min,
        k_chunk=cfg.depth_chunk, chunk_elems=cfg.chunk_elems, save_blocks=cfg.save_blocks,
        exact_cull=cfg.exact_tile_cull,
    )
