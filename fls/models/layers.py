"""Building blocks shared by the extractors: initialisation, the conv trunks and the FLS attention module."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

RELU_GAIN = math.sqrt(2.0)


def orthogonal_init(module: nn.Module, gain: float = RELU_GAIN) -> None:
    """Orthogonal weights with ``gain`` and zero biases for every conv and linear layer under ``module``."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(layer.weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def sparse_trunk(in_channels: int = 4) -> nn.ModuleList:
    """Nature-CNN convolutions (8/4, 4/2, 3/1; valid padding): 84x84 -> 20x20 -> 9x9 -> 7x7."""
    return nn.ModuleList(
        [
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
        ]
    )


def dense_trunk(in_channels: int = 4) -> nn.ModuleList:
    """Stride-1 'same' convolutions (7, 5, 3) that keep the full 84x84 resolution."""
    return nn.ModuleList(
        [
            nn.Conv2d(in_channels, 32, kernel_size=7, stride=1, padding=3),
            nn.Conv2d(32, 64, kernel_size=5, stride=1, padding=2),
            nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1),
        ]
    )


def softplus_base2(x: torch.Tensor) -> torch.Tensor:
    """Base-2 softplus log2(1 + 2^x): equals 1 at x = 0, so a zero pre-activation leaves features unchanged."""
    return F.softplus(x * math.log(2.0)) / math.log(2.0)


class FLSAttention(nn.Module):
    """The Free-Lunch-Saliency module: Conv(C->256, k) ReLU Conv(256->1, k) softplus -> a positive (B,1,H,W) map."""

    def __init__(self, in_channels: int, kernel_size: int = 3, base2: bool = False, hidden: int = 256):
        super().__init__()
        self.hidden = nn.Conv2d(in_channels, hidden, kernel_size, padding=kernel_size // 2)
        self.score = nn.Conv2d(hidden, 1, kernel_size, padding=kernel_size // 2)
        self.base2 = base2

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.score(F.relu(self.hidden(features)))
        return softplus_base2(logits) if self.base2 else F.softplus(logits)


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the H*W positions of each channel of a (B,C,H,W) tensor."""
    b, c, h, w = logits.shape
    return torch.softmax(logits.reshape(b, c, h * w), dim=-1).reshape(b, c, h, w)


# Below this sum a map is treated as all zero (softplus can underflow to exactly 0 for very negative inputs).
ATTENTION_SUM_FLOOR = 1e-30


def normalize_over_positions(attention: torch.Tensor) -> torch.Tensor:
    """Divide a non-negative (B,C,H,W) map by its sum over positions, so each channel sums to 1.

    A channel whose sum is below :data:`ATTENTION_SUM_FLOOR` (an underflowed, all-zero map) becomes the uniform
    distribution instead of 0/0 = NaN; the division uses a floored denominator so that no NaN reaches the gradient
    either. Maps with a normal sum are divided exactly as before.
    """
    total = attention.sum(dim=(2, 3), keepdim=True)
    divided = attention / total.clamp_min(ATTENTION_SUM_FLOOR)
    uniform = torch.full_like(attention, 1.0 / (attention.shape[2] * attention.shape[3]))
    return torch.where(total > ATTENTION_SUM_FLOOR, divided, uniform)
