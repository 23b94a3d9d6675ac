"""A Nature-CNN-like trunk with max-pooling after each convolution (the E-A3C Grad-CAM study's family)."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from fls.models.base import FeatureExtractor, hidden_layer


class MaxPoolCNN(FeatureExtractor):
    """conv k ('same', stride 1) -> ReLU -> max-pool 2, once per entry of ``channels``; flatten -> Linear 512.

    With the defaults (32, 32, 64, 64), k = 5: 84 -> 42 -> 21 -> 10 -> 5, i.e. 64*5*5 = 1600 inputs to the hidden layer.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 512,
        channels: Sequence[int] = (32, 32, 64, 64),
        kernel_size: int = 5,
    ):
        super().__init__(observation_space, features_dim)
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive widths, got {list(channels)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        widths = [self.in_channels, *map(int, channels)]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)
            for c_in, c_out in zip(widths, widths[1:], strict=False)
        )
        self.pool = nn.MaxPool2d(2)
        side = int(observation_space.shape[1])
        for _ in channels:
            side //= 2
        if side < 1:
            raise ValueError(f"{len(channels)} max-pools shrink an {observation_space.shape[1]}-pixel input to nothing")
        self.fc = hidden_layer(widths[-1] * side * side, features_dim)
        self.finish_init()

    def conv_features(self, observations: torch.Tensor) -> torch.Tensor:
        """The output of the last conv block (after ReLU and pooling)."""
        x = self.scale(observations)
        for conv in self.convs:
            x = self.pool(F.relu(conv(x)))
        return x

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv_features(observations).flatten(1))
