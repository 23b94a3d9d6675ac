"""Attention -> saliency: spread each attention cell uniformly over its receptive field (transposed convolution
with a ones kernel), with kernel, stride and padding derived from the extractor's own layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from fls.models.base import FeatureExtractor

if TYPE_CHECKING:
    from PIL import ImageFont

RAW_FRAME_SIZE = (210, 160)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one cell of a layer stack: its size, the stride between cells and the total padding."""

    kernel: int
    stride: int
    padding: int


def _pair_value(value: int | Sequence[int], name: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"non-square {name} {tuple(value)} is not supported by the renderer")
    return int(value[0])


def receptive_field(layers: Sequence[nn.Module]) -> ReceptiveField:
    """Compose the kernel/stride/padding of conv and pooling layers into one receptive field (input units)."""
    kernel, stride, padding = 1, 1, 0
    for layer in layers:
        if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            raise TypeError(f"cannot derive a receptive field through {type(layer).__name__}")
        k = _pair_value(layer.kernel_size, "kernel")
        s = _pair_value(layer.stride, "stride")
        p = _pair_value(layer.padding, "padding")
        d = _pair_value(getattr(layer, "dilation", 1), "dilation")
        kernel += (d * (k - 1)) * stride
        padding += p * stride
        stride *= s
    return ReceptiveField(kernel, stride, padding)


def box_matrix(cells: int, field: ReceptiveField, out_size: int, shift: int, like: torch.Tensor) -> torch.Tensor:
    """(cells, out_size) 0/1 matrix: entry (i, y) is 1 when output pixel y lies in the receptive field of cell i.

    ``shift`` is the canvas index of output pixel 0 (the total zero padding in front of the input).
    """
    pixels = torch.arange(out_size, device=like.device) + shift
    starts = torch.arange(cells, device=like.device) * field.stride
    inside = (pixels[None, :] >= starts[:, None]) & (pixels[None, :] < starts[:, None] + field.kernel)
    return inside.to(like.dtype)


def spread(grid: torch.Tensor, field: ReceptiveField, out_size: int, offset: int = 0) -> torch.Tensor:
    """Spread each cell of a (B,C,h,w) grid uniformly over its field: out[i] = sum of cells whose field covers i.

    This is a transposed convolution with a ones kernel, cropped to the input; because the kernel is a box it
    factorises into two small matrix products (rows^T @ grid @ cols), an order of magnitude cheaper on a CPU.
    ``offset`` is extra zero padding of the input (in input units) on top of the layers' own padding.
    """
    shift = field.padding + offset
    rows = box_matrix(grid.shape[-2], field, out_size, shift, grid)
    cols = box_matrix(grid.shape[-1], field, out_size, shift, grid)
    return rows.T @ grid @ cols


def render_attention(
    extractor: FeatureExtractor, attention: list[torch.Tensor] | None = None, size: int = 84
) -> torch.Tensor:
    """Render an extractor's attention as a non-negative (B, size, size) map in input pixels.

    Maps at several depths (FLS after every conv) are first summed on the grid of the shallowest one, each deeper
    map spread over its receptive field relative to that grid, then the sum is spread to the input. The channels
    of a multi-channel map (RS) are summed. Uses ``extractor.last_attention`` unless ``attention`` is given.
    """
    if not extractor.has_attention:
        raise ValueError(f"{type(extractor).__name__} has no attention to render")
    maps = extractor.last_attention if attention is None else attention
    if maps is None:
        raise ValueError("no attention yet: run a forward pass first or pass the maps")
    sites = extractor.attention_sites
    base_index = min(range(len(sites)), key=lambda i: len(sites[i].layers))
    base = sites[base_index]
    base_size = maps[base_index].shape[-1]
    grid = None
    for site, a in zip(sites, maps, strict=False):
        a = a.sum(dim=1, keepdim=True)
        if site is not base:
            a = spread(a, receptive_field(site.layers[len(base.layers) :]), base_size)
        grid = a if grid is None else grid + a
    rendered = spread(grid, receptive_field(base.layers), size, offset=base.input_padding)
    return rendered.squeeze(1).clamp_min(0.0)


def upsample_to_frame(maps: torch.Tensor, size: tuple[int, int] = RAW_FRAME_SIZE) -> torch.Tensor:
    """Bilinear (half-pixel centres) upsampling of (B,H,W) maps to the raw Atari frame, 210x160 by default."""
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


@cache
def label_font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels, for the titles and captions drawn on frames (loaded once per size:
    loading costs about a millisecond, more than drawing a frame's labels)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()
