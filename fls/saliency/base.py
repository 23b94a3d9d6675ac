"""The common interface of all saliency methods: targets, the policy forward pass, state guards and normalisation.

Every method is called as ``method(policy, observations, target, actions=None)`` and returns a non-negative
(B, H, W) float map per observation (H, W = 84, 84 for Atari), on the policy's device:

* ``policy`` is an SB3 :class:`~stable_baselines3.common.policies.ActorCriticPolicy` with a discrete action space
  (an fls :class:`~fls.models.policy.FLSPolicy` or SB3's own ``"CnnPolicy"``, e.g. ``PPO.load(zip).policy``), or
  a Q-network policy: SB3's ``DQNPolicy`` or sb3-contrib's ``QRDQNPolicy`` (``DQN.load(zip).policy``).
* ``observations`` are the stacked frames the policy acts on, (B, 4, 84, 84), uint8 (or floats in 0..255).
* ``target`` is what is explained: ``"action"`` (the pre-softmax logit of an action: the greedy one, or the
  taken ones given as ``actions``), ``"value"`` (the critic's value) or an int action index. For a Q-network the
  action scores are the Q-values (QR-DQN: the mean of the action's quantiles) and the value is max_a Q(s, a), so
  ``"action"`` explains Q(s, a) of the action taken; only :func:`policy_forward` knows the difference.

**Normalisation.** ``method(...)`` divides each map by its own maximum (an all-zero map stays zero), so every
map lies in [0, 1] with its peak at 1. Dividing (rather than min-max) keeps 0 meaning "no saliency" and keeps the
ratios between regions, which is what overlays and distribution-based metrics (KL, NSS, AUC) read; min-max would
shift a map that is positive everywhere (softmax attention) and change those ratios. ``method.raw(...)`` returns
the unnormalised non-negative maps (method units) for metrics that need them.

**No side effects.** A method call runs the policy in eval mode and restores every module's training flag, removes
the hooks it adds, never writes ``.grad`` of parameters (gradients come from :func:`torch.autograd.grad`), never
touches ``requires_grad`` of parameters, restores each extractor's ``last_attention`` (so a loss that reads the
attention of the policy's own forward pass is unaffected) and never draws from the global torch/numpy RNG.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn
from torch.nn import functional as F

from fls.errors import ConfigError

TargetLike = Literal["action", "value"] | int
FrameReduce = Literal["max", "sum", "newest"]
TARGET_NAMES: tuple[str, ...] = ("action", "value")
FRAME_REDUCTIONS: tuple[str, ...] = ("max", "sum", "newest")
METHOD_NAMES: list[str] = []
"""The registered methods' names in registry order, filled by :mod:`fls.saliency.registry` when it builds the
registry: a method's error message may name the others, and its module cannot import the registry that imports it."""


@dataclass(frozen=True)
class PolicyOutput:
    """The action-relevant outputs of one forward pass.

    ``logits`` are the action scores (B, A): the pre-softmax logits of an actor-critic (``policy.action_net``
    output; the ``Categorical`` distribution's ``logits`` are these minus their logsumexp, so both give the same
    argmax), or the Q-values of a Q-network. ``values`` (B, 1) are the critic's values, or max_a Q(s, a).
    """

    logits: torch.Tensor
    values: torch.Tensor


def q_network(policy: nn.Module) -> nn.Module | None:
    """The online Q-network of a DQN (``q_net``) or QR-DQN (``quantile_net``) policy; None for an actor-critic.

    The target network (``q_net_target`` / ``quantile_net_target``) only serves training: it is never explained.
    """
    for name in ("q_net", "quantile_net"):
        module = getattr(policy, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


def q_values(policy: BasePolicy, observations: torch.Tensor) -> torch.Tensor:
    """(B, A) action values of a Q-network policy: DQN's Q(s, .), QR-DQN's mean over its quantiles."""
    network = q_network(policy)
    if network is None:
        raise ConfigError(f"{type(policy).__name__} is not a Q-network policy (DQN, QR-DQN)")
    values = network(observations)
    # QR-DQN's QuantileNetwork returns (B, n_quantiles, A); the action value is the quantiles' mean.
    return values.mean(dim=1) if values.dim() == 3 else values


def policy_forward(policy: BasePolicy, observations: torch.Tensor) -> PolicyOutput:
    """Run the policy once and return action scores and values (the computation of ``policy.forward``).

    Actor-critics: logits and the critic's values, for shared and separate actor/critic extractors. Q-networks
    (DQN, QR-DQN): the Q-values and max_a Q. ``observations`` may be floats in 0..255 that require grad: both the
    fls extractors and SB3's ``preprocess_obs`` only call ``.float()`` (and divide by 255).
    """
    if q_network(policy) is not None:
        q = q_values(policy, observations)
        return PolicyOutput(q, q.max(dim=1, keepdim=True).values)
    features = policy.extract_features(observations)
    if policy.share_features_extractor:
        latent_pi, latent_vf = policy.mlp_extractor(features)
    else:
        pi_features, vf_features = features
        latent_pi = policy.mlp_extractor.forward_actor(pi_features)
        latent_vf = policy.mlp_extractor.forward_critic(vf_features)
    return PolicyOutput(policy.action_net(latent_pi), policy.value_net(latent_vf))


@dataclass(frozen=True)
class Target:
    """A resolved target: the critic's value, or one action logit per sample (``actions``; None = greedy)."""

    kind: Literal["action", "value"]
    actions: torch.Tensor | None = None

    def select(self, out: PolicyOutput) -> torch.Tensor:
        """The (B,) scalars to explain from a forward pass (greedy actions are taken from this very pass)."""
        if self.kind == "value":
            return out.values[:, 0]
        index = out.logits.detach().argmax(dim=1) if self.actions is None else self.actions
        return out.logits.gather(1, index.view(-1, 1))[:, 0]

    def resolved(self, policy: ActorCriticPolicy, observations: torch.Tensor) -> Target:
        """Fix greedy actions on these (clean) observations, for methods that evaluate the net elsewhere.

        SmoothGrad, VarGrad and integrated gradients evaluate the network on noisy or scaled inputs; the action
        to explain must be the one chosen on the real observation, not re-chosen on each noisy copy.
        """
        if self.kind == "value" or self.actions is not None:
            return self
        with torch.no_grad():
            greedy = policy_forward(policy, observations).logits.argmax(dim=1)
        return Target("action", greedy)

    def indices(self) -> torch.Tensor:
        """Per-sample output indices for captum: the action, or 0 (the single value output)."""
        if self.kind == "value":
            raise ValueError("value targets have no action index")
        if self.actions is None:
            raise ValueError("resolve the greedy actions first (Target.resolved)")
        return self.actions


def make_target(
    target: TargetLike | Sequence[int] | torch.Tensor,
    actions: Sequence[int] | np.ndarray | torch.Tensor | None,
    batch: int,
    n_actions: int,
    device: torch.device,
) -> Target:
    """Turn the user's ``target`` / ``actions`` into a :class:`Target`, with one-line errors naming the choices.

    ``target`` may also be a per-sample sequence of action indices (the same as ``"action"`` with ``actions``).
    """
    if isinstance(target, str):
        if target not in TARGET_NAMES:
            raise ConfigError(f"unknown saliency target '{target}' (valid: action, value, or an action index)")
        if target == "value":
            return Target("value")
        if actions is None:
            return Target("action")
        index = torch.as_tensor(np.asarray(actions), dtype=torch.long, device=device).flatten()
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        index = torch.full((batch,), int(target), dtype=torch.long, device=device)
    else:
        index = torch.as_tensor(np.asarray(target), dtype=torch.long, device=device).flatten()
    if index.numel() != batch:
        raise ValueError(f"got {index.numel()} actions for a batch of {batch} observations")
    if batch and (int(index.min()) < 0 or int(index.max()) >= n_actions):
        raise ConfigError(f"action index out of range: the policy has actions 0..{n_actions - 1}")
    return Target("action", index)


def as_observations(observations: torch.Tensor | np.ndarray, policy: ActorCriticPolicy) -> torch.Tensor:
    """A fresh float32 (B, C, H, W) copy in 0..255 on the policy's device (safe to mark requires_grad)."""
    obs = torch.as_tensor(np.asarray(observations) if not isinstance(observations, torch.Tensor) else observations)
    if obs.dim() != 4:
        raise ValueError(f"observations must be a (B, C, H, W) batch, got shape {tuple(obs.shape)}")
    expected = tuple(policy.observation_space.shape)
    if tuple(obs.shape[1:]) != expected:
        raise ValueError(f"observations of shape {tuple(obs.shape[1:])} do not fit the policy's {expected}")
    # clone(): never alias (or later mark requires_grad on) the caller's tensor.
    return obs.to(device=policy.device, dtype=torch.float32).clone()


@contextmanager
def guarded(policy: ActorCriticPolicy) -> Iterator[None]:
    """Run in eval mode with grad enabled, then restore every module's training flag and ``last_attention``.

    Grad is enabled (and inference mode left) so that methods work when called from ``torch.no_grad()`` code.
    """
    training = [(module, module.training) for module in policy.modules()]
    attention = [(m, m.last_attention) for m in policy.modules() if hasattr(m, "last_attention")]
    policy.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for module, flag in training:
            module.training = flag
        for module, maps in attention:
            module.last_attention = maps


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Divide each (H, W) map of a (B, H, W) batch by its own maximum (all-zero maps stay zero).

    No epsilon floor: raw maps can be tiny (squared input gradients of an untrained net are ~1e-13) and must
    still reach 1.
    """
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1)
    return torch.where(peak > 0, maps / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(maps))


def minmax_per_sample(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each sample of a (B, ...) tensor to [0, 1] over all its other dims (constant -> 0)."""
    shape = (-1, *([1] * (x.dim() - 1)))
    low = x.flatten(1).amin(dim=1).view(shape)
    span = x.flatten(1).amax(dim=1).view(shape) - low
    return torch.where(span > 0, (x - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(x))


def resize_maps(maps: torch.Tensor, size: tuple[int, int], *, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) maps; a no-op when already at ``size``.

    ``align_corners=False`` (default): half-pixel centres, each map pixel covers its share of the input.
    ``True``: the corner pixels of the map land on the corner pixels of the input (FullGrad's reference).
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=align_corners)


def reduce_frames(per_frame: torch.Tensor, how: FrameReduce) -> torch.Tensor:
    """Collapse the stacked-frame axis of a non-negative (B, 4, H, W) map: max, sum, or the newest frame only."""
    if how == "max":
        return per_frame.amax(dim=1)
    if how == "sum":
        return per_frame.sum(dim=1)
    if how == "newest":
        return per_frame[:, -1]
    raise ConfigError(f"unknown frame reduction '{how}' (valid: {', '.join(FRAME_REDUCTIONS)})")


def check_frames_option(how: str) -> str:
    """Validate a ``frames=`` option at construction time."""
    if how not in FRAME_REDUCTIONS:
        raise ConfigError(f"saliency option frames must be one of {', '.join(FRAME_REDUCTIONS)}, got {how!r}")
    return how


def check_positive_int(name: str, value: Any) -> int:
    """Validate an option that must be an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"saliency option {name} must be an int >= 1, got {value!r}")
    return int(value)


def conv_layer_names(policy: nn.Module) -> list[str]:
    """Names (as in ``policy.named_modules()``) of every Conv2d of the policy, in module order."""
    return [name for name, module in policy.named_modules() if isinstance(module, nn.Conv2d)]


def trunk_extractor(policy: BasePolicy, target: Target | None = None) -> nn.Module:
    """The extractor that computes the target: the Q-network's, or the critic's own one when actor and critic do
    not share."""
    network = q_network(policy)
    if network is not None:
        return network.features_extractor
    if target is not None and target.kind == "value" and not policy.share_features_extractor:
        return policy.vf_features_extractor
    return policy.features_extractor


def last_trunk_conv(policy: ActorCriticPolicy, target: Target | None = None) -> str:
    """Name of the last conv of the feature trunk (not a conv inside an attention module).

    fls extractors list their trunk in ``convs``; for other extractors (SB3's NatureCNN) it is the last Conv2d of
    the extractor, which is the trunk's last conv there.
    """
    extractor = trunk_extractor(policy, target)
    convs = getattr(extractor, "convs", None)
    if isinstance(convs, (nn.ModuleList, nn.Sequential)) and len(convs) and isinstance(convs[-1], nn.Conv2d):
        module = convs[-1]
    else:
        candidates = [m for m in extractor.modules() if isinstance(m, nn.Conv2d)]
        if not candidates:
            raise ConfigError(f"{type(extractor).__name__} has no Conv2d layer to explain")
        module = candidates[-1]
    for name, candidate in policy.named_modules():
        if candidate is module:
            return name
    raise ConfigError(f"{type(extractor).__name__}'s last conv is not a registered module of the policy")


class SaliencyMethod(ABC):
    """Base class: ``__call__`` gives max-normalised maps, :meth:`raw` the unnormalised ones.

    Subclasses implement :meth:`_compute` on a float (B, C, H, W) copy of the observations (0..255, on the policy's
    device) and a resolved :class:`Target`, inside :func:`guarded`. Options are keyword arguments of ``__init__``.
    """

    name: ClassVar[str] = ""

    def __call__(
        self,
        policy: ActorCriticPolicy,
        observations: torch.Tensor | np.ndarray,
        target: TargetLike | Sequence[int] | torch.Tensor = "action",
        *,
        actions: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Saliency maps (B, H, W), each divided by its own maximum (values in [0, 1])."""
        return normalize_maps(self.raw(policy, observations, target, actions=actions))

    def raw(
        self,
        policy: ActorCriticPolicy,
        observations: torch.Tensor | np.ndarray,
        target: TargetLike | Sequence[int] | torch.Tensor = "action",
        *,
        actions: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unnormalised non-negative saliency maps (B, H, W), detached, on the policy's device."""
        self.check(policy)
        with guarded(policy):
            # Inside the guard: tensors made under a caller's inference_mode could not be used by autograd.
            obs = as_observations(observations, policy)
            resolved = make_target(target, actions, obs.shape[0], int(policy.action_space.n), obs.device)
            maps = self._compute(policy, obs, resolved)
        return maps.detach().clamp_min(0.0)

    def check(self, policy: ActorCriticPolicy) -> None:
        """Raise ConfigError if this method cannot explain ``policy`` (checked before any computation)."""
        if not isinstance(policy.action_space, gym.spaces.Discrete):
            raise ConfigError(f"saliency needs a discrete action space, got {policy.action_space}")

    @abstractmethod
    def _compute(self, policy: ActorCriticPolicy, observations: torch.Tensor, target: Target) -> torch.Tensor:
        """The raw (B, H, W) maps; ``observations`` is a private float copy (0..255)."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The keyword options of this method's constructor."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params if p.name != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.option_names() if hasattr(self, k))
        return f"{type(self).__name__}({options})"


def chunks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(total)``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))
