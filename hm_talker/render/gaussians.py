"""Learnable 3D Gaussians of a person-specific head (the canonical, undeformed splats)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .sh import num_sh_bases, rgb_to_sh, sh_to_rgb


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def mean_knn_distance(
    points: Tensor,  # [N, 3]
    k: int = 3,
    max_block: int = 1 << 24,
) -> Tensor:  # [N] mean distance to the k nearest other points
    """Exact k-NN distances by blocks of rows (never an [N, N] matrix).

    Cost O(N^2) time, O(max_block) memory: ~1 s for 20k points, ~6 s for 50k on 2 cores;
    pass explicit scales to :meth:`GaussianModel.from_points` for bigger clouds.
    """
    n = points.shape[0]
    if n <= 1:
        return torch.ones(n, dtype=points.dtype, device=points.device)
    k = min(k, n - 1)
    rows = max(1, max_block // n)
    out = []
    for i in range(0, n, rows):
        d = torch.cdist(points[i : i + rows], points)  # [rows, N]
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = math.inf  # not itself
        out.append(d.topk(k, dim=1, largest=False).values.mean(1))
    return torch.cat(out)


class GaussianModel(nn.Module):
    """N anisotropic 3D Gaussians with spherical-harmonics colour.

    Parameters are stored unconstrained (what the optimiser sees) and activated by
    the getters: ``scales = exp(log_scales)``, ``opacities = sigmoid(opacity_logits)``,
    ``quats`` normalised (w, x, y, z), ``colors`` = [sh0, shN] SH coefficients [N, K, 3].
    Every per-Gaussian parameter has N rows; the densification strategy replaces them
    (N changes), and :meth:`load_state_dict` accepts checkpoints with another N.
    """

    BASE_PARAMS = ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")

    def __init__(self, num_gaussians: int = 0, sh_degree: int = 3):
        super().__init__()
        n, k = num_gaussians, num_sh_bases(sh_degree)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        self.means = nn.Parameter(torch.zeros(n, 3))  # [N, 3] world position
        self.quats = nn.Parameter(quats)  # [N, 4] rotation (w, x, y, z), unnormalised
        self.log_scales = nn.Parameter(torch.full((n, 3), math.log(0.01)))  # [N, 3]
        self.opacity_logits = nn.Parameter(torch.full((n,), _logit(0.1)))  # [N]
        self.sh0 = nn.Parameter(torch.zeros(n, 1, 3))  # [N, 1, 3] degree-0 SH (base colour)
        self.shN = nn.Parameter(torch.zeros(n, k - 1, 3))  # [N, K-1, 3] higher bands
        self._extra_params: list[str] = []

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_points(
        cls,
        points: Tensor,  # [N, 3]
        colors: Tensor | None = None,  # [N, 3] RGB in [0, 1]; grey if None
        sh_degree: int = 3,
        opacity: float = 0.1,
        scales: Tensor | float | None = None,  # [N] / [N, 3] / scalar; None = mean distance to 3 nearest
    ) -> "GaussianModel":
        """Isotropic Gaussians at ``points`` (3DGS initialisation)."""
        n = points.shape[0]
        model = cls(n, sh_degree)
        points = points.detach().float()
        if scales is None:
            scales = mean_knn_distance(points).clamp_min(1e-7)
        s = torch.as_tensor(scales, dtype=torch.float32).detach().cpu()
        s = s.expand(n, 3) if s.dim() == 0 else (s[:, None].expand(n, 3) if s.dim() == 1 else s)
        rgb = torch.full((n, 3), 0.5) if colors is None else colors.detach().float().cpu()
        with torch.no_grad():
            model.means.copy_(points.cpu())
            model.log_scales.copy_(torch.log(s))
            model.opacity_logits.fill_(_logit(opacity))
            model.sh0.copy_(rgb_to_sh(rgb)[:, None, :])
        return model.to(points.device)

    @classmethod
    def random_in_ellipsoid(
        cls,
        num_gaussians: int,
        radii: tuple[float, float, float] = (0.09, 0.12, 0.10),
        center: tuple[float, float, float] = (0.0, 0.0, 0.0),
        surface_fraction: float = 0.7,
        sh_degree: int = 3,
        opacity: float = 0.1,
        seed: int = 0,
    ) -> "GaussianModel":
        """Random init for a head: a ``surface_fraction`` of points near the ellipsoid surface, the rest inside.

        Colours are random; scales are ~half the mean surface spacing.
        """
        g = torch.Generator().manual_seed(seed)
        n = num_gaussians
        d = torch.randn(n, 3, generator=g)
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        shell = 0.9 + 0.1 * torch.rand(n, generator=g)
        inner = torch.rand(n, generator=g) ** (1.0 / 3.0)
        r = torch.where(torch.rand(n, generator=g) < surface_fraction, shell, inner)
        pts = d * r[:, None] * torch.tensor(radii) + torch.tensor(center)
        a, b, c = radii
        area = 4 * math.pi * ((a * b) ** 1.6 / 3 + (a * c) ** 1.6 / 3 + (b * c) ** 1.6 / 3) ** (1 / 1.6)
        spacing = math.sqrt(area / max(n, 1))
        return cls.from_points(pts, torch.rand(n, 3, generator=g), sh_degree, opacity, scales=0.5 * spacing)

    # ------------------------------------------------------------------ getters
    @property
    def num_gaussians(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.shN.shape[1] + 1))) - 1

    @property
    def gaussian_param_names(self) -> tuple[str, ...]:
        """Names of all per-Gaussian parameters (first dimension N)."""
        return self.BASE_PARAMS + tuple(self._extra_params)

    @property
    def scales(self) -> Tensor:  # [N, 3]
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:  # [N]
        return torch.sigmoid(self.opacity_logits)

    @property
    def rotations(self) -> Tensor:  # [N, 4] unit quaternions
        return nn.functional.normalize(self.quats, dim=-1)

    @property
    def colors(self) -> Tensor:  # [N, K, 3] SH coefficients
        return torch.cat([self.sh0, self.shN], dim=1)

    @property
    def base_rgb(self) -> Tensor:  # [N, 3] view-independent colour (degree 0)
        return sh_to_rgb(self.sh0[:, 0, :])

    def activated(self) -> dict[str, Tensor]:
        """Keyword arguments for :func:`hm_talker.render.rasterize` (add ``sh_degree``)."""
        return {
            "means": self.means,
            "quats": self.quats,  # the rasteriser normalises
            "scales": self.scales,
            "opacities": self.opacities,
            "colors": self.colors,
        }

    # ------------------------------------------------------------------ parameter surgery
    def register_gaussian_param(self, name: str, value: Tensor) -> None:
        """Add an extra per-Gaussian parameter [N, ...] (densified / pruned like the others)."""
        if value.shape[0] != self.num_gaussians:
            raise ValueError(f"{name} has {value.shape[0]} rows, the model {self.num_gaussians}")
        self.register_parameter(name, nn.Parameter(value))
        if name not in self._extra_params:
            self._extra_params.append(name)

    def replace_param(self, name: str, value: Tensor | nn.Parameter) -> nn.Parameter:
        """Swap a per-Gaussian parameter for a new tensor (any N); returns the new Parameter.

        Optimisers still hold the old Parameter: use the strategy (or update them yourself).
        """
        if name not in self.gaussian_param_names:
            raise KeyError(name)
        old = getattr(self, name)
        if not isinstance(value, nn.Parameter):
            value = nn.Parameter(value.detach(), requires_grad=old.requires_grad)
        setattr(self, name, value)
        return value

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written after densification hold another N: resize our
        # parameters to the stored shapes first (also when nested in a bigger module).
        for name in self.gaussian_param_names:
            key = prefix + name
            if key in state_dict:
                cur = getattr(self, name)
                if state_dict[key].shape != cur.shape:
                    new = torch.empty(state_dict[key].shape, dtype=cur.dtype, device=cur.device)
                    setattr(self, name, nn.Parameter(new, requires_grad=cur.requires_grad))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"num_gaussians={self.num_gaussians}, sh_degree={self.sh_degree}"
