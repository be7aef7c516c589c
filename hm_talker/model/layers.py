"""The one MLP builder of the networks (deformation heads, gates, CMMM's AU head and AU encoder)."""
from __future__ import annotations

from torch import nn


def mlp(d_in: int, hidden: int, d_out: int, layers: int, leaky_slope: float | None = None,
        dropout: float = 0.0) -> nn.Sequential:
    """``layers`` linear layers, an activation (ReLU, or LeakyReLU(leaky_slope)) and optional dropout
    between them, none after the last: [B, d_in] -> [B, d_out]."""
    if layers < 1:
        raise ValueError("an MLP needs at least one layer")
    dims = [d_in] + [hidden] * (layers - 1) + [d_out]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        if i > 0:
            mods.append(nn.ReLU() if leaky_slope is None else nn.LeakyReLU(leaky_slope))
            if dropout > 0:
                mods.append(nn.Dropout(dropout))
        mods.append(nn.Linear(a, b))
    return nn.Sequential(*mods)
