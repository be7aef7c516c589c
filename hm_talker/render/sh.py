"""Real spherical harmonics up to degree 3 for view-dependent Gaussian colour.

The basis uses the sign convention of the 3DGS / gsplat code bases (e.g. the degree-1
terms are -c*y, c*z, -c*x), so SH coefficients trained with either backend of
:func:`hm_talker.render.rasterize` mean the same colours, and checkpoints stay
interchangeable with other 3DGS tools.  Colours are ``max(SH(dir) + 0.5, 0)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

MAX_SH_DEGREE = 3

# Normalisation constants of the real SH basis, derived from their closed forms
# (N_lm = sqrt((2l+1)/(4 pi) * (l-|m|)!/(l+|m|)!), folded with the polynomial factors).
_C0 = 0.5 / math.sqrt(math.pi)  # Y_00
_C1 = math.sqrt(3.0 / (4.0 * math.pi))  # |Y_1m|
_C2_XY = 0.5 * math.sqrt(15.0 / math.pi)  # xy, yz, xz terms
_C2_ZZ = 0.25 * math.sqrt(5.0 / math.pi)  # 2z^2 - x^2 - y^2
_C2_X2Y2 = 0.25 * math.sqrt(15.0 / math.pi)  # x^2 - y^2
_C3_A = 0.25 * math.sqrt(35.0 / (2.0 * math.pi))  # x(x^2-3y^2), y(3x^2-y^2)
_C3_B = 0.5 * math.sqrt(105.0 / math.pi)  # xyz
_C3_C = 0.25 * math.sqrt(21.0 / (2.0 * math.pi))  # x(4z^2-x^2-y^2), y(...)
_C3_D = 0.25 * math.sqrt(7.0 / math.pi)  # z(2z^2-3x^2-3y^2)
_C3_E = 0.25 * math.sqrt(105.0 / math.pi)  # z(x^2-y^2)

SH_C0 = _C0  # public: the degree-0 constant, used by rgb <-> sh0 conversions


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for ``degree`` (1, 4, 9, 16)."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in [0, {MAX_SH_DEGREE}], got {degree}")
    return (degree + 1) ** 2


def sh_basis(
    degree: int,
    dirs: Tensor,  # [..., 3] need not be normalised
) -> Tensor:  # [..., (degree+1)^2]
    """Evaluate the real SH basis functions at the (normalised) directions ``dirs``."""
    n = num_sh_bases(degree)
    d = torch.nn.functional.normalize(dirs, dim=-1)
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _C2_XY * x * y,
            -_C2_XY * y * z,
            _C2_ZZ * (2.0 * zz - xx - yy),
            -_C2_XY * x * z,
            _C2_X2Y2 * (xx - yy),
        ]
    if degree >= 3:
        out += [
            -_C3_A * y * (3.0 * xx - yy),
            _C3_B * x * y * z,
            -_C3_C * y * (4.0 * zz - xx - yy),
            _C3_D * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            -_C3_C * x * (4.0 * zz - xx - yy),
            _C3_E * z * (xx - yy),
            -_C3_A * x * (xx - 3.0 * yy),
        ]
    assert len(out) == n
    return torch.stack(out, dim=-1)


def eval_sh(
    degree: int,
    coeffs: Tensor,  # [..., K, C] with K >= (degree+1)^2; extra bands are ignored
    dirs: Tensor,  # [..., 3] viewing directions (camera -> Gaussian), any length
) -> Tensor:  # [..., C] raw SH value (no +0.5 offset, no clamp)
    """Sum of the first ``(degree+1)^2`` SH coefficients weighted by the basis at ``dirs``."""
    n = num_sh_bases(degree)
    if coeffs.shape[-2] < n:
        raise ValueError(f"degree {degree} needs {n} coefficients, got {coeffs.shape[-2]}")
    basis = sh_basis(degree, dirs)  # [..., n]
    return (basis.unsqueeze(-1) * coeffs[..., :n, :]).sum(dim=-2)


def sh_to_color(
    degree: int,
    coeffs: Tensor,  # [..., K, C]
    dirs: Tensor,  # [..., 3]
) -> Tensor:  # [..., C] non-negative colour
    """Colour as rendered by 3DGS / gsplat: ``max(SH(dir) + 0.5, 0)``."""
    return torch.clamp_min(eval_sh(degree, coeffs, dirs) + 0.5, 0.0)


def rgb_to_sh(rgb: Tensor) -> Tensor:  # [..., 3] -> [..., 3] degree-0 coefficient
    """Degree-0 coefficient that renders as ``rgb`` from every direction."""
    return (rgb - 0.5) / _C0


def sh_to_rgb(sh0: Tensor) -> Tensor:  # [..., 3] -> [..., 3]
    """Base (view-independent) colour of a degree-0 coefficient: ``C0 * sh0 + 0.5``."""
    return sh0 * _C0 + 0.5
