"""Audio condition: a window of per-frame audio features -> one condition vector.

Input is a window of W video frames around the current one, each frame carrying k rows of
audio features of dim D (log-mel at 100 Hz with 25 fps video: k=4, D=80; HuBERT at 50 Hz:
k=2, D=768/1024). Two stages, as in AD-NeRF / ER-NeRF:

1. a per-frame encoder: 1D convolutions along the k rows with the D features as channels,
   flattened (row order matters: it is sub-frame timing) and mapped by an MLP to C dims;
2. temporal attention: a small conv net along the window reduces the C channels to one score
   per frame, a linear layer mixes the W scores, and a softmax turns them into weights that
   average the W per-frame features. This smooths the condition over time (less jitter) while
   letting the net decide how much context around the current frame to use.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hm_talker.model.config import AudioEncoderConfig


class AudioEncoder(nn.Module):
    """[B, W, k, D] audio-feature window -> (condition [B, C], attention weights [B, W])."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        if cfg.conv_kernel % 2 == 0 or cfg.attention_kernel % 2 == 0:
            raise ValueError("conv_kernel and attention_kernel must be odd (same padding)")
        if cfg.use_attention and (not cfg.attention_channels or cfg.attention_channels[-1] != 1):
            raise ValueError("attention_channels must end with 1 (one score per frame)")
        self.cfg = cfg
        slope = cfg.leaky_relu_slope

        self.input_norm = nn.LayerNorm(cfg.feature_dim) if cfg.input_layer_norm else nn.Identity()
        convs: list[nn.Module] = []
        in_ch = cfg.feature_dim
        for out_ch in cfg.conv_channels:
            convs += [nn.Conv1d(in_ch, out_ch, cfg.conv_kernel, padding=cfg.conv_kernel // 2), nn.LeakyReLU(slope)]
            in_ch = out_ch
        self.frame_conv = nn.Sequential(*convs)
        self.frame_fc = nn.Sequential(
            nn.Linear(in_ch * cfg.rows_per_frame, cfg.fc_hidden_dim),
            nn.LeakyReLU(slope),
            nn.Linear(cfg.fc_hidden_dim, cfg.condition_dim),
        )

        if cfg.use_attention:
            att: list[nn.Module] = []
            in_ch = cfg.condition_dim
            for out_ch in cfg.attention_channels:
                att += [
                    nn.Conv1d(in_ch, out_ch, cfg.attention_kernel, padding=cfg.attention_kernel // 2),
                    nn.LeakyReLU(slope),
                ]
                in_ch = out_ch
            self.attention_conv = nn.Sequential(*att)
            self.attention_mix = nn.Linear(cfg.window, cfg.window)

    @property
    def output_dim(self) -> int:
        return self.cfg.condition_dim

    @property
    def centre_index(self) -> int:
        """Window slot of the current video frame (the window is [t - W//2, t + W - W//2))."""
        return self.cfg.window // 2

    def _check_input(self, features: Tensor) -> None:
        expected = (self.cfg.window, self.cfg.rows_per_frame, self.cfg.feature_dim)
        if features.ndim != 4 or tuple(features.shape[1:]) != expected:
            raise ValueError(f"audio features must be [B, {', '.join(map(str, expected))}], got {tuple(features.shape)}")

    def encode_frames(
        self,
        features: Tensor,  # [B, W, k, D]
    ) -> Tensor:  # [B, W, C] one feature per video frame
        self._check_input(features)
        return self.encode_frames_any(features)

    def encode_frames_any(
        self,
        features: Tensor,  # [B, T, k, D] any number T of frames
    ) -> Tensor:  # [B, T, C]
        """Per-frame features of a span of any length (the per-frame encoder has no window context)."""
        b, t, k, d = features.shape
        if (k, d) != (self.cfg.rows_per_frame, self.cfg.feature_dim):
            raise ValueError(f"audio features must be [B, T, {self.cfg.rows_per_frame}, {self.cfg.feature_dim}]")
        x = self.input_norm(features.reshape(b * t, k, d))  # [B*T, k, D]
        x = self.frame_conv(x.transpose(1, 2))  # [B*T, C_conv, k]: D as channels, convolve along k
        return self.frame_fc(x.flatten(1)).view(b, t, -1)  # [B, T, C]

    def attention(
        self,
        frames: Tensor,  # [B, W, C]
    ) -> Tensor:  # [B, W] softmax weights over the window
        if not self.cfg.use_attention:
            weights = torch.zeros(frames.shape[:2], dtype=frames.dtype, device=frames.device)
            weights[:, self.centre_index] = 1.0
            return weights
        scores = self.attention_conv(frames.transpose(1, 2)).squeeze(1)  # [B, W]
        return torch.softmax(self.attention_mix(scores), dim=-1)

    def forward(
        self,
        features: Tensor,  # [B, W, k, D]
    ) -> tuple[Tensor, Tensor]:  # condition [B, C], attention weights [B, W]
        frames = self.encode_frames(features)
        weights = self.attention(frames)
        condition = torch.einsum("bw,bwc->bc", weights, frames)
        return condition, weights
