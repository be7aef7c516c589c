"""EWA projection of 3D Gaussians to screen-space 2D Gaussians (pinhole camera).

Conventions (same as gsplat / OpenCV): ``viewmats`` are world-to-camera [C, 4, 4]
matrices, camera axes x right, y down, z forward; ``Ks`` are pixel intrinsics
[C, 3, 3]; pixel (i, j) has its centre at (i + 0.5, j + 0.5).  Everything here
is differentiable plain PyTorch on [C, N] tensors: O(C*N) work and memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:  # [..., 4] (w, x, y, z), any norm -> [..., 3, 3]
    """Rotation matrices of (normalised) quaternions."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def _rotmat_entries(quats: Tensor) -> list[list[Tensor]]:  # [N, 4] -> 3x3 nested list of [N]
    """Rotation-matrix entries of normalised quaternions as contiguous [N] vectors."""
    w, x, y, z = F.normalize(quats, dim=-1).t().contiguous()
    return [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]


@dataclass
class Projected:
    """Per camera and Gaussian screen-space quantities; entries with ``valid`` False are culled."""

    means2d: Tensor  # [C, N, 2] pixel coordinates (0 where culled)
    depths: Tensor  # [C, N] camera-space z of the centre
    conics: Tensor  # [C, N, 3] inverse 2D covariance (a, b, c) = [[a, b], [b, c]]
    radii: Tensor  # [C, N, 2] int32 half-extent of the opacity-aware bounding box (x, y), 0 if culled
    valid: Tensor  # [C, N] bool


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: Tensor,  # [N, 3] activated (positive) scales
    opacities: Tensor,  # [N] or [C, N] activated opacities in (0, 1)
    viewmats: Tensor,  # [C, 4, 4] world-to-camera
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    alpha_min: float = 1.0 / 255.0,
) -> Projected:
    """Project Gaussians with the EWA Jacobian, as 3DGS / gsplat do.

    The 2D covariance is ``J W Sigma W^T J^T + eps2d * I``; the ``eps2d`` low-pass
    dilation keeps every splat at least ~1 px wide.  As in 3DGS, the Jacobian is
    evaluated at the centre clamped to 1.3x the field of view so that Gaussians far
    outside the image do not get absurd footprints.  A Gaussian is culled when its
    centre is outside [near, far], its opacity is below ``alpha_min`` (it could never
    pass the per-pixel alpha test) or its bounding box misses the image.  The box
    half-extent per axis is ``ceil(e * sqrt(Sigma_axis))`` with the opacity-aware
    ``e = sqrt(2 ln(opacity / alpha_min))``: exactly the ellipse outside of which
    ``opacity * exp(-0.5 d^T Sigma^-1 d) < alpha_min``, so culling loses nothing.
    """
    C, N = viewmats.shape[0], means.shape[0]
    # Component-major layout ([3, N] rows, [C, N] planes): every op below is a
    # contiguous elementwise pass, which is what the CPU is fast at (no 3x3 bmm per Gaussian).
    R = viewmats[:, :3, :3]  # [C, 3, 3]
    mc = torch.matmul(R, means.t()) + viewmats[:, :3, 3, None]  # [C, 3, N] camera-space centres
    x, y, z = mc.unbind(1)  # [C, N] each
    with torch.no_grad():
        in_depth = (z >= near_plane) & (z <= far_plane)
    # Culled Gaussians stay in the graph with a harmless depth, so that 1/z (and the
    # zero gradient that flows through it) can never create inf/NaN.
    rz = 1.0 / torch.where(in_depth, z, torch.ones_like(z))

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = torch.clamp(x * rz, -lim_x_neg, lim_x_pos)  # clamped x/z
    ty = torch.clamp(y * rz, -lim_y_neg, lim_y_pos)

    # Rows of J @ R_cam (the 2x3 map from world offsets to pixels), entry by entry:
    # J = [[fx/z, 0, -fx*tx/z], [0, fy/z, -fy*ty/z]] with tx, ty the clamped x/z, y/z.
    fxz, fyz = fx * rz, fy * rz
    jw0 = [fxz * (R[:, 0, j, None] - tx * R[:, 2, j, None]) for j in range(3)]  # [C, N] each
    jw1 = [fyz * (R[:, 1, j, None] - ty * R[:, 2, j, None]) for j in range(3)]
    M = _rotmat_entries(quats)  # M[j][k] = (R_q S)_jk, Sigma = M M^T
    sc = scales.t().contiguous()
    M = [[M[j][k] * sc[k] for k in range(3)] for j in range(3)]
    a0 = [sum(jw0[j] * M[j][k] for j in range(3)) for k in range(3)]  # rows of J R_cam R_q S
    a1 = [sum(jw1[j] * M[j][k] for j in range(3)) for k in range(3)]
    cov_xx = a0[0] * a0[0] + a0[1] * a0[1] + a0[2] * a0[2] + eps2d
    cov_xy = a0[0] * a1[0] + a0[1] * a1[1] + a0[2] * a1[2]
    cov_yy = a1[0] * a1[0] + a1[1] * a1[1] + a1[2] * a1[2] + eps2d
    det = cov_xx * cov_yy - cov_xy * cov_xy

    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # [C, N, 2]

    with torch.no_grad():
        opac = opacities.expand(C, N)
        ok = in_depth & (det > 0) & (opac >= alpha_min)
        extend = torch.sqrt(2.0 * torch.log(torch.clamp_min(opac / alpha_min, 1.0)))
        rx = torch.ceil(extend * torch.sqrt(cov_xx.clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(cov_yy.clamp_min(0)))
        mx, my = means2d[..., 0], means2d[..., 1]
        ok &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        ok &= (rx > 0) | (ry > 0)
        radii = (torch.stack([rx, ry], dim=-1) * ok[..., None]).to(torch.int32)

    det = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([cov_yy / det, -cov_xy / det, cov_xx / det], dim=-1)
    means2d = torch.where(ok[..., None], means2d, torch.zeros_like(means2d))
    return Projected(means2d=means2d, depths=z, conics=conics, radii=radii, valid=ok)


def camera_centers(viewmats: Tensor) -> Tensor:  # [C, 4, 4] -> [C, 3]
    """World-space camera centres (translation of the camera-to-world matrices)."""
    return torch.linalg.inv(viewmats)[:, :3, 3]
