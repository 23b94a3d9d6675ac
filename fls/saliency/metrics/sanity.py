"""Sanity checks for saliency maps (Adebayo et al. 2018): do the maps change when the learned weights are destroyed?

Cascading randomisation re-initialises the network from the top down, one layer group at a time, keeping the groups
above randomised: the policy and value heads, then the 512-unit hidden layer, then the trunk convolutions from the
last to the first, each preceded by the attention module that reads its output (so an attention module after conv1
is re-initialised after conv2, and ``attention_at=every_conv`` goes attention, conv3, attention, conv2, attention,
conv1). Each group is re-initialised with the
model's own initialiser: orthogonal weights, gain 0.01 for the policy head, 1 for the value head and sqrt 2 for
every other layer, zero biases (``fls.models.layers.orthogonal_init`` / :class:`fls.models.policy.FLSPolicy`, which
SB3's ``ortho_init`` matches). Every layer draws from its own seeded generator, so a layer gets the same random
weights at every later step of the cascade. A fully re-initialised network (every group, drawn afresh) is the last
comparison; it is not Adebayo et al.'s independent randomisation, which re-initialises one layer at a time.

A map that stays the same (rank correlation and SSIM near 1) after the weights it is meant to explain were
replaced does not depend on what the model learned. The maps compared are the methods' max-normalised maps of the
same frames, explaining the action the trained policy chose on each frame.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn
from torch.nn import functional as F

from fls.models.layers import RELU_GAIN

POLICY_HEAD_GAIN = 0.01
VALUE_HEAD_GAIN = 1.0
FULL = "full"
"""Name of the fully re-initialised network in the results."""


@dataclass(frozen=True)
class LayerGroup:
    """Layers re-initialised together at one step of the cascade, each with its orthogonal gain."""

    name: str
    layers: tuple[tuple[nn.Module, float], ...]


def _extractors(policy: ActorCriticPolicy) -> list[nn.Module]:
    if policy.share_features_extractor:
        return [policy.features_extractor]
    return [policy.pi_features_extractor, policy.vf_features_extractor]


def _trunk(extractor: nn.Module) -> list[nn.Conv2d]:
    """The trunk convolutions, input first: fls extractors list them in ``convs``; otherwise every Conv2d (SB3's
    NatureCNN has no other)."""
    convs = getattr(extractor, "convs", None)
    if isinstance(convs, (nn.ModuleList, nn.Sequential)):
        return [m for m in convs if isinstance(m, nn.Conv2d)]
    return [m for m in extractor.modules() if isinstance(m, nn.Conv2d)]


def _run_order(policy: ActorCriticPolicy, modules: list[nn.Module]) -> dict[int, int]:
    """Position of each of ``modules`` in the order one forward pass of the features runs them (id -> index).

    The pass runs on a zero observation of the policy's shape and device (works on the meta device too).
    """
    order: dict[int, int] = {}

    def record(module: nn.Module, *_: object) -> None:
        order.setdefault(id(module), len(order))

    handles = [m.register_forward_hook(record) for m in modules]
    try:
        parameter = next(policy.parameters())
        shape = (1, *policy.observation_space.shape)
        with torch.no_grad():
            policy.extract_features(torch.zeros(shape, dtype=torch.float32, device=parameter.device))
    finally:
        for handle in handles:
            handle.remove()
    return order


def randomisation_groups(policy: ActorCriticPolicy) -> list[LayerGroup]:
    """The cascade, top first, in the order of depth in the forward graph: ``heads``, ``hidden`` (the 512 layer),
    then from conv3 down to conv1 each trunk conv preceded by the attention module that reads its output (if any).

    Attention modules are the convs outside the trunk; each belongs to the trunk conv that ran last before it in a
    forward pass. With one attention module the group is ``attention``; with several (``attention_at=every_conv``)
    ``attention_conv3``, ``attention_conv2``, ... (every_conv: heads, hidden, attention_conv3, conv3,
    attention_conv2, conv2, attention_conv1, conv1; attention_at=conv1: heads, hidden, conv3, conv2, attention,
    conv1). Raises ValueError if a conv or linear layer of the policy belongs to no group (an architecture this does
    not know), so the full randomisation never silently keeps trained weights.
    """
    groups = [LayerGroup("heads", ((policy.action_net, POLICY_HEAD_GAIN), (policy.value_net, VALUE_HEAD_GAIN)))]
    extractors = _extractors(policy)
    hidden = [m for m in policy.mlp_extractor.modules() if isinstance(m, nn.Linear)]
    hidden += [m for e in extractors for m in e.modules() if isinstance(m, nn.Linear)]
    groups.append(LayerGroup("hidden", tuple((m, RELU_GAIN) for m in hidden)))
    trunks = [_trunk(e) for e in extractors]
    in_trunk = {id(m) for trunk in trunks for m in trunk}
    convs = [m for e in extractors for m in e.modules() if isinstance(m, nn.Conv2d)]
    order = _run_order(policy, convs)
    attention: dict[int, list[nn.Module]] = {}  # trunk conv index -> the attention convs reading its output
    for extractor, trunk in zip(extractors, trunks, strict=True):
        ran = [(order[id(m)], i) for i, m in enumerate(trunk) if id(m) in order]
        for m in extractor.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in in_trunk and id(m) in order:
                below = [i for at, i in ran if at < order[id(m)]]
                attention.setdefault(max(below, default=-1), []).append(m)
    depth = max(len(t) for t in trunks)
    for i in reversed(range(-1, depth)):
        if i in attention:
            name = "attention" if len(attention) == 1 else f"attention_conv{i + 1}"
            groups.append(LayerGroup(name, tuple((m, RELU_GAIN) for m in attention[i])))
        if i >= 0:
            groups.append(LayerGroup(f"conv{i + 1}", tuple((t[i], RELU_GAIN) for t in trunks if i < len(t))))
    covered = {id(m) for g in groups for m, _ in g.layers}
    left = [
        name for name, m in policy.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in covered
    ]
    if left:
        raise ValueError(f"layers outside the randomisation cascade: {', '.join(left)}")
    return [g for g in groups if g.layers]


def reinitialise(layer: nn.Module, gain: float, seed: Sequence[int]) -> None:
    """Orthogonal weights with ``gain`` (drawn on the CPU from a generator seeded by ``seed``), zero bias."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence(list(seed)).generate_state(1)[0]))
    weight = torch.empty(layer.weight.shape, dtype=torch.float32)
    nn.init.orthogonal_(weight, gain=gain, generator=generator)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if layer.bias is not None:
            layer.bias.zero_()


def randomised_networks(policy: ActorCriticPolicy, seed: int = 0) -> Iterator[tuple[str, ActorCriticPolicy]]:
    """(step name, network) for each cascade step (cumulative: step i has groups 0..i randomised), then ``full``.

    Each network is a fresh copy (one at a time in memory); ``policy`` is left untouched. Layer k of the cascade
    is drawn from seed (seed, 0, k), the full network's from (seed, 1, k).
    """
    groups = randomisation_groups(policy)
    current = copy.deepcopy(policy)
    layers = itertools.count()
    for group in groups:
        for layer, gain in group.layers:
            reinitialise(layer_in(current, policy, layer), gain, (seed, 0, next(layers)))
        yield group.name, copy.deepcopy(current)
    del current
    full = copy.deepcopy(policy)
    layers = itertools.count()
    for layer, gain in (pair for group in groups for pair in group.layers):
        reinitialise(layer_in(full, policy, layer), gain, (seed, 1, next(layers)))
    yield FULL, full


def layer_in(copied: nn.Module, original: nn.Module, layer: nn.Module) -> nn.Module:
    """The module of ``copied`` at the place ``layer`` has in ``original``."""
    for name, module in original.named_modules():
        if module is layer:
            return copied.get_submodule(name)
    raise ValueError(f"{type(layer).__name__} is not a module of the original network")


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of a 1-d array, ties sharing their average rank (as Spearman's correlation needs)."""
    ordered = np.sort(values)
    low = np.searchsorted(ordered, values, side="left")
    high = np.searchsorted(ordered, values, side="right")
    return (low + high - 1) / 2.0


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps of (N, H, W) batches (average ranks for ties).

    NaN where a map is constant (its ranks have no spread, so the correlation is undefined).
    """
    out = np.full(len(a), np.nan)
    for i, (x, y) in enumerate(zip(np.asarray(a), np.asarray(b), strict=True)):
        rx, ry = _average_ranks(x.ravel().astype(np.float64)), _average_ranks(y.ravel().astype(np.float64))
        rx, ry = rx - rx.mean(), ry - ry.mean()
        denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
        if denominator > 0:
            out[i] = float((rx * ry).sum() / denominator)
    return out


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Mean structural similarity (Wang et al. 2004) of each pair of maps of (N, H, W) batches.

    Gaussian window (11 taps, sigma 1.5) over the valid region, K1 = 0.01, K2 = 0.03, and ``data_range`` 1 for
    maps in [0, 1] (the saliency methods' max-normalised maps).
    """
    x = torch.as_tensor(np.asarray(a), dtype=torch.float64).unsqueeze(1)
    y = torch.as_tensor(np.asarray(b), dtype=torch.float64).unsqueeze(1)
    w = _gaussian_window(window, sigma)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    vx = F.conv2d(x * x, w) - mx * mx
    vy = F.conv2d(y * y, w) - my * my
    cov = F.conv2d(x * y, w) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return index.mean(dim=(1, 2, 3)).numpy()


@dataclass
class SanityResult:
    """Per-frame similarity of one method's maps on a randomised network to its maps on the trained one."""

    method: str
    step: str
    spearman: np.ndarray
    ssim: np.ndarray


MapFunction = Callable[[ActorCriticPolicy, torch.Tensor, np.ndarray], np.ndarray]
"""(policy, observations, actions) -> (N, H, W) maps in [0, 1]."""


def cascading_randomisation(
    policy: ActorCriticPolicy,
    methods: dict[str, MapFunction],
    observations: torch.Tensor,
    actions: np.ndarray,
    *,
    seed: int = 0,
    reference: dict[str, np.ndarray] | None = None,
    on_maps: Callable[[int], None] = lambda _: None,
) -> list[SanityResult]:
    """Compare each method's maps on every randomised network with its maps on ``policy``.

    ``actions`` are the actions explained (the trained policy's choices), the same on every network.
    ``reference`` may give the trained network's maps (already computed for the faithfulness curves).
    ``on_maps(n)`` is called after each batch of n maps (for a progress bar).
    """
    reference = dict(reference or {})
    for name, fn in methods.items():
        if name not in reference:
            reference[name] = fn(policy, observations, actions)
            on_maps(len(observations))
    results = []
    for step, network in randomised_networks(policy, seed):
        for name, fn in methods.items():
            maps = fn(network, observations, actions)
            on_maps(len(observations))
            results.append(SanityResult(name, step, spearman(reference[name], maps), ssim(reference[name], maps)))
    return results
