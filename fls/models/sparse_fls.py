"""Sparse FLS: the Nature-CNN trunk with a Free-Lunch-Saliency attention module, and the paper's variants."""

from __future__ import annotations

from typing import Literal

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from fls.models.base import AttentionSite, FeatureExtractor, hidden_layer
from fls.models.catalog import ATTENTION_PLACES
from fls.models.layers import FLSAttention, normalize_over_positions, sparse_trunk

AttentionPlace = Literal["conv3", "conv1", "every_conv"]


class SparseFLS(FeatureExtractor):
    """Nature-CNN trunk whose feature maps are multiplied by a positive attention map from an FLS module.

    Args:
        sum_pool: sum the attended (64,7,7) features over positions (64 -> 512) instead of flattening (3136 -> 512).
        normalize_attention: divide the attention by its sum over positions before multiplying.
        fls_kernel: kernel size of the FLS module's two convolutions (3, or 1 for the "1x1 convs" variant).
        softplus_base2: base-2 softplus in the FLS module.
        final_relu: ReLU after the third conv (False: the "w/o final ReLU" variant, features may be negative).
        attention_at: "conv3" (after the last conv), "conv1" (after the first conv, the rest of the trunk runs
            on the attended features) or "every_conv" (one FLS module after each conv).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 512,
        sum_pool: bool = False,
        normalize_attention: bool = False,
        fls_kernel: int = 3,
        softplus_base2: bool = False,
        final_relu: bool = True,
        attention_at: AttentionPlace = "conv3",
    ):
        super().__init__(observation_space, features_dim)
        if attention_at not in ATTENTION_PLACES:
            raise ValueError(f"attention_at must be one of {ATTENTION_PLACES}, got {attention_at!r}")
        if sum_pool and attention_at != "conv3":
            raise ValueError("sum_pool pools the attended conv3 features, so it needs attention_at=conv3")
        self.sum_pool = sum_pool
        self.normalize_attention = normalize_attention
        self.final_relu = final_relu
        self.attention_at = attention_at
        self.convs = sparse_trunk(self.in_channels)
        attended = {"conv3": (2,), "conv1": (0,), "every_conv": (0, 1, 2)}[attention_at]
        # Keyed by conv index so the forward pass knows which outputs to attend.
        self.fls = nn.ModuleDict(
            {str(i): FLSAttention(self.convs[i].out_channels, fls_kernel, softplus_base2) for i in attended}
        )
        self.attention_sites = tuple(AttentionSite(f"conv{i + 1}", tuple(self.convs[: i + 1])) for i in attended)
        self.fc = hidden_layer(64 if sum_pool else 64 * 7 * 7, features_dim)
        self.finish_init()

    def _attend(self, index: int, x: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
        key = str(index)
        if key not in self.fls:
            return x
        a = self.fls[key](x)
        if self.normalize_attention:
            a = normalize_over_positions(a)
        maps.append(a)
        return x * a

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.scale(observations)
        maps: list[torch.Tensor] = []
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < last or self.final_relu:
                x = F.relu(x)
            x = self._attend(i, x, maps)
        self.last_attention = maps
        pooled = x.sum(dim=(2, 3)) if self.sum_pool else x.flatten(1)
        return self.fc(pooled)
