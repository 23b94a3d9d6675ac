"""Input-gradient saliency: vanilla gradient (Simonyan et al. 2014), SmoothGrad / VarGrad (rl-attention's
settings) and integrated gradients (Sundararajan et al. 2017, through captum).

Gradients are taken with respect to the observation in its own units (pixel values 0..255); the maps are per
input pixel, so the four stacked frames are collapsed with the ``frames`` option: ``"max"`` (Simonyan's rule for
colour channels, the default of ``gradient``), ``"sum"`` (the default of the others: summed squared gradients are
the squared norm over the stack, summed |attributions| the pixel's total share) or ``"newest"`` (latest frame only).

The vanilla gradient and the noisy copies are differentiated directly with :func:`torch.autograd.grad` rather than
captum's ``Saliency``/``NoiseTunnel``: one forward pass then both chooses the greedy action and gives its
gradient, and ``NoiseTunnel`` draws its noise from the global RNG, which would change the agent's own sampling.
Noise here comes from a ``torch.Generator`` seeded per call (on the policy's device), so maps are reproducible and
the global RNG is untouched.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS
from stable_baselines3.common.policies import ActorCriticPolicy

from fls.errors import ConfigError
from fls.saliency.base import (
    FrameReduce,
    SaliencyMethod,
    Target,
    check_frames_option,
    check_positive_int,
    chunks,
    policy_forward,
    reduce_frames,
)


def input_gradient(policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
    """d target / d observations, (B, C, H, W), one forward and one backward pass for the whole batch."""
    x = observations.detach().requires_grad_(True)
    out = policy_forward(policy, x)
    (grad,) = torch.autograd.grad(target.select(out).sum(), x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


class Gradient(SaliencyMethod):
    """|dy/dx|, the stacked frames collapsed by ``frames`` (default: max over the 4 frames)."""

    name = "gradient"

    def __init__(self, *, frames: FrameReduce = "max"):
        self.frames = check_frames_option(frames)

    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        return reduce_frames(input_gradient(policy, observations, target).abs(), self.frames)


class SmoothGrad(SaliencyMethod):
    """Mean over ``n_samples`` noisy copies of the squared gradient (rl-attention's "SMOOTHGRAD").

    Args:
        n_samples: noisy copies per observation (50).
        noise_level: noise sigma as a fraction of each observation's value range, sigma = 0.15 (max - min).
        seed: seed of the per-call noise generator.
        max_batch: network inputs per forward/backward pass (bounds memory: dense_fls keeps 84x84 maps).
        frames: collapse of the stacked frames, default "sum".

    rl-attention also counts the clean input as its first sample; here all ``n_samples`` copies are noisy.
    """

    name = "smoothgrad"
    statistic: Literal["mean", "var"] = "mean"

    def __init__(
        self,
        *,
        n_samples: int = 50,
        noise_level: float = 0.15,
        seed: int = 0,
        max_batch: int = 64,
        frames: FrameReduce = "sum",
    ):
        self.n_samples = check_positive_int("n_samples", n_samples)
        if not math.isfinite(noise_level) or noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        self.noise_level = float(noise_level)
        self.seed = int(seed)
        self.max_batch = check_positive_int("max_batch", max_batch)
        self.frames = check_frames_option(frames)

    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        obs = observations.detach()
        batch = obs.shape[0]
        target = target.resolved(policy, obs)
        span = obs.flatten(1).amax(dim=1) - obs.flatten(1).amin(dim=1)
        sigma = (self.noise_level * span).view(1, batch, 1, 1, 1)
        generator = torch.Generator(device=obs.device)
        generator.manual_seed(self.seed)
        # Float64 running sums: the variance is a difference of two close sums of tiny squared gradients.
        total = torch.zeros_like(obs, dtype=torch.float64)
        total_sq = torch.zeros_like(obs, dtype=torch.float64)
        per_pass = max(1, self.max_batch // batch)
        for part in chunks(self.n_samples, per_pass):
            copies = part.stop - part.start
            noise = torch.randn((copies, *obs.shape), generator=generator, device=obs.device, dtype=obs.dtype)
            noisy = (obs.unsqueeze(0) + sigma * noise).flatten(0, 1)
            repeated = Target(target.kind, None if target.actions is None else target.actions.repeat(copies))
            squared = input_gradient(policy, noisy, repeated).pow(2).view(copies, *obs.shape).double()
            total += squared.sum(dim=0)
            total_sq += squared.pow(2).sum(dim=0)
        mean = total / self.n_samples
        if self.statistic == "mean":
            per_frame = mean
        else:
            per_frame = (total_sq / self.n_samples - mean.pow(2)).clamp_min(0.0)
        return reduce_frames(per_frame.float(), self.frames)


class VarGrad(SmoothGrad):
    """Variance over ``n_samples`` noisy copies of the squared gradient (rl-attention's "VARGRAD").

    Population variance (ddof 0, as numpy's ``var`` there). Options as :class:`SmoothGrad`.
    """

    name = "vargrad"
    statistic = "var"


class IntegratedGradients(SaliencyMethod):
    """captum's integrated gradients from an all-zero (black) baseline, |attribution| collapsed by ``frames``.

    Args:
        n_steps: points of the path integral (50, captum's default).
        method: captum's integration rule ("gausslegendre", "riemann_trapezoid", ...).
        max_batch: network inputs per forward/backward pass (captum's ``internal_batch_size``).
        frames: collapse of the stacked frames, default "sum".
    """

    name = "integrated_gradients"

    def __init__(
        self, *, n_steps: int = 50, method: str = "gausslegendre", max_batch: int = 64, frames: FrameReduce = "sum"
    ):
        self.n_steps = check_positive_int("n_steps", n_steps)
        if method not in SUPPORTED_METHODS:
            valid = ", ".join(SUPPORTED_METHODS)
            raise ConfigError(f"integrated_gradients method must be one of {valid}, got {method!r}")
        self.method = method
        self.max_batch = check_positive_int("max_batch", max_batch)
        self.frames = check_frames_option(frames)

    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        obs = observations.detach()
        target = target.resolved(policy, obs)
        if target.kind == "value":

            def forward(x: torch.Tensor) -> torch.Tensor:
                return policy_forward(policy, x).values

            index: int | torch.Tensor = 0
        else:

            def forward(x: torch.Tensor) -> torch.Tensor:
                return policy_forward(policy, x).logits

            index = target.indices()
        attributions = CaptumIntegratedGradients(forward).attribute(
            obs,
            baselines=torch.zeros_like(obs),
            target=index,
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=max(self.max_batch, obs.shape[0]),
        )
        return reduce_frames(attributions.detach().abs(), self.frames)
