"""Saliency maps for Atari policies (actor-critics, and DQN / QR-DQN Q-networks): the built-in attention ("free
lunch") and the usual post-hoc methods (Grad-CAM, Grad-CAM++, FullGrad, FullGrad++, gradient, SmoothGrad, VarGrad,
integrated gradients, perturbation), one interface ``method(policy, observations, target) -> (B, 84, 84)``, and
videos of them.

Example::

    method = get_method("gradcam")
    maps = method(policy, obs)             # (B, 84, 84) in [0, 1], each map divided by its own max
    raw = method.raw(policy, obs, "value")  # unnormalised, for metrics

Videos: :mod:`fls.saliency.video` (imported separately: it needs matplotlib and imageio).
"""

from fls.saliency.attention import AttentionSaliency
from fls.saliency.base import (
    PolicyOutput,
    SaliencyMethod,
    Target,
    make_target,
    normalize_maps,
    policy_forward,
    q_network,
    q_values,
)
from fls.saliency.cam import GradCAM, GradCAMPlusPlus
from fls.saliency.fullgrad import FullGrad, FullGradPlusPlus
from fls.saliency.gradients import Gradient, IntegratedGradients, SmoothGrad, VarGrad
from fls.saliency.perturbation import Perturbation, PerturbationCritic
from fls.saliency.registry import METHODS, get_method

__all__ = [
    "METHODS",
    "AttentionSaliency",
    "FullGrad",
    "FullGradPlusPlus",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradient",
    "IntegratedGradients",
    "Perturbation",
    "PerturbationCritic",
    "PolicyOutput",
    "SaliencyMethod",
    "SmoothGrad",
    "Target",
    "VarGrad",
    "get_method",
    "make_target",
    "normalize_maps",
    "policy_forward",
    "q_network",
    "q_values",
]
