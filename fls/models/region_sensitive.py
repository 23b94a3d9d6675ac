"""RS: the region-sensitive module of Yang et al. (two softmax attention channels over a normalised feature map)."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from fls.models.base import AttentionSite, FeatureExtractor, hidden_layer
from fls.models.layers import sparse_trunk, spatial_softmax


class RegionSensitive(FeatureExtractor):
    """pad 1 px -> Nature trunk -> f / ||f||_2 over channels -> ELU(1x1 conv 512) -> 1x1 conv 2 -> softmax over the
    49 positions of each channel -> a = sum of the two channels -> Linear(flatten(f * a)) 512.

    Args:
        pad_input: zero-pad the 84x84 input by one pixel on each side (86x86), as in the reference; False gives
            the "no pad" variant.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 512, pad_input: bool = True):
        super().__init__(observation_space, features_dim)
        self.pad = 1 if pad_input else 0
        self.convs = sparse_trunk(self.in_channels)
        self.hidden = nn.Conv2d(64, 512, kernel_size=1)
        self.score = nn.Conv2d(512, 2, kernel_size=1)
        self.attention_sites = (AttentionSite("conv3", tuple(self.convs), input_padding=self.pad),)
        self.fc = hidden_layer(64 * 7 * 7, features_dim)
        self.finish_init()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.scale(observations)
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        for conv in self.convs:
            x = F.relu(conv(x))
        f = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        weights = spatial_softmax(self.score(F.elu(self.hidden(f))))
        self.last_attention = [weights]
        a = weights.sum(dim=1, keepdim=True)
        return self.fc((f * a).flatten(1))
