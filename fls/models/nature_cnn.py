"""Nature CNN (Mnih et al. 2015): the baseline without attention."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch.nn import functional as F

from fls.models.base import FeatureExtractor, hidden_layer
from fls.models.layers import sparse_trunk


class NatureCNN(FeatureExtractor):
    """conv 8/4 -> conv 4/2 -> conv 3/1 (ReLU each) -> flatten 64*7*7 -> Linear 512 ReLU."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 512):
        super().__init__(observation_space, features_dim)
        self.convs = sparse_trunk(self.in_channels)
        self.fc = hidden_layer(64 * 7 * 7, features_dim)
        self.finish_init()

    def conv_features(self, observations: torch.Tensor) -> torch.Tensor:
        """The (B,64,7,7) output of the last conv (after ReLU)."""
        x = self.scale(observations)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv_features(observations).flatten(1))
