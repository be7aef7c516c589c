"""Gaussian-splatting renderer: model, SH colours, rasteriser (gsplat / pure PyTorch), densification."""
from .gaussians import GaussianModel
from .projection import project_gaussians, quat_to_rotmat
from .rasterizer import RenderConfig, gsplat_available, rasterize
from .sh import eval_sh, num_sh_bases, rgb_to_sh, sh_basis, sh_to_color, sh_to_rgb
from .strategy import DensifyStrategy, StrategyConfig

__all__ = [
    "DensifyStrategy",
    "GaussianModel",
    "RenderConfig",
    "StrategyConfig",
    "eval_sh",
    "gsplat_available",
    "num_sh_bases",
    "project_gaussians",
    "quat_to_rotmat",
    "rasterize",
    "rgb_to_sh",
    "sh_basis",
    "sh_to_color",
    "sh_to_rgb",
]
