"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) at one conv layer of the policy.

The activations A (B, K, h, w) and g = dy/dA for the target y are read at one of two places:

* default: the output of the chosen module, for a Conv2d its output before the ReLU (the fls extractors apply
  ReLU functionally, so the conv is the module) -- what captum's ``LayerGradCam`` on the conv and the SB3
  Grad-CAM study read. Then g = 0 wherever the ReLU is off.
* ``rectified=True`` (``saliency.gradcam_rectified=true``): the ReLU's output, the rectified feature maps of
  the original Grad-CAM paper, and g = dy/d ReLU(A) there (not masked by the ReLU). The ReLU applied to the
  module's output is found while the forward pass runs (a torch function mode records ``relu`` called on that
  tensor), so it works for functional ReLUs and ``nn.ReLU`` modules alike; a layer whose output reaches no ReLU,
  or reaches the network also by another path, is refused.

The (h, w) map is upsampled bilinearly (half-pixel centres) to the observation size; one backward pass serves
the whole batch (the gradient of the sum of per-sample targets, the samples being independent).
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

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


_RELUS = (F.relu, torch.relu, torch.Tensor.relu)


class _ReluOf(TorchFunctionMode):
    """While active, records the result of every ReLU applied to the tensor ``source`` (set once it exists)."""

    def __init__(self) -> None:
        super().__init__()
        self.source: torch.Tensor | None = None
        self.results: list[torch.Tensor] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        result = func(*args, **(kwargs or {}))
        if func in _RELUS and self.source is not None and args and args[0] is self.source:
            self.results.append(result)
        return result


def capture_layer(
    policy: ActorCriticPolicy, layer: str, observations: torch.Tensor, target: Target, *, rectified: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward once, keeping the output of module ``layer``; return (activations, d target / d activations).

    ``rectified``: the activations are the ReLU applied to that output and the gradient is taken with respect
    to them (ConfigError if the output goes through no ReLU or also feeds the network by another path). The
    hook lives only for this forward pass. A layer the target does not depend on gets a zero gradient.
    """
    module = dict(policy.named_modules())[layer]
    captured: list[torch.Tensor] = []
    relu_of = _ReluOf()

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
        captured.append(output)
        relu_of.source = output if isinstance(output, torch.Tensor) else None

    handle = module.register_forward_hook(hook)
    try:
        if rectified:
            with relu_of:
                out = policy_forward(policy, observations)
        else:
            out = policy_forward(policy, observations)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ConfigError(f"layer '{layer}' ran {len(captured)} times in one forward pass; pick a layer that runs once")
    activations = captured[0]
    if not isinstance(activations, torch.Tensor) or activations.dim() != 4:
        shape = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations).__name__
        raise ConfigError(f"layer '{layer}' outputs {shape}, not a (B, C, h, w) feature map")
    y = target.select(out).sum()
    if not rectified:
        (grad,) = torch.autograd.grad(y, activations, allow_unused=True)
        return activations.detach(), torch.zeros_like(activations) if grad is None else grad
    if len(relu_of.results) != 1:
        raise ConfigError(
            f"saliency.gradcam_rectified needs a layer whose output goes through one ReLU; the output of '{layer}' "
            f"goes through {len(relu_of.results)} (pick another layer, or leave gradcam_rectified=false)"
        )
    rectified_maps = relu_of.results[0]
    grad, grad_before = torch.autograd.grad(y, [rectified_maps, activations], allow_unused=True)
    grad = torch.zeros_like(rectified_maps) if grad is None else grad
    # If the ReLU is the layer's only way into the network, the gradient before it is exactly the masked one.
    masked = grad * (activations > 0)
    if not torch.equal(torch.zeros_like(masked) if grad_before is None else grad_before, masked):
        raise ConfigError(
            f"saliency.gradcam_rectified: the output of '{layer}' feeds the network other than through its ReLU; "
            "the rectified maps do not carry all of its gradient (leave gradcam_rectified=false)"
        )
    return rectified_maps.detach(), grad


class GradCAM(SaliencyMethod):
    """ReLU(sum_k alpha_k A^k) with alpha_k = mean_{ij} dy/dA^k_ij.

    Args:
        layer: a module name from ``policy.named_modules()`` (e.g. ``"features_extractor.convs.1"``); None = the
            last conv of the feature trunk (``features_extractor.convs.2`` for fls models,
            ``features_extractor.cnn.4`` for SB3's NatureCNN), never a conv inside an attention module.
        rectified: read A after the layer's ReLU and take the gradient there (the original paper's rectified
            feature maps); False (default): the layer's own output, before the ReLU (captum's convention).
    """

    name = "gradcam"

    def __init__(self, *, layer: str | None = None, rectified: bool = False):
        if not isinstance(rectified, bool):
            raise ValueError(f"rectified must be true or false, got {rectified!r}")
        self.layer = layer
        self.rectified = rectified

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
        layer = self.layer_name(policy, target)
        activations, grad = capture_layer(policy, layer, observations, target, rectified=self.rectified)
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
