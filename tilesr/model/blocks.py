"""Building blocks of the denoising U-Net: time embedding, ResBlock, attention, resampling.

Every block keeps shapes symbolic (no Python ints taken from tensor shapes except through
``reshape(x.shape)``), so the network exports to ONNX with dynamic batch, height and width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of the (float) timestep followed by the first layer of an MLP.

    The sinusoid is the transformer position encoding used by DDPM (Ho et al. 2020,
    appendix B). The MLP's second layer is each ResBlock's own ``time_proj``, so the
    shared part ends with the nonlinearity.
    """

    freqs: torch.Tensor

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dimension must be even, got {dim}")
        half = dim // 2
        # a buffer rather than torch.arange in forward: one constant in the exported graph
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([torch.sin(args), torch.cos(args)], dim=1))


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU; the time embedding is added in between.

    ``mid_ch`` (default ``out_ch``) is the width between the two convolutions: the U-Net's
    bottleneck widens there without paying for a wide residual path. ``time_dim=0``
    builds a block without a timestep input (the regression network).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        time_dim: int,
        groups: int,
        mid_ch: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        mid_ch = out_ch if mid_ch is None else mid_ch
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, mid_ch) if time_dim else None
        self.norm2 = nn.GroupNorm(groups, mid_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(mid_ch, out_ch, 3, padding=1)
        # 1x1 projection only where the residual has to change its channel count
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_proj is not None and temb is not None:
            h = h + self.time_proj(temb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over all spatial positions, pre-normalised and residual.

    Written with matmul and softmax (not ``scaled_dot_product_attention``) so that the
    legacy ONNX exporter emits plain MatMul/Softmax nodes with symbolic sequence length.
    """

    def __init__(self, channels: int, *, heads: int, groups: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention channels {channels} are not divisible by {heads} heads")
        self.heads = heads
        self.scale = (channels // heads) ** -0.5
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 3C, H, W) -> three (N, heads, d, L) tensors with L = H * W
        qkv = self.qkv(self.norm(x)).flatten(2)
        q, k, v = (part.unflatten(1, (self.heads, -1)) for part in qkv.chunk(3, dim=1))
        weights = torch.softmax(q.transpose(-1, -2) @ k * self.scale, dim=-1)  # (N, h, L, L)
        out = v @ weights.transpose(-1, -2)  # (N, h, d, L)
        return x + self.out(out.reshape(x.shape))


class Downsample(nn.Module):
    """Halve the resolution by 2x2 average pooling (parameter-free, like the classic U-Net)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2)


class Upsample(nn.Module):
    """Double the resolution: nearest neighbour (no checkerboard), then a 1x1 channel projection.

    A 1x1 (only where the width changes) leaves the parameter budget to the ResBlock that
    follows, whose 3x3 convolutions see the upsampled features and the skip together.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
