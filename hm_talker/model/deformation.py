"""Per-frame deformation of the canonical Gaussians (face branch and inside-mouth branch).

Both branches follow the same pattern (TalkingGaussian's "face/mouth motion fields" on an
ER-NeRF-style encoder):

1. the canonical Gaussian centres are encoded by a tri-plane hash grid -> spatial feature;
2. region attention: a small MLP maps the spatial feature to a per-Gaussian, per-channel gate
   in (0, 1) that multiplies the condition, so each Gaussian listens only to the part of the
   condition that moves its region (lips vs. cheeks vs. brows). With an explicit (AU) feature the
   gate is HMMM's gated attention (`hm_talker.model.fusion.HybridFusion`), which also mixes the
   implicit and the explicit feature per Gaussian;
3. an MLP on [spatial feature, gated condition(, gated AUs)] predicts the offsets.

The output heads are zero-initialised, so at initialisation the deformation is exactly the
identity (the canonical head renders unchanged) while the heads still receive gradient (their
weight gradient is hidden-activation x output-gradient, and hidden activations are non-zero).

Offsets are returned per condition in the batch: conditions [B, C] and one shared set of
Gaussians [N, 3] give offsets [B, N, *].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hm_talker.model.config import (
    DeformationConfig,
    FaceDeformationConfig,
    FusionConfig,
    HashGridConfig,
    MouthDeformationConfig,
)
from hm_talker.model.fusion import HybridFusion
from hm_talker.model.hash_grid import TriPlaneHashEncoding
from hm_talker.model.layers import mlp

XYZ_DIM = 3  # xyz offset channels
QUAT_DIM = 4  # quaternion (w, x, y, z) delta channels
SCALE_DIM = 3  # log-scale delta channels


@dataclass
class DeformationOutput:
    """Offsets for B conditions x N Gaussians, plus the region-attention gates."""

    d_xyz: Tensor  # [B, N, 3] added to the canonical centres
    d_rot: Tensor | None  # [B, N, 4] added to the canonical quaternion before normalising (face only)
    d_scale: Tensor | None  # [B, N, 3] added to the canonical log-scales (face only)
    condition_gate: Tensor  # [N, C] per-Gaussian (region) attention on the motion / audio condition
    au_gate: Tensor | None  # [N, Au] per-Gaussian attention on the upper-face AUs (face only)
    fusion_gates: dict | None = None  # HMMM gates mixing implicit / explicit features (see fusion.py)


def _hidden_stack(width: int, depth: int) -> nn.Sequential:
    """ReLU after the (split) input layer, then ``depth - 1`` more Linear+ReLU layers."""
    if depth < 1:
        raise ValueError("mlp_depth must be >= 1")
    layers: list[nn.Module] = [nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def _zero_head(width: int, out_dim: int) -> nn.Linear:
    head = nn.Linear(width, out_dim)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def apply_deformation(
    means: Tensor,  # [N, 3] canonical centres
    quats: Tensor,  # [N, 4] canonical rotations (any norm)
    log_scales: Tensor,  # [N, 3] canonical log-scales
    out: DeformationOutput,
) -> tuple[Tensor, Tensor, Tensor]:  # means [B, N, 3], unit quats [B, N, 4], log_scales [B, N, 3]
    """Deformed Gaussian parameters for every condition in the batch.

    Quaternions are added then normalised (so a zero delta is the identity); branches that do
    not predict rotation/scale (mouth) leave them at their canonical values.
    """
    batch = out.d_xyz.shape[0]
    new_means = means.unsqueeze(0) + out.d_xyz
    new_quats = quats.unsqueeze(0).expand(batch, -1, -1)
    if out.d_rot is not None:
        new_quats = new_quats + out.d_rot
    new_log_scales = log_scales.unsqueeze(0).expand(batch, -1, -1)
    if out.d_scale is not None:
        new_log_scales = new_log_scales + out.d_scale
    return new_means, F.normalize(new_quats, dim=-1), new_log_scales


class _GatedField(nn.Module):
    """Shared trunk: tri-plane encoding + sigmoid region gate on a condition vector."""

    def __init__(
        self,
        grid_cfg: HashGridConfig,
        aabb_min: list[float],  # [3]
        aabb_max: list[float],  # [3]
        aabb_margin: float,
        detach_points: bool,
        condition_dim: int,
        gate_hidden_dim: int,
        gate_num_layers: int,
        fusion: FusionConfig | None = None,
    ) -> None:
        super().__init__()
        self.encoding = TriPlaneHashEncoding(grid_cfg, aabb_min, aabb_max)
        self.aabb_margin = aabb_margin
        self.detach_points = detach_points
        self.condition_dim = condition_dim
        # HMMM: the fusion's region gate replaces the plain condition gate and mixes in an explicit
        # feature; without it the field is implicit-only (one region gate on the condition)
        self.fusion = HybridFusion(fusion, self.encoding.output_dim, condition_dim) if fusion else None
        if self.fusion is None:
            self.condition_gate_net = mlp(self.encoding.output_dim, gate_hidden_dim, condition_dim, gate_num_layers)

    def gated_condition(
        self,
        spatial: Tensor,  # [N, D]
        condition: Tensor,  # [B, C] implicit (audio) feature
        explicit: Tensor | None,  # [B, C] explicit (AU) feature, or None
    ) -> tuple[Tensor, Tensor, dict | None]:  # [B, N, C], region gate [N, C], fusion gates
        if explicit is not None:
            self._check_condition(explicit, self.condition_dim, "explicit")
        if self.fusion is None:
            if explicit is not None:
                raise ValueError("this field was built without fusion: it takes no explicit feature")
            gate = torch.sigmoid(self.condition_gate_net(spatial))  # [N, C]
            return gate.unsqueeze(0) * condition.unsqueeze(1), gate, None
        cond, gates = self.fusion(spatial, condition, explicit)
        return cond, gates["region"], gates

    def fit_aabb(
        self,
        points: Tensor,  # [N, 3] canonical centres of this branch's Gaussians
    ) -> None:
        """Fit the tri-plane box to this branch's Gaussians (call once, before training)."""
        self.encoding.fit_aabb(points, self.aabb_margin)

    def encode(
        self,
        points: Tensor,  # [N, 3]
    ) -> Tensor:  # [N, D_spatial]
        if points.ndim != 2 or points.shape[-1] != XYZ_DIM:
            raise ValueError(f"points must be [N, 3], got {tuple(points.shape)}")
        # Detaching keeps the hash-cell fraction gradients (noisy, piecewise) from moving the
        # canonical centres; those are optimised by the rendering loss directly.
        return self.encoding(points.detach() if self.detach_points else points)

    @staticmethod
    def _check_condition(condition: Tensor, dim: int, name: str) -> None:
        if condition.ndim != 2 or condition.shape[-1] != dim:
            raise ValueError(f"{name} must be [B, {dim}], got {tuple(condition.shape)}")


class FaceDeformation(_GatedField):
    """Face branch: centres [N, 3], motion condition [B, C], upper-face AUs [B, Au] -> offsets.

    The condition is the hybrid audio+AU motion feature (audio only in the baseline). The
    upper-face AUs (eyes, brows) get their own region gate because blinks and brow raises
    are not predictable from audio and must act only on the eye/brow Gaussians.
    """

    def __init__(
        self,
        cfg: FaceDeformationConfig,
        aabb_min: list[float],  # [3]
        aabb_max: list[float],  # [3]
        aabb_margin: float,
        fusion: FusionConfig | None = None,  # HMMM gated attention (None: implicit-only)
    ) -> None:
        super().__init__(
            grid_cfg=cfg.grid,
            aabb_min=aabb_min,
            aabb_max=aabb_max,
            aabb_margin=aabb_margin,
            detach_points=cfg.detach_points,
            condition_dim=cfg.condition_dim,
            gate_hidden_dim=cfg.gate_hidden_dim,
            gate_num_layers=cfg.gate_num_layers,
            fusion=fusion,
        )
        self.cfg = cfg
        spatial_dim = self.encoding.output_dim
        self.au_dim = cfg.upper_au_dim
        width = cfg.mlp_width

        # The first MLP layer acting on concat([spatial, gated cond, gated AU]) is split into one
        # linear map per part: identical function, but the spatial part is computed once for
        # the N Gaussians instead of B times.
        self.in_spatial = nn.Linear(spatial_dim, width)
        self.in_condition = nn.Linear(cfg.condition_dim, width, bias=False)
        if self.au_dim > 0:
            self.au_gate_net = mlp(spatial_dim, cfg.gate_hidden_dim, self.au_dim, cfg.gate_num_layers)
            self.in_au = nn.Linear(self.au_dim, width, bias=False)
        self.trunk = _hidden_stack(width, cfg.mlp_depth)
        self.head_xyz = _zero_head(width, XYZ_DIM)
        self.head_rot = _zero_head(width, QUAT_DIM)
        self.head_scale = _zero_head(width, SCALE_DIM)

    @classmethod
    def from_config(cls, cfg: DeformationConfig, fusion: FusionConfig | None = None) -> "FaceDeformation":
        return cls(cfg.face, list(cfg.aabb_min), list(cfg.aabb_max), cfg.aabb_margin, fusion)

    def forward(
        self,
        points: Tensor,  # [N, 3] canonical face Gaussian centres
        condition: Tensor,  # [B, C] motion condition (the implicit audio feature)
        upper_aus: Tensor | None = None,  # [B, Au] eye/brow AUs; required iff upper_au_dim > 0
        explicit: Tensor | None = None,  # [B, C] explicit (AU) feature, fused by HMMM's gates
        au_region: Tensor | None = None,  # [N] in [0, 1]: where the upper AUs may act (None: everywhere)
    ) -> DeformationOutput:
        self._check_condition(condition, self.condition_dim, "condition")
        spatial = self.encode(points)  # [N, D]

        gated_cond, cond_gate, fusion_gates = self.gated_condition(spatial, condition, explicit)  # [B, N, C]
        hidden = self.in_spatial(spatial).unsqueeze(0) + self.in_condition(gated_cond)  # [B, N, W]

        au_gate = None
        if self.au_dim > 0:
            if upper_aus is None:
                raise ValueError("upper_aus is required when upper_au_dim > 0")
            self._check_condition(upper_aus, self.au_dim, "upper_aus")
            if upper_aus.shape[0] != condition.shape[0]:
                raise ValueError("condition and upper_aus must have the same batch size")
            au_gate = torch.sigmoid(self.au_gate_net(spatial))  # [N, Au]
            if au_region is not None:
                au_gate = au_gate * au_region.unsqueeze(1)
            gated_au = au_gate.unsqueeze(0) * upper_aus.unsqueeze(1)  # [B, N, Au]
            hidden = hidden + self.in_au(gated_au)

        hidden = self.trunk(hidden)  # [B, N, W]
        return DeformationOutput(
            d_xyz=self.head_xyz(hidden) * self.cfg.xyz_offset_scale,
            d_rot=self.head_rot(hidden) * self.cfg.rot_offset_scale,
            d_scale=self.head_scale(hidden) * self.cfg.scale_offset_scale,
            condition_gate=cond_gate,
            au_gate=au_gate,
            fusion_gates=fusion_gates,
        )

    def heads(self) -> list[nn.Linear]:
        return [self.head_xyz, self.head_rot, self.head_scale]


class MouthDeformation(_GatedField):
    """Inside-mouth branch (teeth, tongue, oral cavity): centres [N, 3], audio [B, C_a] -> d_xyz.

    The inner mouth moves essentially rigidly with the jaw, i.e. up/down. The MLP therefore has
    two zero-initialised heads: a per-Gaussian vertical offset (along ``vertical_axis``,
    scaled by ``vertical_offset_scale``) and a horizontal/depth offset on the two remaining
    axes scaled by the smaller ``lateral_offset_scale``, so with equal head weights the
    vertical motion dominates and the lateral part only corrects small residuals. No rotation
    or scale change is predicted.
    """

    def __init__(
        self,
        cfg: MouthDeformationConfig,
        aabb_min: list[float],  # [3]
        aabb_max: list[float],  # [3]
        aabb_margin: float,
        fusion: FusionConfig | None = None,  # HMMM gated attention (None: audio only)
    ) -> None:
        super().__init__(
            grid_cfg=cfg.grid,
            aabb_min=aabb_min,
            aabb_max=aabb_max,
            aabb_margin=aabb_margin,
            detach_points=cfg.detach_points,
            condition_dim=cfg.audio_dim,
            gate_hidden_dim=cfg.gate_hidden_dim,
            gate_num_layers=cfg.gate_num_layers,
            fusion=fusion,
        )
        if not 0 <= cfg.vertical_axis < XYZ_DIM:
            raise ValueError("vertical_axis must be 0, 1 or 2")
        self.cfg = cfg
        width = cfg.mlp_width
        self.in_spatial = nn.Linear(self.encoding.output_dim, width)
        self.in_audio = nn.Linear(cfg.audio_dim, width, bias=False)
        self.trunk = _hidden_stack(width, cfg.mlp_depth)
        self.head_vertical = _zero_head(width, 1)
        self.head_lateral = _zero_head(width, XYZ_DIM - 1)
        # Columns of cat([vertical, lateral]) -> xyz order.
        lateral_axes = [a for a in range(XYZ_DIM) if a != cfg.vertical_axis]
        order = [cfg.vertical_axis] + lateral_axes  # output column j holds axis order[j]
        inverse = [order.index(axis) for axis in range(XYZ_DIM)]
        self.register_buffer("_to_xyz", torch.tensor(inverse, dtype=torch.long), persistent=False)

    @classmethod
    def from_config(cls, cfg: DeformationConfig, fusion: FusionConfig | None = None) -> "MouthDeformation":
        return cls(cfg.mouth, list(cfg.aabb_min), list(cfg.aabb_max), cfg.aabb_margin, fusion)

    def forward(
        self,
        points: Tensor,  # [N, 3] canonical inside-mouth Gaussian centres
        audio: Tensor,  # [B, C_a] audio condition (the implicit feature)
        explicit: Tensor | None = None,  # [B, C_a] explicit (AU) feature, fused by HMMM's gates
    ) -> DeformationOutput:
        self._check_condition(audio, self.condition_dim, "audio")
        spatial = self.encode(points)  # [N, D]
        gated, gate, fusion_gates = self.gated_condition(spatial, audio, explicit)  # [B, N, C_a]
        hidden = self.trunk(self.in_spatial(spatial).unsqueeze(0) + self.in_audio(gated))  # [B, N, W]
        vertical = self.head_vertical(hidden) * self.cfg.vertical_offset_scale  # [B, N, 1]
        lateral = self.head_lateral(hidden) * self.cfg.lateral_offset_scale  # [B, N, 2]
        d_xyz = torch.cat([vertical, lateral], dim=-1).index_select(-1, self._to_xyz)  # [B, N, 3]
        return DeformationOutput(d_xyz=d_xyz, d_rot=None, d_scale=None, condition_gate=gate, au_gate=None,
                                 fusion_gates=fusion_gates)

    def heads(self) -> list[nn.Linear]:
        return [self.head_vertical, self.head_lateral]
