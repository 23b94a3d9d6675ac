"""FullGrad (Srinivas & Fleuret 2019) and FullGrad++ (Bikineyev & Sadreddinov), over every biased conv of the policy.

Both need, from one forward/backward pass, the input gradient and the gradient at the output of each Conv2d that
has a bias (dy/db_c = sum_ij dy/dout_cij, so the per-position bias-gradient of channel c is b_c * dy/dout_cij).
All convs count, those inside attention modules too: their biases are part of the function being explained.
With the zero-bias initialisation an untrained model's bias terms are exactly zero and only the input term is left.
"""

from __future__ import annotations

import math

import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn
from torch.nn import functional as F

from fls.saliency.base import SaliencyMethod, Target, minmax_per_sample, policy_forward, resize_maps


def biased_convs(policy: nn.Module) -> list[nn.Conv2d]:
    """Every Conv2d of the policy that has a bias, each once, in module order."""
    return [m for m in policy.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]


def full_gradients(
    policy: ActorCriticPolicy, observations: torch.Tensor, target: Target
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[nn.Conv2d, torch.Tensor]]]:
    """One forward and one backward pass: (input x, dy/dx, [(conv, dy/d conv output)] for convs that y uses).

    The forward hooks exist only during the forward pass.
    """
    outputs: dict[nn.Conv2d, torch.Tensor] = {}
    handles = [
        conv.register_forward_hook(lambda module, _inputs, output: outputs.setdefault(module, output))
        for conv in biased_convs(policy)
    ]
    x = observations.requires_grad_(True)
    try:
        out = policy_forward(policy, x)
    finally:
        for handle in handles:
            handle.remove()
    convs = list(outputs)
    grads = torch.autograd.grad(target.select(out).sum(), [x, *(outputs[c] for c in convs)], allow_unused=True)
    input_grad = grads[0] if grads[0] is not None else torch.zeros_like(x)
    layer_grads = [(conv, g) for conv, g in zip(convs, grads[1:], strict=True) if g is not None]
    return x.detach(), input_grad, layer_grads


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    return conv.bias.detach().view(1, -1, 1, 1)


class FullGrad(SaliencyMethod):
    """FullGrad: psi(|x * dy/dx|) + sum_layers psi(|b * dy/d out|), psi = per-sample min-max to [0, 1] over
    (channels, positions), then bilinear resize to the input and sum over channels (the reference's order).

    The resize aligns corners (``align_corners=True``), as the reference implementation (idiap/fullgrad-saliency,
    ``saliency/fullgrad.py``) does. Half-pixel resizing would shift each layer's map by up to half a coarse
    pixel (measured: up to 0.14 of the peak on sparse_fls with random biases, Breakout frames). No options.
    """

    name = "fullgrad"

    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        x, input_grad, layer_grads = full_gradients(policy, observations, target)
        size = tuple(x.shape[-2:])
        total = minmax_per_sample((x * input_grad).abs()).sum(dim=1)
        for conv, grad in layer_grads:
            part = minmax_per_sample((_bias(conv) * grad).abs())
            # Bilinear resizing is linear, so summing the channels first gives the same map for less work.
            total = total + resize_maps(part.sum(dim=1, keepdim=True), size, align_corners=True)[:, 0]
        return total


def gaussian_kernel2d(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """A normalised (1, 1, size, size) Gaussian kernel."""
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = torch.outer(g, g)
    return (kernel / kernel.sum()).view(1, 1, size, size)


class FullGradPlusPlus(SaliencyMethod):
    """FullGrad++: sum_frames x * |dy/dx| + sum_layers sum_c resize(|b_c * (dy/d out_c)^2|), Gaussian-smoothed.

    The squared output gradient is the Grad-CAM++-like second-order weighting of the reference. Parts are summed
    without per-part normalisation (as the reference), then smoothed with a ``kernel`` x ``kernel`` Gaussian of
    ``sigma`` (defaults 3 and 2; replicate padding, so borders are not darkened) and normalised to [0, 1] by
    ``__call__`` (x >= 0 and the smoothing is positive, so the raw map is already >= 0).
    """

    name = "fullgrad++"

    def __init__(self, *, kernel: int = 3, sigma: float = 2.0):
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd int, got {kernel}")
        if not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.kernel = int(kernel)
        self.sigma = float(sigma)

    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        x, input_grad, layer_grads = full_gradients(policy, observations, target)
        size = tuple(x.shape[-2:])
        total = (x * input_grad.abs()).sum(dim=1)
        for conv, grad in layer_grads:
            part = (_bias(conv) * grad.pow(2)).abs()
            total = total + resize_maps(part.sum(dim=1, keepdim=True), size)[:, 0]
        pad = self.kernel // 2
        smoothed = F.conv2d(
            F.pad(total.unsqueeze(1), (pad,) * 4, mode="replicate"),
            gaussian_kernel2d(self.kernel, self.sigma, total.device),
        )
        return smoothed.squeeze(1)
