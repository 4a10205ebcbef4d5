"""The conditional denoising U-Net: predicts the noise in the HR image given the upsampled LR.

Input channels are ``[cond, noisy]`` (LR first), concatenated inside :meth:`UNet.forward`
so that the exported graph and the ``Denoiser`` protocol take them as separate tensors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from tilesr.errors import TilesrError
from tilesr.model.blocks import Downsample, ResBlock, SelfAttention, TimeEmbedding, Upsample


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the U-Net.

    Parameters
    ----------
    channels
        Width of each resolution level; the image is halved after every level.
    bottleneck
        Width of the lowest-resolution (middle) block.
    attention
        Per level, whether its blocks are followed by self-attention.
    time_dim
        Width of the sinusoidal timestep embedding and its MLP.
    groups
        GroupNorm groups; every width must be divisible by it.
    blocks
        ResBlocks per level in the encoder (the decoder has the same number).
    heads
        Attention heads (widths with attention must be divisible by it).
    mid_attention
        Whether the bottleneck ResBlock is followed by self-attention.
    dropout
        Dropout probability inside every ResBlock (training only).
    conditioning_only
        A regression network (CARE-like): it sees only the conditioning image and no
        timestep, and its output is the restored image itself; ``forward`` still takes
        ``noisy`` and ``t`` (ignored) so every tilesr model has one interface.
    cond_channels
        Channels of the conditioning input: 1 (the upsampled LR image), or 2 for the
        refiner of :class:`tilesr.model.refined.RefinedUNet` (LR image and prediction).
    target_optics_input
        One more conditioning channel, after the others: a constant plane saying which
        optics the target has (:mod:`tilesr.model.target_optics`); the engine's graph
        fixes it (:class:`~tilesr.model.target_optics.FixedTargetOptics`).
    """

    channels: tuple[int, ...] = (32, 64, 128)
    bottleneck: int = 256
    attention: tuple[bool, ...] = (False, False, True)
    time_dim: int = 256
    groups: int = 8
    blocks: int = 1
    heads: int = 4
    mid_attention: bool = False
    dropout: float = 0.0
    conditioning_only: bool = False
    cond_channels: int = 1
    target_optics_input: bool = False

    def __post_init__(self) -> None:
        # accept lists (YAML, checkpoints) but store tuples so the config stays hashable
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "attention", tuple(self.attention))
        if not self.channels or not all(_pos_int(c) for c in self.channels):
            raise TilesrError(f"unet channels must be positive integers, got {self.channels!r}")
        if len(self.attention) != len(self.channels):
            raise TilesrError(
                f"unet attention needs one flag per level ({len(self.channels)}), "
                f"got {self.attention!r}"
            )
        for name in ("bottleneck", "time_dim", "groups", "blocks", "heads", "cond_channels"):
            value = getattr(self, name)
            if not _pos_int(value):
                raise TilesrError(f"unet {name} must be a positive integer, got {value!r}")
        if self.time_dim % 2:
            raise TilesrError(f"unet time_dim must be even, got {self.time_dim}")
        for width in (*self.channels, self.bottleneck):
            if width % self.groups:
                raise TilesrError(f"unet width {width} is not divisible by groups={self.groups}")
        with_attention = [c for c, a in zip(self.channels, self.attention, strict=True) if a]
        for width in with_attention + ([self.bottleneck] if self.mid_attention else []):
            if width % self.heads:
                raise TilesrError(f"unet width {width} is not divisible by heads={self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise TilesrError(f"unet dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (2 ** number of downsamplings)."""
        return 2 ** len(self.channels)

    @property
    def input_cond_channels(self) -> int:
        """Channels of ``forward``'s ``cond``: the conditioning and the target-optics plane."""
        return self.cond_channels + int(self.target_optics_input)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dictionary (lists, not tuples) for YAML and checkpoints."""
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["attention"] = list(self.attention)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults."""
        if not isinstance(data, dict):
            raise TilesrError(f"unet config must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise TilesrError(f"unknown unet config keys {unknown}")
        return cls(**data)


def _time_dim(cfg: UNetConfig) -> int:
    return 0 if cfg.conditioning_only else cfg.time_dim


def _pos_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _Level(nn.Module):
    """``blocks`` ResBlocks at one resolution, each optionally followed by attention."""

    def __init__(self, in_ch: int, out_ch: int, cfg: UNetConfig, attention: bool) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            ResBlock(
                in_ch if i == 0 else out_ch,
                out_ch,
                time_dim=_time_dim(cfg),
                groups=cfg.groups,
                dropout=cfg.dropout,
            )
            for i in range(cfg.blocks)
        )
        self.attn = nn.ModuleList(
            SelfAttention(out_ch, heads=cfg.heads, groups=cfg.groups)
            if attention
            else nn.Identity()
            for _ in range(cfg.blocks)
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        for res, attn in zip(self.res, self.attn, strict=True):
            x = attn(res(x, temb))
        return x


class UNet(nn.Module):
    """Conditional denoising U-Net.

    ``forward(noisy, cond, t)`` takes the noisy HR image and the conditioning image, both
    (N, 1, H, W) float32 with H and W multiples of :attr:`size_multiple`, and the
    training-schedule timesteps ``t`` (N,) as floats; it returns (N, 1, H, W): the noise,
    clean image or velocity, as the model was trained (its metadata's ``prediction``).
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else UNetConfig()
        self.config = cfg
        self.time_embed = None if cfg.conditioning_only else TimeEmbedding(cfg.time_dim)
        inputs = cfg.input_cond_channels + (0 if cfg.conditioning_only else 1)
        self.stem = nn.Conv2d(inputs, cfg.channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = cfg.channels[0]
        for width, attention in zip(cfg.channels, cfg.attention, strict=True):
            self.down.append(_Level(prev, width, cfg, attention))
            self.downsample.append(Downsample())
            prev = width
        # bottleneck: widen to cfg.bottleneck between the two convolutions only
        self.mid = ResBlock(
            prev,
            prev,
            time_dim=_time_dim(cfg),
            groups=cfg.groups,
            mid_ch=cfg.bottleneck,
            dropout=cfg.dropout,
        )
        self.mid_attn = (
            SelfAttention(prev, heads=cfg.heads, groups=cfg.groups)
            if cfg.mid_attention
            else nn.Identity()
        )
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for width, attention in reversed(list(zip(cfg.channels, cfg.attention, strict=True))):
            self.upsample.append(Upsample(prev, width))
            self.up.append(_Level(2 * width, width, cfg, attention))  # 2x: skip concatenated
            prev = width
        self.head = nn.Sequential(
            nn.GroupNorm(cfg.groups, prev), nn.SiLU(), nn.Conv2d(prev, 1, 3, padding=1)
        )

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self.config.size_multiple

    def forward(self, noisy: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            self._check_inputs(noisy, cond, t)
        if self.time_embed is None:  # regression: the image from the conditioning alone
            temb, x = None, self.stem(cond)
        else:
            temb = self.time_embed(t)
            x = self.stem(torch.cat([cond, noisy], dim=1))  # LR/cond first, by convention
        skips = []
        for level, down in zip(self.down, self.downsample, strict=True):
            x = level(x, temb)
            skips.append(x)
            x = down(x)
        x = self.mid_attn(self.mid(x, temb))
        for up, level in zip(self.upsample, self.up, strict=True):
            x = level(torch.cat([up(x), skips.pop()], dim=1), temb)
        return self.head(x)

    def _check_inputs(self, noisy: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> None:
        c = self.config.input_cond_channels
        if (
            noisy.ndim != 4
            or noisy.shape[1] != 1
            or cond.shape != (noisy.shape[0], c, *noisy.shape[2:])
        ):
            raise TilesrError(
                f"noisy and cond must have shapes (N, 1, H, W) and (N, {c}, H, W), "
                f"got {tuple(noisy.shape)} and {tuple(cond.shape)}"
            )
        if t.shape != (noisy.shape[0],):
            raise TilesrError(f"t must have shape ({noisy.shape[0]},), got {tuple(t.shape)}")
        height, width = noisy.shape[-2:]
        m = self.size_multiple
        if height % m or width % m:
            raise TilesrError(
                f"image size {height}x{width} is not a multiple of {m}, which this U-Net needs; "
                "pad the input"
            )
