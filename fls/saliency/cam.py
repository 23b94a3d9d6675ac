"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) at one conv layer of the policy.

The activations A (B, K, h, w) are the output of the chosen module (for a Conv2d: before its ReLU, because the
fls extractors apply ReLU functionally and only the conv is a module), and g = dy/dA for the target y. The (h, w)
map is upsampled bilinearly (half-pixel centres) to the observation size; one backward pass serves the whole
batch (the gradient of the sum of per-sample targets, the samples being independent).
"""

from __future__ import annotations

import torch
from stable_baselines3.common.policies import ActorCriticPolicy

from fls.errors import ConfigError
from fls.saliency.base import (
    SaliencyMethod,
    Target,
    conv_layer_names,
    last_trunk_conv,
    policy_forward,
    resize_maps,
)

GRADCAM_PP_EPS = 1e-7


def capture_layer(
    policy: ActorCriticPolicy, layer: str, observations: torch.Tensor, target: Target
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward once, keeping the output of module ``layer``; return (activations, d target / d activations).

    The hook lives only for this forward pass. A layer the target does not depend on gets a zero gradient.
    """
    module = dict(policy.named_modules())[layer]
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _inputs, output: captured.append(output))
    try:
        out = policy_forward(policy, observations)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ConfigError(f"layer '{layer}' ran {len(captured)} times in one forward pass; pick a layer that runs once")
    activations = captured[0]
    if not isinstance(activations, torch.Tensor) or activations.dim() != 4:
        shape = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations).__name__
        raise ConfigError(f"layer '{layer}' outputs {shape}, not a (B, C, h, w) feature map")
    (grad,) = torch.autograd.grad(target.select(out).sum(), activations, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(activations)
    return activations.detach(), grad


class GradCAM(SaliencyMethod):
    """ReLU(sum_k alpha_k A^k) with alpha_k = mean_{ij} dy/dA^k_ij.

    Args:
        layer: a module name from ``policy.named_modules()`` (e.g. ``"features_extractor.convs.1"``); None = the
            last conv of the feature trunk (``features_extractor.convs.2`` for fls models,
            ``features_extractor.cnn.4`` for SB3's NatureCNN), never a conv inside an attention module.
    """

    name = "gradcam"

    def __init__(self, *, layer: str | None = None):
        self.layer = layer

    def check(self, policy: ActorCriticPolicy) -> None:
        """ConfigError if ``layer`` is not a module of this policy (the message lists its conv layers)."""
        super().check(policy)
        if self.layer is not None and self.layer not in dict(policy.named_modules()):
            raise ConfigError(
                f"unknown layer '{self.layer}' for saliency method '{self.name}' "
                f"(valid conv layers: {', '.join(conv_layer_names(policy))})"
            )

    def layer_name(self, policy: ActorCriticPolicy, target: Target | None = None) -> str:
        """The module explained for this policy and target."""
        return self.layer if self.layer is not None else last_trunk_conv(policy, target)

    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        activations, grad = capture_layer(policy, self.layer_name(policy, target), observations, target)
        cam = torch.relu((self._weights(activations, grad)[:, :, None, None] * activations).sum(dim=1))
        return resize_maps(cam.unsqueeze(1), tuple(observations.shape[-2:])).squeeze(1)

    @staticmethod
    def _weights(activations: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return grad.mean(dim=(2, 3))


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++: weights_k = sum_ij alpha_kij ReLU(g_kij), alpha = g^2 / (2 g^2 + (sum_ab A^k_ab) g^3 + eps).

    alpha is set to 0 where g = 0 (as in the reference implementations), eps = 1e-7. Options as :class:`GradCAM`.
    """

    name = "gradcam++"

    @staticmethod
    def _weights(activations: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        g2 = grad.pow(2)
        g3 = g2 * grad
        total = activations.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + total * g3 + GRADCAM_PP_EPS)
        alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
        return (alpha * torch.relu(grad)).sum(dim=(2, 3))
