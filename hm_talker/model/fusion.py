"""HMMM's gated attention: fuse the implicit (audio) and explicit (AU) features into one condition.

For every Gaussian n and frame b the deformation field reads a condition vector
``cond[b, n] = g_imp[., n] * implicit[b] + g_exp[., n] * explicit[b]`` with gates in (0, 1):

- ``gate_on="gaussian"``: the gates come from the Gaussian's spatial (tri-plane) feature, [N, C] each,
  so every region decides how much it listens to the sound and to the AUs (TalkingGaussian's region
  attention, extended to two sources); lips can follow the explicit AUs while cheeks follow prosody;
- ``gate_on="token"``: the gates come from the two features of the frame, [B, C] each (then a spatial
  region gate [N, C] still selects which Gaussians move at all);
- ``gate="concat"``: no mixing gates, ``cond = region_gate[n] * Linear([implicit, explicit])`` (the ablation).

Implicit-only (today's baseline) passes ``explicit=None``: ``cond = region_gate[n] * implicit``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hm_talker.model.config import FusionConfig
from hm_talker.model.layers import mlp


class HybridFusion(nn.Module):
    """spatial [N, D], implicit [B, C], explicit [B, C] or None -> condition [B, N, C] and the gates."""

    def __init__(self, cfg: FusionConfig, spatial_dim: int, dim: int) -> None:
        super().__init__()
        if cfg.gate not in ("gated", "concat"):
            raise ValueError(f"hmmm gate must be gated or concat, not {cfg.gate!r}")
        if cfg.gate_on not in ("gaussian", "token"):
            raise ValueError(f"hmmm gate_on must be gaussian or token, not {cfg.gate_on!r}")
        self.cfg, self.dim = cfg, dim
        self.hold_explicit = False  # true: the explicit gates pass no gradient (GaussianHead.explicit_held)
        h = cfg.gate_hidden_dim
        # the spatial region gate [N, C]: for implicit-only, concat and per-token gates (per-Gaussian gates
        # are themselves spatial, so they need none and it would be weights that never train)
        self.region = mlp(spatial_dim, h, dim, 2) if cfg.gate == "concat" or cfg.gate_on == "token" else None
        if cfg.gate == "concat":
            self.mix = nn.Linear(2 * dim, dim)
        else:
            src = spatial_dim if cfg.gate_on == "gaussian" else 2 * dim
            self.gates = mlp(src, h, 2 * dim, 2)
            nn.init.constant_(self.gates[-1].bias, cfg.gate_init_bias)

    def forward(self, spatial: Tensor, implicit: Tensor, explicit: Tensor | None) -> tuple[Tensor, dict]:
        """The condition per Gaussian and frame [B, N, C], and the gates; gates["region"] [N, C] is how much
        each Gaussian listens to the condition at all (with per-Gaussian gates: their mean)."""
        if self.cfg.gate == "gated" and self.cfg.gate_on == "gaussian":
            if explicit is None:
                raise ValueError("per-Gaussian gates mix two features: give the explicit one")
            g = torch.sigmoid(self.gates(spatial))  # [N, 2C]
            g_imp, g_exp = g[:, : self.dim], g[:, self.dim:]  # [N, C] each
            g_exp = g_exp.detach() if self.hold_explicit else g_exp
            cond = g_imp.unsqueeze(0) * implicit.unsqueeze(1) + g_exp.unsqueeze(0) * explicit.unsqueeze(1)
            return cond, {"region": (g_imp + g_exp) / 2, "implicit": g_imp[None], "explicit": g_exp[None]}
        region = torch.sigmoid(self.region(spatial))  # [N, C]
        if explicit is None:
            return region.unsqueeze(0) * implicit.unsqueeze(1), {"region": region}
        if self.cfg.gate == "concat":
            mixed = self.mix(torch.cat([implicit, explicit], -1))  # [B, C]
            return region.unsqueeze(0) * mixed.unsqueeze(1), {"region": region}
        g = torch.sigmoid(self.gates(torch.cat([implicit, explicit], -1)))  # [B, 2C]
        g_imp, g_exp = g[:, : self.dim], g[:, self.dim:]
        g_exp = g_exp.detach() if self.hold_explicit else g_exp
        mixed = g_imp * implicit + g_exp * explicit  # [B, C]
        return region.unsqueeze(0) * mixed.unsqueeze(1), {"region": region, "implicit": g_imp, "explicit": g_exp}
