"""Dense FLS: a stride-1 trunk that keeps 84x84 resolution, an FLS module on top, and sum-pooling."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch.nn import functional as F

from fls.models.base import AttentionSite, FeatureExtractor, hidden_layer
from fls.models.layers import FLSAttention, dense_trunk, normalize_over_positions


class DenseFLS(FeatureExtractor):
    """conv 7 -> conv 5 -> conv 3 ('same', stride 1) -> FLS attention a -> v = sum_{h,w} f*a (64) -> Linear 512.

    Always sum-pools: flattening a 64x84x84 map would need a 451,584-wide hidden layer.
    Options as in :class:`fls.models.sparse_fls.SparseFLS` (the paper's Dense FLS does not normalise).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 512,
        normalize_attention: bool = False,
        fls_kernel: int = 3,
        softplus_base2: bool = False,
        final_relu: bool = True,
    ):
        super().__init__(observation_space, features_dim)
        self.normalize_attention = normalize_attention
        self.final_relu = final_relu
        self.convs = dense_trunk(self.in_channels)
        self.fls = FLSAttention(64, fls_kernel, softplus_base2)
        self.attention_sites = (AttentionSite("conv3", tuple(self.convs)),)
        self.fc = hidden_layer(64, features_dim)
        self.finish_init()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.scale(observations)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1 or self.final_relu:
                x = F.relu(x)
        a = self.fls(x)
        if self.normalize_attention:
            a = normalize_over_positions(a)
        self.last_attention = [a]
        return self.fc((x * a).sum(dim=(2, 3)))
