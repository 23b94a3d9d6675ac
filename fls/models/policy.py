"""The actor-critic policy: extractor with the shared 512-unit layer, policy head (gain 0.01), value head (gain 1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
from stable_baselines3.common.policies import ActorCriticPolicy

from fls.models.layers import orthogonal_init
from fls.models.registry import extractor_kwargs


class FLSPolicy(ActorCriticPolicy):
    """SB3's actor-critic with the baselines initialisation done once.

    The extractor initialises itself (orthogonal, gain sqrt 2, zero bias: QR of the 3136x512 layer is not free,
    so SB3's second pass over it is switched off); the policy head gets gain 0.01 and the value head gain 1.
    """

    def _build(self, lr_schedule: Callable[[float], float]) -> None:
        super()._build(lr_schedule)
        orthogonal_init(self.action_net, gain=0.01)
        orthogonal_init(self.value_net, gain=1.0)


def policy_kwargs(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` for a model config: the extractor holds the shared 512-unit layer, so no extra MLP.

    Adam uses eps 1e-5 (baselines' ppo2). Initialisation is done by the extractor and :class:`FLSPolicy`.
    """
    cls, kwargs = extractor_kwargs(model_cfg)
    return {
        "features_extractor_class": cls,
        "features_extractor_kwargs": kwargs,
        "net_arch": [],
        "ortho_init": False,  # see FLSPolicy
        "normalize_images": False,  # extractors divide by 255 themselves
        "share_features_extractor": True,
        "optimizer_kwargs": {"eps": 1e-5},
    }


def build_policy(
    model_cfg: Mapping[str, Any],
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Discrete,
    lr_schedule: Callable[[float], float] = lambda _: 2.5e-4,
) -> ActorCriticPolicy:
    """Construct the actor-critic policy for a model config on given spaces."""
    return FLSPolicy(observation_space, action_space, lr_schedule, **policy_kwargs(model_cfg))


def describe_policy(policy: ActorCriticPolicy) -> str:
    """The module tree as ``print(policy)`` shows it, but a submodule registered under several names is written out
    once: SB3 keeps the one shared feature extractor as features_extractor, pi_ and vf_features_extractor."""
    first_name: dict[int, str] = {}
    lines = [f"{type(policy).__name__}("]
    for name, module in policy._modules.items():  # named_children() would hide the aliases altogether
        if module is None:
            continue
        if id(module) in first_name:
            text = f"the same module as ({first_name[id(module)]})"
        else:
            first_name[id(module)] = name
            text = repr(module).replace("\n", "\n  ")
        lines.append(f"  ({name}): {text}")
    lines.append(")")
    return "\n".join(lines)


def count_parameters(policy: ActorCriticPolicy) -> int:
    """Number of trainable parameters of the whole actor-critic."""
    return sum(p.numel() for p in policy.parameters() if p.requires_grad)
