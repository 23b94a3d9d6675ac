"""Attention trees (rl-attention, REFERENCE §9): which units, layer by layer, carried an agent's decision.

A tree explains one observation. Its nodes are units ``(layer, channel, y, x)`` of the conv trunk; level 0 is the
input (the network's stacked frames), level k the output of the k-th conv block (conv, its nonlinearity, attention
gating and max-pooling if any).

**Roots.** For a model with attention, the roots are the ``n`` most prominent peaks of its attention map (the
deepest attention site, channels summed; a node's activation is the attention value ``a(p)``). By default
(``root="relevance"``) a root stands for the attended features ``T(·,p)`` (what the layers above read) with weights
``dy/dT(·,p)``: its contribution is the explained target's relevance at ``p``, ``sum_c T(c,p) dy/dT(c,p)`` (LRP-0 of
the logit, the value, or a DQN's Q-value down to that layer), so the trees of two actions differ. With
``root="attention"`` a root stands for the attended features with every channel weighted ``a(p)`` alike: that tree
is the same for every target. For a model without attention, the roots are the peaks of the last conv block's
output weighted by the explained target's gradient, ``M(p) = sum_c T(c,p) dy/dT(c,p)``; a root stands for ``T(·,p)``
with weights ``dy/dT(·,p)``.

**Contribution rule (LRP-0, the z-rule, restricted to the tree's edges).** A node at level k carries channel
weights ``w(c)`` (the root's, above) and its contribution ``s = sum_c w(c) T_k(c, p)``. The contribution of position
``r`` of level k-1 to it is activation x weight of the connection, summed over the channels of ``r``::

    R(c', r) = A(c', r) * sum_c v(c) W(c, c', r - field start of q_c),   Z(r) = sum_c' R(c', r),
    v(c) = w(c) * T_k(c, p) / Z_k(c, q_c)

where ``A`` is level k-1's activation (what the conv reads), ``W`` the conv's weights, ``Z_k`` the conv's output and
``q_c`` the conv-output position that feeds ``T_k(c, p)`` (``p`` itself, or the winner of the max-pool window of
channel c). The ratio ``T/Z`` passes relevance through ReLU (1 or 0), attention gating (a) and max-pooling (the
winner) unchanged, as LRP does. Biases get no share, so the ``Z(r)`` of a node's whole receptive field add up to its
own contribution minus its bias share; every contribution is in the units of the root. A child node records the
channel with the largest ``R(c', r)`` at its position (for input pixels: the stacked frame), that channel's
activation, and ``Z(r)``; its own weights for the level below are ``w'(c') = sum_c v(c) W(...)`` at ``r``.

**Input pixels (the zᴮ rule, Montavon et al. 2019).** LRP-0 gives a black (zero) pixel no relevance, whatever the
weights, and lets the conv1 bias absorb the rest (all of it on a black background). From conv1 to the pixels the
bounded rule is used instead, with the input's bounds ``l, h`` (what the lowest and highest observation, 0 and 255,
become at conv1's input: 0 and 1 after the models' scaling; 0 in any zero padding)::

    R(c', r) = sum_c v(c) (x W - l W⁺ - h W⁻)(c, c', r),   v(c) = w(c) T_1(c, q_c) / Z^B(c, q_c),
    Z^B = conv(x, W) - conv(l, W⁺) - conv(h, W⁻)

Z^B leaves the bias out, so the pixels of a conv1 node's receptive field add up to the node's whole contribution.

**Children** are the ``n`` most prominent local peaks of ``Z`` within the parent's receptive field
(:func:`find_peaks`: positive local maxima, strongest first, at least ``min_separation`` cells apart), not the n
largest values, which crowd together because neighbouring units share inputs. ``depth`` levels are expanded below
the roots (None: down to the input pixels).

Not covered: RS's channel normalisation of its features before the attention (a positive scale per position) is left
out of the root weights; average pooling is not supported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fls.errors import ConfigError
from fls.models.renderer import RAW_FRAME_SIZE, receptive_field
from fls.objects.detection import GameObject, object_at
from fls.saliency.base import (
    SaliencyMethod,
    Target,
    TargetLike,
    as_observations,
    check_positive_int,
    guarded,
    make_target,
    policy_forward,
    trunk_extractor,
)

RootKind = Literal["relevance", "attention", "gradient"]
ROOTS: tuple[str, ...] = ("relevance", "attention")
"""How the roots of a model with attention are weighted (``tree.root``; fls.config_schema.TREE_ROOTS)."""
# A gate T/Z below this |Z| is treated as 0/0 (a unit that is off), not as a huge ratio.
TINY = 1e-12


@dataclass(frozen=True)
class TreeNode:
    """One unit of a tree.

    ``level`` 0 is the input, ``layer`` its name ("input", "conv1", "conv2+pool", ...); ``y, x`` index the level's
    grid (input pixels of the observation for level 0); ``center`` is the centre of the unit's receptive field in
    observation pixels (y, x) and ``field`` its side. ``parent`` indexes :attr:`AttentionTree.nodes` (None for roots).
    """

    level: int
    layer: str
    channel: int
    y: int
    x: int
    activation: float
    contribution: float
    parent: int | None
    depth: int
    center: tuple[float, float]
    field: int


@dataclass
class AttentionTree:
    """The tree of one observation: nodes (roots first, then level by level), the level names and what it explains.

    ``action`` is the explained action (None when the value is explained), ``root`` says how the roots were chosen
    (``relevance``: attention peaks weighted by the target's relevance; ``attention``: attention peaks, every channel
    alike, the same tree for every target; ``gradient``: a model without attention, peaks of the target's
    relevance at the last conv), ``observation`` is the (C, H, W) uint8 input the network saw (without any padding
    the model adds).
    """

    nodes: list[TreeNode]
    levels: list[str]
    root: RootKind
    action: int | None
    observation: np.ndarray = field(repr=False)
    objects: list[GameObject] | None = None  # the game objects on the frame (None: not known, or no decoder)

    def node_objects(self) -> list[str] | None:
        """Per node, the category of the game object its receptive-field centre falls in (the smallest box when
        several hold it; ``"none"`` outside every box), or None when the tree's :attr:`objects` are not known."""
        if self.objects is None:
            return None
        side = self.observation.shape[-1]
        names = []
        for node in self.nodes:
            x, y = to_raw(*node.center, side=side)
            found = object_at(self.objects, x + 0.5, y + 0.5)  # pixel-centre -> continuous coordinates
            names.append("none" if found is None else found.category)
        return names

    def root_text(self) -> str:
        """What the roots are, in words (for figure captions and titles)."""
        target = "the value" if self.action is None else f"action {self.action}"
        return {
            "relevance": f"roots: attention peaks, weighted by the relevance of {target} (LRP-0)",
            "attention": "roots: attention peaks, weighted by the attention (the same for every action)",
            "gradient": f"roots: peaks of the relevance of {target} at the last conv (LRP-0)",
        }[self.root]

    def children(self, index: int) -> list[int]:
        """Indices of the children of node ``index``, strongest first."""
        return [i for i, node in enumerate(self.nodes) if node.parent == index]

    def edges(self) -> list[tuple[int, int]]:
        """(parent, child) index pairs."""
        return [(node.parent, i) for i, node in enumerate(self.nodes) if node.parent is not None]

    def path(self, index: int) -> list[TreeNode]:
        """The nodes from the root down to node ``index``."""
        chain = [self.nodes[index]]
        while chain[-1].parent is not None:
            chain.append(self.nodes[chain[-1].parent])
        return chain[::-1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (no observation); with known :attr:`objects`, also their boxes and each node's
        ``"object"`` (:meth:`node_objects`)."""
        nodes = [asdict(node) for node in self.nodes]
        described: dict[str, Any] = {
            "root": self.root,
            "root_text": self.root_text(),
            "action": self.action,
            "levels": list(self.levels),
            "nodes": nodes,
        }
        names = self.node_objects()
        if names is not None:
            for node, name in zip(nodes, names, strict=True):
                node["object"] = name
            described["objects"] = [obj.to_dict() for obj in self.objects or ()]
        return described


def to_raw(y: float, x: float, frame_size: tuple[int, int] = RAW_FRAME_SIZE, side: int = 84) -> tuple[float, float]:
    """Observation pixel (y, x) -> raw-frame (x, y): the preprocessing resizes the whole raw frame to side x side."""
    height, width = frame_size
    return (x + 0.5) * width / side - 0.5, (y + 0.5) * height / side - 0.5


def find_peaks(values: np.ndarray, n: int, min_separation: int = 2) -> list[tuple[int, int]]:
    """The ``n`` most prominent peaks of a 2-D map: positive local maxima, strongest first, >= ``min_separation``
    cells apart (Chebyshev distance).

    A local maximum is at least as large as its 8 neighbours (non-finite cells are ignored), so every cell of a flat
    plateau qualifies; taking them greedily, strongest first and ties in raster order, and dropping any within
    ``min_separation`` of one already taken leaves separated peaks on a plateau instead of a clump.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"find_peaks needs a 2-D map, got shape {v.shape}")
    if min_separation < 1:
        raise ValueError(f"min_separation must be >= 1, got {min_separation}")
    h, w = v.shape
    padded = np.full((h + 2, w + 2), -np.inf)
    padded[1:-1, 1:-1] = np.where(np.isfinite(v), v, -np.inf)
    v = padded[1:-1, 1:-1]
    neighbours = padded[:h, :w].copy()
    for dy, dx in ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)):
        np.maximum(neighbours, padded[dy : dy + h, dx : dx + w], out=neighbours)
    ys, xs = np.nonzero((v >= neighbours) & (v > 0))
    order = np.argsort(-v[ys, xs], kind="stable")
    chosen: list[tuple[int, int]] = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        if all(max(abs(y - cy), abs(x - cx)) >= min_separation for cy, cx in chosen):
            chosen.append((y, x))
            if len(chosen) == n:
                break
    return chosen


# --- the trunk as seen by one forward pass ---------------------------------------------------------------------


@dataclass
class _Level:
    """Level k >= 1: the conv producing it, an optional max-pool after it, and the tensors of one forward pass."""

    name: str
    conv: nn.Conv2d
    pool: nn.MaxPool2d | None
    layers: tuple[nn.Module, ...]  # input -> this level, for receptive fields in input pixels
    z: torch.Tensor  # conv output (B, C, H, W)
    post: torch.Tensor | None  # what the next layer reads (B, C, h, w); None for the top level (set by the root)
    pool_input: torch.Tensor | None = None


def trunk_modules(extractor: nn.Module) -> tuple[list[nn.Conv2d], list[nn.Module]]:
    """The trunk's convs (``extractor.convs`` for fls models, else every Conv2d, as SB3's NatureCNN) and pools."""
    convs = getattr(extractor, "convs", None)
    if isinstance(convs, (nn.ModuleList, nn.Sequential)) and all(isinstance(c, nn.Conv2d) for c in convs):
        trunk = list(convs)
    else:
        trunk = [m for m in extractor.modules() if isinstance(m, nn.Conv2d)]
    if not trunk:
        raise ConfigError(f"{type(extractor).__name__} has no conv layer to grow an attention tree in")
    pools = [m for m in extractor.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    return trunk, pools


class _Recorder:
    """Forward hooks on the trunk's convs and pools, recording (module, input, output) in execution order."""

    def __init__(self, extractor: nn.Module):
        self.convs, pools = trunk_modules(extractor)
        self.events: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
        self.handles = [
            m.register_forward_hook(lambda module, inputs, output: self.events.append((module, inputs[0], output)))
            for m in (*self.convs, *pools)
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def levels(self) -> tuple[torch.Tensor, list[_Level]]:
        """(the first conv's input, levels 1..K) from the recorded events."""
        events = self.events
        if not events or not isinstance(events[0][0], nn.Conv2d):
            raise ConfigError("the trunk did not start with a conv in the forward pass; cannot grow a tree")
        levels: list[_Level] = []
        layers: tuple[nn.Module, ...] = ()
        for module, inputs, output in events:
            if isinstance(module, nn.Conv2d):
                if levels:
                    levels[-1].post = inputs
                layers = (*layers, module)
                levels.append(_Level(f"conv{len(levels) + 1}", module, None, layers, output, None))
            else:
                if isinstance(module, nn.AvgPool2d):
                    raise ConfigError("attention trees do not support average pooling (max-pooling only)")
                last = levels[-1]
                if last.pool is not None:
                    raise ConfigError("two pools in a row after one conv: cannot grow an attention tree")
                layers = (*layers, module)
                last.pool, last.pool_input, last.post, last.layers = module, inputs, output, layers
                last.name += "+pool"
        if len({id(level.conv) for level in levels}) != len(levels):
            raise ConfigError("a trunk conv ran twice in one forward pass; cannot grow an attention tree")
        return events[0][1], levels


@dataclass
class _LevelArrays:
    """One sample's numpy view of a level: activation, gate T/Z and the conv-output position feeding each unit."""

    post: np.ndarray  # (C, h, w)
    gate: np.ndarray  # (C, h, w)
    source: np.ndarray | None  # (C, h, w, 2) conv-output (y, x) per unit for pooled levels; None: the same position
    weight: np.ndarray  # conv weight (C_out, C_in, k, k)
    conv_stride: int
    conv_padding: int
    step: tuple[int, int, int]  # receptive field (kernel, stride, padding) of one unit in the level below
    pixels: tuple[int, int, int]  # receptive field in input units
    bounds: tuple[np.ndarray, np.ndarray] | None = None  # (low, high) of the level below: the z^B rule (level 1)


def _square(value: int | Sequence[int], what: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ConfigError(f"attention trees need square convs; got {what} {tuple(value)}")
    return int(value[0])


def _gate(post: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    ok = z.abs() > TINY
    return torch.where(ok, post / torch.where(ok, z, torch.ones_like(z)), torch.zeros_like(z))


def _level_arrays(
    level: _Level,
    post: torch.Tensor,
    denominator: torch.Tensor | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[_LevelArrays]:
    """Per-sample arrays of a level whose activation is ``post`` (B, C, h, w).

    ``denominator`` replaces the conv output Z in the gate T/Z (the z^B rule's Z^B, with ``bounds`` the (C', H, W)
    low and high of the level below, the same for every sample)."""
    conv = level.conv
    if _square(conv.dilation, "dilation") != 1 or conv.groups != 1:
        raise ConfigError("attention trees need plain convs (no dilation, no groups)")
    if isinstance(conv.padding, str):
        raise ConfigError("attention trees need numeric conv padding")
    z = (level.z if denominator is None else denominator).detach().float()
    post = post.detach().float()
    source = None
    if level.pool is not None:
        pool = level.pool
        _, index = F.max_pool2d(
            level.pool_input.detach().float(),
            pool.kernel_size,
            pool.stride,
            pool.padding,
            pool.dilation,
            ceil_mode=pool.ceil_mode,
            return_indices=True,
        )
        width = z.shape[-1]
        z_at = z.flatten(2).gather(2, index.flatten(2)).view_as(index)
        gate = _gate(post, z_at)
        source = torch.stack([index // width, index % width], dim=-1)
    else:
        gate = _gate(post, z)
    step = receptive_field([conv] if level.pool is None else [conv, level.pool])
    pixels = receptive_field(level.layers)
    weight = np.ascontiguousarray(conv.weight.detach().float().cpu().numpy())
    post_np = np.ascontiguousarray(post.cpu().numpy())
    gate_np = np.ascontiguousarray(gate.cpu().numpy())
    source_np = None if source is None else np.ascontiguousarray(source.cpu().numpy())
    return [
        _LevelArrays(
            post_np[b],
            gate_np[b],
            None if source_np is None else source_np[b],
            weight,
            _square(conv.stride, "stride"),
            _square(conv.padding, "padding"),
            (step.kernel, step.stride, step.padding),
            (pixels.kernel, pixels.stride, pixels.padding),
            bounds,
        )
        for b in range(post.shape[0])
    ]


# --- growing -----------------------------------------------------------------------------------------------------


def _omega(
    parent: _LevelArrays, source: np.ndarray | None, v: np.ndarray, weight: np.ndarray, top: int, left: int
) -> np.ndarray:
    """``sum_c v(c) W(c, c', r - field start of q_c)`` over the (C', F, F) receptive field of one unit of
    ``parent`` (``source``: its channels' conv-output positions q_c, (C, 2), for a pooled level; else None)."""
    kernel = parent.step[0]
    c_in, k = weight.shape[1], weight.shape[-1]
    omega = np.zeros((c_in, kernel, kernel), dtype=np.float64)
    if source is None:
        omega += np.tensordot(v, weight, axes=1)
        return omega
    # Each channel's max-pool winner sits at its own conv-output position q: one kernel window per position.
    for qy, qx in {(int(a), int(b)) for a, b in source}:
        same = (source[:, 0] == qy) & (source[:, 1] == qx) & (v != 0)
        if not same.any():
            continue
        oy = qy * parent.conv_stride - parent.conv_padding - top
        ox = qx * parent.conv_stride - parent.conv_padding - left
        omega[:, oy : oy + k, ox : ox + k] += np.tensordot(v[same], weight[same], axes=1)
    return omega


def _patch(values: np.ndarray, top: int, left: int, kernel: int) -> np.ndarray:
    """The (C', F, F) window of a (C', H, W) level at (top, left); zero outside the level (padding)."""
    patch = np.zeros((values.shape[0], kernel, kernel), dtype=np.float64)
    h, w = values.shape[-2:]
    y0, y1, x0, x1 = max(top, 0), min(top + kernel, h), max(left, 0), min(left + kernel, w)
    patch[:, y0 - top : y1 - top, x0 - left : x1 - left] = values[:, y0:y1, x0:x1]
    return patch


def _children_map(
    parent: _LevelArrays, below: np.ndarray, y: int, x: int, weights: np.ndarray
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Contributions of level k-1 (activation ``below``, (C', H, W)) to the unit (y, x) of level k with channel
    ``weights``: (top, left, per-channel R (C', F, F), per-channel weights w' (C', F, F)) over its receptive field.

    LRP-0 (``x Ω``), or the z^B rule (``x Ω - l Ω⁺ - h Ω⁻``, Ω± from the positive / negative weights) when the
    parent carries the bounds of the level below."""
    kernel, stride, padding = parent.step
    top, left = y * stride - padding, x * stride - padding
    v = weights * parent.gate[:, y, x]
    source = None if parent.source is None else parent.source[:, y, x]
    omega = _omega(parent, source, v, parent.weight, top, left)
    terms = _patch(below, top, left, kernel) * omega
    if parent.bounds is not None:
        low, high = parent.bounds
        positive, negative = np.clip(parent.weight, 0, None), np.clip(parent.weight, None, 0)
        terms -= _patch(low, top, left, kernel) * _omega(parent, source, v, positive, top, left)
        terms -= _patch(high, top, left, kernel) * _omega(parent, source, v, negative, top, left)
    return top, left, terms, omega


def _center(pixels: tuple[int, int, int], y: int, x: int, offset: int) -> tuple[float, float]:
    kernel, stride, padding = pixels
    half = (kernel - 1) / 2.0
    return (y * stride - padding + half - offset, x * stride - padding + half - offset)


def _grow_one(
    levels: list[_LevelArrays],
    names: list[str],
    top: int,
    pixels: np.ndarray,
    offset: int,
    root_map: np.ndarray,
    root_weights: np.ndarray | None,
    root_activation: np.ndarray | None,
    n: int,
    depth: int | None,
    min_separation: int,
) -> list[TreeNode]:
    """Nodes of one sample's tree; ``levels[k-1]`` is level k, ``pixels`` the conv1 input (C, H, W)."""
    nodes: list[TreeNode] = []
    frontier: list[tuple[int, np.ndarray]] = []  # (node index, channel weights)
    top_level = levels[top - 1]
    for y, x in find_peaks(root_map, n, min_separation):
        channels = top_level.post.shape[0]
        weights = np.ones(channels) if root_weights is None else root_weights[:, y, x].astype(np.float64)
        terms = weights * top_level.post[:, y, x]
        channel = int(np.argmax(terms))
        activation = top_level.post[channel, y, x] if root_activation is None else root_activation[y, x]
        nodes.append(
            TreeNode(
                top,
                names[top],
                channel,
                y,
                x,
                float(activation),
                float(terms.sum()),
                None,
                0,
                _center(top_level.pixels, y, x, offset),
                top_level.pixels[0],
            )
        )
        frontier.append((len(nodes) - 1, weights))
    last = 0 if depth is None else max(top - depth, 0)
    for level in range(top, last, -1):
        parent_arrays = levels[level - 1]
        below = pixels if level == 1 else levels[level - 2].post
        below_pixels = (1, 1, 0) if level == 1 else levels[level - 2].pixels
        below_h, below_w = below.shape[-2:]
        next_frontier: list[tuple[int, np.ndarray]] = []
        for index, weights in frontier:
            parent = nodes[index]
            top_y, left_x, terms, omega = _children_map(parent_arrays, below, parent.y, parent.x, weights)
            total = terms.sum(axis=0)
            # Cells outside the level (padding) are not units: never children.
            rows = np.arange(total.shape[0]) + top_y
            cols = np.arange(total.shape[1]) + left_x
            inside = ((rows >= 0) & (rows < below_h))[:, None] & ((cols >= 0) & (cols < below_w))[None, :]
            total = np.where(inside, total, -np.inf)
            for ry, rx in find_peaks(total, n, min_separation):
                channel = int(np.argmax(terms[:, ry, rx]))
                cy, cx = ry + top_y, rx + left_x
                nodes.append(
                    TreeNode(
                        level - 1,
                        names[level - 1],
                        channel,
                        cy - (offset if level == 1 else 0),
                        cx - (offset if level == 1 else 0),
                        float(below[channel, cy, cx]),
                        float(total[ry, rx]),
                        index,
                        parent.depth + 1,
                        _center(below_pixels, cy, cx, offset),
                        below_pixels[0],
                    )
                )
                next_frontier.append((len(nodes) - 1, omega[:, ry, rx]))
        frontier = next_frontier
    return nodes


def _q_network(policy: nn.Module) -> nn.Module:
    for name in ("q_net", "quantile_net"):  # SB3 DQN, sb3-contrib QR-DQN
        net = getattr(policy, name, None)
        if net is not None:
            return net
    raise ConfigError(f"attention trees need an actor-critic or a DQN / QR-DQN policy, got {type(policy).__name__}")


def _explained(
    policy: nn.Module, observations: torch.Tensor, target: Target
) -> tuple[nn.Module, torch.Tensor | None, torch.Tensor | None]:
    """(the extractor that computes the target, the explained (B,) outputs, the explained actions) of one pass.

    Actor-critic policies explain a logit or the value; DQN / QR-DQN policies a Q-value (QR-DQN: the mean over
    quantiles). The explained actions are None for the value.
    """
    if hasattr(policy, "action_net"):
        out = policy_forward(policy, observations)
        actions = (
            None
            if target.kind == "value"
            else (out.logits.detach().argmax(dim=1) if target.actions is None else target.actions)
        )
        return trunk_extractor(policy, target), target.select(out), actions
    net = _q_network(policy)
    scores = net(observations)
    if scores.dim() == 3:  # QR-DQN: (B, quantiles, A)
        scores = scores.mean(dim=1)
    # target=value is max_a Q(s, a): the Q of the greedy action, as for the other methods on Q-networks.
    actions = scores.detach().argmax(dim=1) if target.kind == "value" or target.actions is None else target.actions
    return net.features_extractor, scores.gather(1, actions.view(-1, 1))[:, 0], actions


def tree_extractor(policy: nn.Module, target: Target | None = None) -> nn.Module:
    """The extractor a tree is grown in (the critic's own for a value target of a non-shared actor-critic)."""
    if hasattr(policy, "action_net"):
        return trunk_extractor(policy, target)
    return _q_network(policy).features_extractor


def _input_bounds(policy: nn.Module, conv: nn.Conv2d, observations: torch.Tensor) -> torch.Tensor:
    """(2, C, H', W'): what conv1 reads for the lowest and the highest observation the policy's observation space
    allows (the models' own scaling and padding applied), the bounds of the z^B rule."""
    space = policy.observation_space
    x = torch.stack(
        [torch.as_tensor(np.broadcast_to(bound, space.shape).astype(np.float32)) for bound in (space.low, space.high)]
    ).to(observations.device)
    captured: list[torch.Tensor] = []
    handle = conv.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach().float()))
    try:
        with torch.no_grad():
            policy_forward(policy, x)
    finally:
        handle.remove()
    return captured[0]


def _z_bounded(conv: nn.Conv2d, pixels: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Z^B = conv(x, W) - conv(l, W⁺) - conv(h, W⁻), no bias (B, C, H, W)."""
    weight = conv.weight.detach().float()

    def apply(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    low, high = bounds[:1], bounds[1:]
    return apply(pixels.detach().float(), weight) - apply(low, weight.clamp(min=0)) - apply(high, weight.clamp(max=0))


class _LinearInput:
    """A forward pre-hook on the extractor's first linear layer (its hidden layer), keeping the input it reads."""

    def __init__(self, extractor: nn.Module):
        linear = next((m for m in extractor.modules() if isinstance(m, nn.Linear)), None)
        if linear is None:
            raise ConfigError(
                f"{type(extractor).__name__} has no linear layer after its attention (use tree.root=attention)"
            )
        self.value: torch.Tensor | None = None
        self.handle = linear.register_forward_pre_hook(lambda module, inputs: setattr(self, "value", inputs[0]))


def _attended_relevance(
    level: _Level, y: torch.Tensor, hidden: torch.Tensor | None, gated: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(attended features T, dy/dT), (B, C, h, w) each, at the deepest attention site.

    T is what the layers above read: the next conv's input, or the hidden layer's input (flattened T, or T summed
    over positions, whose gradient is the same at every position; ``gated``, relu(Z) x a, is then T)."""
    if level.post is not None:
        (grad,) = torch.autograd.grad(y.sum(), level.post, allow_unused=True)
        return level.post, torch.zeros_like(level.post) if grad is None else grad
    if hidden is None:
        raise ConfigError(
            "the attended features reach no linear layer: cannot weight the roots (use tree.root=attention)"
        )
    (grad,) = torch.autograd.grad(y.sum(), hidden, allow_unused=True)
    grad = torch.zeros_like(hidden) if grad is None else grad
    b, c, h, w = gated.shape
    if hidden.shape[1] == c * h * w:  # flattened
        return hidden.reshape(b, c, h, w), grad.reshape(b, c, h, w)
    if hidden.shape[1] == c:  # summed over positions
        return gated, grad[:, :, None, None].expand(b, c, h, w)
    raise ConfigError(
        f"the hidden layer reads {hidden.shape[1]} features, neither the {c}x{h}x{w} attended map nor its {c} "
        "channel sums: cannot weight the roots (use tree.root=attention)"
    )


def grow_trees(
    policy: nn.Module,
    observations: torch.Tensor,
    target: Target,
    *,
    n: int = 3,
    depth: int | None = None,
    min_separation: int = 2,
    root: str = "relevance",
) -> list[AttentionTree]:
    """Trees of a float (B, C, H, W) batch (0..255) for a resolved target; call inside :func:`guarded`."""
    extractor = tree_extractor(policy, target)
    attention = bool(getattr(extractor, "has_attention", False))
    check_root(root, extractor)
    by_attention = attention and root == "attention"
    recorder = _Recorder(extractor)
    hidden = _LinearInput(extractor) if attention and not by_attention else None
    try:
        if by_attention:
            with torch.no_grad():
                _, _, actions = _explained(policy, observations, target)
        else:
            _, y, actions = _explained(policy, observations, target)
    finally:
        recorder.remove()
        if hidden is not None:
            hidden.handle.remove()
    first_input, levels = recorder.levels()
    batch = observations.shape[0]
    offset = (first_input.shape[-1] - observations.shape[-1]) // 2  # RS pads the input
    if attention:
        sites = extractor.attention_sites
        deepest = max(range(len(sites)), key=lambda i: len(sites[i].layers))
        site = sites[deepest]
        top = next(i for i, level in enumerate(levels) if level.conv is site.layers[-1]) + 1
        a = extractor.last_attention[deepest].detach().float().sum(dim=1)  # (B, h, w)
        z = levels[top - 1].z.detach().float()
        relu_after = top < len(levels) or getattr(extractor, "final_relu", True)
        gated = (z.clamp_min(0.0) if relu_after else z) * a[:, None]
        root_map = a.cpu().numpy()
        root_activation: np.ndarray | None = root_map
        if by_attention:
            post, root_weights = gated, None  # every attended channel counts alike
        else:
            attended, grad = _attended_relevance(levels[top - 1], y, None if hidden is None else hidden.value, gated)
            post, root_weights = attended.detach().float(), grad.detach().float().cpu().numpy()
    else:
        top = len(levels)
        level = levels[-1]
        post = level.post if level.post is not None else level.z
        (grad,) = torch.autograd.grad(y.sum(), post, allow_unused=True)
        grad = torch.zeros_like(post) if grad is None else grad
        post, grad = post.detach().float(), grad.detach().float()
        root_map = (post * grad).sum(dim=1).cpu().numpy()
        root_weights = grad.cpu().numpy()
        root_activation = None
    reaches_pixels = depth is None or depth >= top
    per_level = []
    for k, level in enumerate(levels[:top]):
        activation = post if k == top - 1 else (level.post if level.post is not None else level.z)
        if k == 0 and reaches_pixels:  # the z^B rule from conv1 to the pixels
            bounds = _input_bounds(policy, level.conv, observations)
            limits = (bounds[0].cpu().numpy().astype(np.float64), bounds[1].cpu().numpy().astype(np.float64))
            per_level.append(_level_arrays(level, activation, _z_bounded(level.conv, first_input, bounds), limits))
        else:
            per_level.append(_level_arrays(level, activation))
    pixels = first_input.detach().float().cpu().numpy()
    names = ["input", *(level.name for level in levels[:top])]
    obs = observations.detach().round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    kind: RootKind = ("attention" if by_attention else "relevance") if attention else "gradient"
    trees = []
    for b in range(batch):
        nodes = _grow_one(
            [arrays[b] for arrays in per_level],
            names,
            top,
            pixels[b],
            offset,
            root_map[b],
            None if root_weights is None else root_weights[b],
            None if root_activation is None else root_activation[b],
            n,
            depth,
            min_separation,
        )
        action = None if actions is None else int(actions[b])
        trees.append(AttentionTree(nodes, names, kind, action, obs[b]))
    return trees


def check_root(root: str, extractor: nn.Module) -> None:
    """ConfigError unless ``root`` is one of :data:`ROOTS` and fits the model (``attention`` needs attention)."""
    if root not in ROOTS:
        raise ConfigError(f"tree root must be one of {', '.join(ROOTS)}, got {root!r}")
    if root == "attention" and not getattr(extractor, "has_attention", False):
        raise ConfigError(
            f"tree.root=attention roots the tree at attention peaks; {type(extractor).__name__} has no attention "
            "(use tree.root=relevance)"
        )


def attention_trees(
    policy: nn.Module,
    observations: torch.Tensor | np.ndarray,
    target: TargetLike | Sequence[int] | torch.Tensor = "action",
    *,
    actions: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    n: int = 3,
    depth: int | None = None,
    min_separation: int = 2,
    root: str = "relevance",
) -> list[AttentionTree]:
    """One :class:`AttentionTree` per observation of a (B, C, H, W) batch (uint8 or floats in 0..255).

    ``policy``: an fls / SB3 actor-critic policy, or a DQN / QR-DQN policy. ``target`` and ``actions`` as for the
    saliency methods (:mod:`fls.saliency.base`): what the tree explains (with ``root="attention"`` a model with
    attention grows the same tree for every target, which is only recorded). No side effects on the policy (see
    :mod:`fls.saliency.base`).
    """
    n = check_positive_int("n", n)
    min_separation = check_positive_int("min_separation", min_separation)
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ConfigError(f"tree depth must be an int >= 0 or null (down to the input), got {depth!r}")
    with guarded(policy):
        obs = as_observations(observations, policy)
        resolved = make_target(target, actions, obs.shape[0], int(policy.action_space.n), obs.device)
        return grow_trees(policy, obs, resolved, n=n, depth=depth, min_separation=min_separation, root=root)


def tree_map(tree: AttentionTree, size: tuple[int, int] | None = None) -> np.ndarray:
    """A (H, W) map of a tree: each leaf's positive contribution spread uniformly over its receptive field.

    Sparse by design (with the default depth the leaves are single pixels); for metrics that need a map.
    """
    h, w = size or tree.observation.shape[-2:]
    out = np.zeros((h, w), dtype=np.float32)
    leaves = {i for i in range(len(tree.nodes))} - {node.parent for node in tree.nodes}
    for i in sorted(leaves):
        node = tree.nodes[i]
        if node.contribution <= 0:
            continue
        half = (node.field - 1) / 2.0
        y0, x0 = int(round(node.center[0] - half)), int(round(node.center[1] - half))
        ys, xs = slice(max(y0, 0), max(min(y0 + node.field, h), 0)), slice(max(x0, 0), max(min(x0 + node.field, w), 0))
        out[ys, xs] += node.contribution / node.field**2
    return out


class TreeSaliency(SaliencyMethod):
    """Attention trees as a saliency method: :meth:`trees` gives the trees, the maps are their :func:`tree_map`.

    In videos (``saliency=[tree]``) the panel draws the tree of each frame over the raw frame.

    Args:
        n: children per node (and roots).
        depth: levels below the roots (None: down to the input pixels).
        min_separation: minimum distance between sibling peaks, in cells of their level.
        root: for models with attention, ``relevance`` (attention peaks weighted by the explained target's
            relevance) or ``attention`` (attention peaks, every channel alike: the same tree for every target).
    """

    name = "tree"

    def __init__(self, *, n: int = 3, depth: int | None = None, min_separation: int = 2, root: str = "relevance"):
        if root not in ROOTS:
            raise ConfigError(f"saliency option root must be one of {', '.join(ROOTS)}, got {root!r}")
        self.root = root
        self.n = check_positive_int("n", n)
        self.min_separation = check_positive_int("min_separation", min_separation)
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
            raise ConfigError(f"saliency option depth must be an int >= 0 or null, got {depth!r}")
        self.depth = depth

    def check(self, policy: nn.Module) -> None:
        """ConfigError unless the policy's trunk is made of convs (and pools) a tree can be grown in."""
        super().check(policy)
        trunk_modules(tree_extractor(policy))
        check_root(self.root, tree_extractor(policy))

    def trees(
        self,
        policy: nn.Module,
        observations: torch.Tensor | np.ndarray,
        target: TargetLike | Sequence[int] | torch.Tensor = "action",
        *,
        actions: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> list[AttentionTree]:
        """The trees of a batch with this method's options (see :func:`attention_trees`)."""
        self.check(policy)
        return attention_trees(
            policy,
            observations,
            target,
            actions=actions,
            n=self.n,
            depth=self.depth,
            min_separation=self.min_separation,
            root=self.root,
        )

    def _compute(self, policy: nn.Module, observations: torch.Tensor, target: Target) -> torch.Tensor:
        trees = grow_trees(
            policy,
            observations,
            target,
            n=self.n,
            depth=self.depth,
            min_separation=self.min_separation,
            root=self.root,
        )
        maps = np.stack([tree_map(tree, tuple(observations.shape[-2:])) for tree in trees])
        return torch.as_tensor(maps, device=observations.device)
