"""Perturbation saliency (Greydanus et al. 2018): how much the outputs change when a region is blurred out.

For each centre of a grid with stride ``stride`` (0, 5, ..., 80 on 84 pixels: 17 x 17 = 289 copies per
observation), the observation is blended with its blurred self (Gaussian, sigma 3) through a Gaussian mask
(sigma 5, peak 1 at the centre): I' = I (1 - M) + blur(I) M. The score is 1/2 ||logits(I) - logits(I')||^2 over
all pre-softmax action logits for the actor, 1/2 (V(I) - V(I'))^2 for the critic, or 1/2 (Delta logit_a)^2 for an
int target a. The score grid is interpolated so that each score sits exactly on its centre pixel (bilinear,
corner-aligned between centres; the few pixels past the last centre repeat its value).

Differences from the reference: all four stacked frames are blended with the same mask (``frames="all"``; the
reference's recurrent agents saw one frame, ``"newest"`` perturbs only the latest one), and the blur pads by
reflection with a radius of 4 sigma (scipy's default truncation; scipy's 'reflect' repeats the edge pixel, torch's
does not, so edge values differ slightly). Perturbed copies are evaluated in batches of ``max_batch``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.nn import functional as F

from fls.errors import ConfigError
from fls.saliency.base import SaliencyMethod, Target, TargetLike, check_positive_int, chunks, policy_forward


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, radius round(4 sigma), reflect padding."""
    radius = max(1, int(4 * sigma + 0.5))
    coords = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    n, c, h, w = images.shape
    x = images.reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def gaussian_masks(size: tuple[int, int], stride: int, sigma: float, device: torch.device) -> torch.Tensor:
    """(ny * nx, H, W) masks exp(-d^2 / (2 sigma^2)), peak 1, centred on the grid 0, stride, 2 stride, ..."""
    h, w = size
    ys = torch.arange(0, h, stride, device=device, dtype=torch.float32)
    xs = torch.arange(0, w, stride, device=device, dtype=torch.float32)
    rows = torch.arange(h, device=device, dtype=torch.float32)
    cols = torch.arange(w, device=device, dtype=torch.float32)
    gy = torch.exp(-((rows[None, :] - ys[:, None]) ** 2) / (2 * sigma**2))  # (ny, H)
    gx = torch.exp(-((cols[None, :] - xs[:, None]) ** 2) / (2 * sigma**2))  # (nx, W)
    return (gy[:, None, :, None] * gx[None, :, None, :]).reshape(len(ys) * len(xs), h, w)


def grid_to_pixels(scores: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """Interpolate (B, ny, nx) scores at centres (stride * i, stride * j) to (B, H, W) pixels.

    Bilinear with corner alignment over the span of the centres puts each score exactly on its centre pixel;
    pixels past the last centre take its value (replicate padding).
    """
    b, ny, nx = scores.shape
    span = (stride * (ny - 1) + 1, stride * (nx - 1) + 1)
    grid = scores.unsqueeze(1)
    if ny == 1 or nx == 1:
        grid = F.interpolate(grid, size=span, mode="nearest") if span != (ny, nx) else grid
    else:
        grid = F.interpolate(grid, size=span, mode="bilinear", align_corners=True)
    pad = (0, size[1] - span[1], 0, size[0] - span[0])
    return F.pad(grid, pad, mode="replicate").squeeze(1)


class Perturbation(SaliencyMethod):
    """Greydanus perturbation saliency of the actor (``target="action"``, all logits), the critic
    (``target="value"``) or one action's logit (int target). Taken ``actions`` do not change the actor score.

    Args:
        stride: grid step between mask centres, in pixels (5).
        mask_sigma: sigma of the Gaussian mask (5).
        blur_sigma: sigma of the blur blended in (3).
        frames: "all" (perturb the 4 stacked frames alike) or "newest".
        max_batch: perturbed copies per forward pass.
    """

    name = "perturbation"

    def __init__(
        self,
        *,
        stride: int = 5,
        mask_sigma: float = 5.0,
        blur_sigma: float = 3.0,
        frames: str = "all",
        max_batch: int = 64,
    ):
        self.stride = check_positive_int("stride", stride)
        if mask_sigma <= 0 or blur_sigma <= 0:
            raise ValueError(f"mask_sigma and blur_sigma must be > 0, got {mask_sigma} and {blur_sigma}")
        self.mask_sigma = float(mask_sigma)
        self.blur_sigma = float(blur_sigma)
        if frames not in ("all", "newest"):
            raise ConfigError(f"perturbation frames must be 'all' or 'newest', got {frames!r}")
        self.frames = frames
        self.max_batch = check_positive_int("max_batch", max_batch)

    def raw(
        self,
        policy: ActorCriticPolicy,
        observations: torch.Tensor | np.ndarray,
        target: TargetLike | Sequence[int] | torch.Tensor = "action",
        *,
        actions: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unnormalised score maps (B, H, W); with ``target="action"`` the taken ``actions`` are not used."""
        if isinstance(target, str) and target == "action":
            actions = None  # the actor score compares every logit, whichever action was taken
        return super().raw(policy, observations, target, actions=actions)

    def _effective_target(self, target: Target) -> Target:
        return target

    def _scores(self, clean, perturbed, target: Target, sample_index: torch.Tensor) -> torch.Tensor:
        """Per-copy scores; ``sample_index`` maps each perturbed copy to its observation."""
        if target.kind == "value":
            delta = clean.values[sample_index, 0] - perturbed.values[:, 0]
            return 0.5 * delta.pow(2)
        if target.actions is None:  # the actor: every logit
            return 0.5 * (clean.logits[sample_index] - perturbed.logits).pow(2).sum(dim=1)
        index = target.actions[sample_index].view(-1, 1)
        delta = clean.logits[sample_index].gather(1, index) - perturbed.logits.gather(1, index)
        return 0.5 * delta[:, 0].pow(2)

    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        target = self._effective_target(target)
        obs = observations.detach()
        b, c, h, w = obs.shape
        masks = gaussian_masks((h, w), self.stride, self.mask_sigma, obs.device)  # (M, H, W)
        m = masks.shape[0]
        channel_mask = torch.ones(c, device=obs.device)
        if self.frames == "newest":
            channel_mask = torch.zeros(c, device=obs.device)
            channel_mask[-1] = 1.0
        blurred = gaussian_blur(obs, self.blur_sigma)
        scores = torch.empty(b * m, device=obs.device)
        with torch.no_grad():
            clean = policy_forward(policy, obs)
            # Copy k is observation k // M perturbed at centre k % M; built chunk by chunk to bound memory.
            for part in chunks(b * m, self.max_batch):
                k = torch.arange(part.start, part.stop, device=obs.device)
                sample, centre = k // m, k % m
                weight = masks[centre].unsqueeze(1) * channel_mask.view(1, c, 1, 1)  # (n, C, H, W)
                perturbed = obs[sample] * (1 - weight) + blurred[sample] * weight
                scores[part] = self._scores(clean, policy_forward(policy, perturbed), target, sample)
        ny, nx = len(range(0, h, self.stride)), len(range(0, w, self.stride))
        return grid_to_pixels(scores.view(b, ny, nx), (h, w), self.stride)


class PerturbationCritic(Perturbation):
    """Perturbation saliency of the critic: 1/2 (V(I) - V(I'))^2, whatever ``target`` is. Options as
    :class:`Perturbation`."""

    name = "perturbation_critic"

    def _effective_target(self, target: Target) -> Target:
        return Target("value")
