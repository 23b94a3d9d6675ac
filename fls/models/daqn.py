"""DAQN: the soft attention of DARQN (Sorokin et al.) without the recurrence."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from fls.models.base import AttentionSite, FeatureExtractor, hidden_layer
from fls.models.layers import sparse_trunk, spatial_softmax


class DAQN(FeatureExtractor):
    """Nature trunk -> tanh(1x1 conv 256) -> 1x1 conv 1 -> softmax over 49 positions -> v = sum f*a (64) -> 512."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 512):
        super().__init__(observation_space, features_dim)
        self.convs = sparse_trunk(self.in_channels)
        self.hidden = nn.Conv2d(64, 256, kernel_size=1)
        self.score = nn.Conv2d(256, 1, kernel_size=1)
        self.attention_sites = (AttentionSite("conv3", tuple(self.convs)),)
        self.fc = hidden_layer(64, features_dim)
        self.finish_init()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.scale(observations)
        for conv in self.convs:
            x = F.relu(conv(x))
        a = spatial_softmax(self.score(torch.tanh(self.hidden(x))))
        self.last_attention = [a]
        return self.fc((x * a).sum(dim=(2, 3)))
