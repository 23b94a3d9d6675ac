"""The "free" saliency of models with attention: the attention maps of the forward pass that chose the action.

The maps are rendered by :func:`fls.models.renderer.render_attention` (each attention cell spread uniformly over its
receptive field). No gradient and no second forward pass: either render the maps that the caller's own forward pass
left in the extractor (:meth:`AttentionSaliency.from_forward`), or let :meth:`AttentionSaliency.act` run the one
forward pass and return the action outputs together with the map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy

from fls.errors import ConfigError
from fls.models.renderer import render_attention
from fls.saliency.base import (
    METHOD_NAMES,
    PolicyOutput,
    SaliencyMethod,
    Target,
    TargetLike,
    as_observations,
    normalize_maps,
    policy_forward,
    trunk_extractor,
)


def models_with_attention() -> list[str]:
    """Names of the registered models that have attention (for error messages)."""
    from fls.models.registry import MODELS

    return sorted(name for name, spec in MODELS.items() if spec.attention)


def attention_extractor(policy: ActorCriticPolicy):
    """The policy's extractor if it has attention, else a ConfigError naming the methods that apply instead and
    the models that have attention."""
    extractor = trunk_extractor(policy)
    if not getattr(extractor, "has_attention", False):
        others = ", ".join(name for name in METHOD_NAMES if name != "attention")
        raise ConfigError(
            f"saliency method 'attention' needs a model with attention; {type(extractor).__name__} of "
            f"{type(policy).__name__} has none (methods that apply: {others}; models with attention: "
            f"{', '.join(models_with_attention())})"
        )
    return extractor


class AttentionSaliency(SaliencyMethod):
    """Built-in attention rendered in input pixels. The map does not depend on the target (it is ignored).

    ``size`` is the side of the rendered map (the observation side, 84).
    """

    name = "attention"

    def __init__(self, *, size: int = 84):
        self.size = int(size)

    def check(self, policy: ActorCriticPolicy) -> None:
        """ConfigError unless the policy's extractor has attention."""
        super().check(policy)
        attention_extractor(policy)

    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        # Standalone use: one forward pass without grad, then the maps it produced.
        with torch.no_grad():
            policy_forward(policy, observations)
        return render_attention(trunk_extractor(policy), size=self.size)

    def from_forward(
        self, policy: ActorCriticPolicy, attention: list[torch.Tensor] | None = None, *, normalize: bool = True
    ) -> torch.Tensor:
        """Render the maps of the policy's latest forward pass (or the given ``attention`` list), detached.

        Call it right after the forward pass that chose the action (``policy(obs)``, ``policy.predict(obs)``,
        :func:`fls.saliency.base.policy_forward`): it costs one transposed convolution, no extra forward.
        """
        extractor = attention_extractor(policy)
        maps = extractor.last_attention if attention is None else attention
        if not maps:
            raise ValueError("the policy has not run a forward pass yet: no attention to render")
        with torch.no_grad():
            rendered = render_attention(extractor, [a.detach() for a in maps], size=self.size)
        return normalize_maps(rendered) if normalize else rendered

    def act(
        self,
        policy: ActorCriticPolicy,
        observations: torch.Tensor | np.ndarray,
        *,
        normalize: bool = True,
    ) -> tuple[PolicyOutput, torch.Tensor]:
        """One forward pass (no grad, eval mode as in ``policy.predict``): its logits/values and its map.

        The caller picks the action from ``output.logits`` (argmax or a sample); the map belongs to that pass.
        """
        self.check(policy)
        obs = as_observations(observations, policy)
        was_training = policy.training
        policy.set_training_mode(False)
        try:
            with torch.no_grad():
                out = policy_forward(policy, obs)
        finally:
            policy.set_training_mode(was_training)
        return out, self.from_forward(policy, normalize=normalize)

    def raw(
        self,
        policy: ActorCriticPolicy,
        observations: torch.Tensor | np.ndarray,
        target: TargetLike | Sequence[int] | torch.Tensor = "action",
        *,
        actions: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unnormalised rendered attention (B, size, size); ``target``/``actions`` are accepted and ignored."""
        return super().raw(policy, observations, "action", actions=None)
