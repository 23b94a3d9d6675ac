"""Common base of all feature extractors: input scaling, the 512-unit hidden layer and attention bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from fls.models.layers import normalize_over_positions, orthogonal_init

ENTROPY_EPS = 1e-7


@dataclass(frozen=True)
class AttentionSite:
    """Where an attention map lives: the layers from the input to its grid, and any zero padding of the input.

    The renderer derives each map's receptive field from these layers, so it cannot drift from the architecture.
    """

    name: str
    layers: tuple[nn.Module, ...]
    input_padding: int = 0


class FeatureExtractor(BaseFeaturesExtractor):
    """Base class: takes uint8 (B,4,84,84) observations, divides by 255 inside, outputs ``features_dim`` features.

    Extractors with attention list their ``attention_sites`` and store the maps of the latest forward pass in
    ``last_attention`` (one (B,C,h,w) tensor per site, still attached to the graph so that a loss on the attention
    and the saliency renderer use the very pass that produced the features and the action).
    """

    attention_sites: tuple[AttentionSite, ...] = ()

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 512):
        super().__init__(observation_space, features_dim)
        self.last_attention: list[torch.Tensor] | None = None

    def __getstate__(self) -> dict:
        """Copies and pickles leave out the maps of the latest forward pass: they belong to that pass's autograd
        graph, which cannot be copied (``copy.deepcopy`` of a policy after a forward with gradients would fail)."""
        state = super().__getstate__()
        state["last_attention"] = None
        return state

    @property
    def has_attention(self) -> bool:
        """Whether this extractor computes attention maps."""
        return len(self.attention_sites) > 0

    @property
    def in_channels(self) -> int:
        return int(self._observation_space.shape[0])

    def scale(self, observations: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (or floats in 0..255) -> floats in 0..1, laid out channels-last.

        A channels-last input makes the convolutions take oneDNN's channels-last kernels, which on a CPU run a
        PPO minibatch's forward + backward about 1.2-1.4x faster than the default layout (weights can stay as
        they are, so SB3's own initialisation and loading keep working).
        """
        return (observations.float() / 255.0).contiguous(memory_format=torch.channels_last)

    def finish_init(self) -> None:
        """Orthogonal init (gain sqrt 2, zero bias) of every conv and linear layer; call at the end of __init__."""
        orthogonal_init(self)

    def attention_entropy(self, attention: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Per-sample entropy (B,) of the attention, each channel normalised to a distribution over positions.

        Channels and sites are summed (a two-channel softmax has at most 2*ln(H*W)). H = -sum p*log(p + 1e-7).
        An all-zero (underflowed) map counts as uniform (see :func:`~fls.models.layers.normalize_over_positions`).
        """
        maps = self.last_attention if attention is None else attention
        if not maps:
            raise ValueError(
                f"{type(self).__name__} has no attention map (run a forward pass of a model with attention)"
            )
        total = None
        for a in maps:
            p = normalize_over_positions(a)
            h = -(p * torch.log(p + ENTROPY_EPS)).sum(dim=(1, 2, 3))
            total = h if total is None else total + h
        return total


def hidden_layer(in_features: int, features_dim: int = 512) -> nn.Sequential:
    """The shared Linear(in -> 512) + ReLU layer that feeds both the policy and the value heads."""
    return nn.Sequential(nn.Linear(in_features, features_dim), nn.ReLU())
