"""Extractors: shapes, attention properties, receptive-field rendering, initialisation, and that options matter."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fls.errors import ConfigError
from fls.models import build_policy, count_parameters, extractor_kwargs, receptive_field, render_attention
from fls.models.renderer import ReceptiveField, upsample_to_frame

OBS_SPACE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)

VARIANTS = {
    "nature_cnn": {"name": "nature_cnn"},
    "sparse_fls": {"name": "sparse_fls"},
    "sparse_fls_sum_pool": {"name": "sparse_fls", "sum_pool": True},
    "sparse_fls_norm": {"name": "sparse_fls", "normalize_attention": True},
    "sparse_fls_sum_pool_norm": {"name": "sparse_fls", "sum_pool": True, "normalize_attention": True},
    "sparse_fls_1x1": {"name": "sparse_fls", "fls_kernel": 1},
    "sparse_fls_softplus2": {"name": "sparse_fls", "softplus_base2": True},
    "sparse_fls_no_final_relu": {"name": "sparse_fls", "final_relu": False},
    "sparse_fls_conv1": {"name": "sparse_fls", "attention_at": "conv1"},
    "sparse_fls_every_conv": {"name": "sparse_fls", "attention_at": "every_conv"},
    "dense_fls": {"name": "dense_fls"},
    "dense_fls_norm": {"name": "dense_fls", "normalize_attention": True},
    "rs": {"name": "rs", "pad_input": True},
    "rs_no_pad": {"name": "rs", "pad_input": False},
    "daqn": {"name": "daqn"},
    "maxpool_cnn": {"name": "maxpool_cnn"},
    "maxpool_cnn_narrow": {"name": "maxpool_cnn", "channels": [16, 32, 32], "kernel_size": 3},
}
ATTENTION_VARIANTS = [k for k in VARIANTS if not k.startswith(("nature", "maxpool"))]


def make_policy(cfg: dict, actions: int = 9, seed: int = 0):
    torch.manual_seed(seed)
    return build_policy(cfg, OBS_SPACE, gym.spaces.Discrete(actions))


_POLICIES: dict[str, object] = {}


def policy_for(variant: str):
    """One policy per variant for the whole module (orthogonal init of the 3136x512 layer is slow on CPU).

    Tests that change weights take a deep copy.
    """
    if variant not in _POLICIES:
        _POLICIES[variant] = make_policy(VARIANTS[variant])
    return _POLICIES[variant]


@pytest.fixture(scope="module")
def atari_obs() -> torch.Tensor:
    """Real preprocessed observations from Breakout (a few random steps in, so the stack is full)."""
    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=2, seed=3)
    obs = env.reset()
    for _ in range(10):
        obs, *_ = env.step(np.array([env.action_space.sample() for _ in range(2)]))
    env.close()
    return torch.as_tensor(obs)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_policy_outputs_on_atari_observations(variant: str, atari_obs: torch.Tensor) -> None:
    policy = policy_for(variant)
    assert atari_obs.shape == (2, 4, 84, 84) and atari_obs.dtype == torch.uint8
    features = policy.extract_features(atari_obs, policy.features_extractor)
    assert features.shape == (2, 512)
    assert (features >= 0).all()  # the shared 512 layer ends with a ReLU
    actions, values, log_prob = policy(atari_obs)
    assert actions.shape == (2,) and values.shape == (2, 1) and log_prob.shape == (2,)
    extractor = policy.features_extractor
    if variant in ATTENTION_VARIANTS:
        assert extractor.has_attention and extractor.last_attention
        assert render_attention(extractor).shape == (2, 84, 84)
    else:
        assert not extractor.has_attention


@pytest.mark.parametrize("variant", ATTENTION_VARIANTS)
def test_attention_properties(variant: str, atari_obs: torch.Tensor) -> None:
    extractor = policy_for(variant).features_extractor
    extractor(atari_obs)
    expected_grid = {"conv1": 20, "conv2": 9, "conv3": 84 if variant.startswith("dense") else 7}
    for site, a in zip(extractor.attention_sites, extractor.last_attention, strict=False):
        assert a.shape[-1] == a.shape[-2] == expected_grid[site.name]
        assert (a > 0).all()
        if variant in ("daqn", "rs", "rs_no_pad") or variant.endswith("norm"):
            sums = a.sum(dim=(2, 3))
            torch.testing.assert_close(sums, torch.ones_like(sums))
    if variant.startswith("rs"):
        assert extractor.last_attention[0].shape[1] == 2  # two softmax channels
    entropy = extractor.attention_entropy()
    assert entropy.shape == (2,) and (entropy >= 0).all()
    max_entropy = sum(a.shape[1] * math.log(a.shape[2] * a.shape[3]) for a in extractor.last_attention)
    assert (entropy <= max_entropy + 1e-4).all()


def test_attention_entropy_of_uniform_and_one_hot_maps() -> None:
    extractor = policy_for("daqn").features_extractor
    uniform = torch.full((1, 1, 7, 7), 1 / 49)
    torch.testing.assert_close(extractor.attention_entropy([uniform]), torch.tensor([math.log(49)]))
    two_channels = torch.full((1, 2, 7, 7), 1 / 49)
    torch.testing.assert_close(extractor.attention_entropy([two_channels]), torch.tensor([2 * math.log(49)]))
    one_hot = torch.zeros(1, 1, 7, 7)
    one_hot[0, 0, 3, 3] = 1.0
    assert extractor.attention_entropy([one_hot]).item() == pytest.approx(0.0, abs=1e-5)


def gradient_support(layers: tuple[nn.Module, ...], input_padding: int, cell: tuple[int, int]) -> torch.Tensor:
    """Input pixels that influence one output cell, found by backprop through all-positive copies of the layers.

    Independent of the renderer: no receptive-field arithmetic, just autograd.
    """
    x = torch.ones(1, 1, 84, 84, requires_grad=True)  # one channel: the support does not depend on widths
    h = F.pad(x, (input_padding,) * 4) if input_padding else x
    for layer in layers:
        kernel = torch.ones(1, 1, *layer.kernel_size)
        h = F.conv2d(h, kernel, None, layer.stride, layer.padding)
    h[0, 0, cell[0], cell[1]].backward()
    return x.grad[0, 0] != 0


@pytest.mark.parametrize("variant", ATTENTION_VARIANTS)
def test_renderer_lights_exactly_the_receptive_field(variant: str) -> None:
    extractor = policy_for(variant).features_extractor
    with torch.no_grad():
        extractor(torch.zeros(1, 4, 84, 84, dtype=torch.uint8))
    sizes = [a.shape[-1] for a in extractor.last_attention]
    for index, site in enumerate(extractor.attention_sites):
        side = sizes[index]
        for cell in [(0, 0), (side // 2, side // 3), (side - 1, side - 1)]:
            maps = [torch.zeros_like(a[:, :1]) for a in extractor.last_attention]
            maps[index][0, 0, cell[0], cell[1]] = 1.0
            rendered = render_attention(extractor, maps)[0]
            expected = gradient_support(site.layers, site.input_padding, cell)
            assert torch.equal(rendered > 0, expected), f"{variant} {site.name} cell {cell}"
            if len(extractor.attention_sites) == 1:  # one uniform box: every lit pixel gets the full weight
                assert torch.all(rendered[expected] == 1.0)


def test_receptive_fields_match_the_reference_table() -> None:
    sparse = policy_for("sparse_fls").features_extractor
    assert receptive_field(sparse.convs) == ReceptiveField(kernel=36, stride=8, padding=0)
    assert receptive_field(sparse.convs[:1]) == ReceptiveField(kernel=8, stride=4, padding=0)
    assert receptive_field(sparse.convs[1:2]) == ReceptiveField(kernel=4, stride=2, padding=0)
    assert receptive_field(sparse.convs[1:]) == ReceptiveField(kernel=8, stride=2, padding=0)
    dense = policy_for("dense_fls").features_extractor
    assert receptive_field(dense.convs) == ReceptiveField(kernel=13, stride=1, padding=6)


def test_every_conv_map_is_the_sum_at_conv1_resolution() -> None:
    extractor = policy_for("sparse_fls_every_conv").features_extractor
    torch.manual_seed(1)
    a1, a2, a3 = torch.rand(1, 1, 20, 20), torch.rand(1, 1, 9, 9), torch.rand(1, 1, 7, 7)
    ones = torch.ones(1, 1, 4, 4)
    grid = a1 + F.conv_transpose2d(a2, ones, stride=2) + F.conv_transpose2d(a3, torch.ones(1, 1, 8, 8), stride=2)
    expected = F.conv_transpose2d(grid, torch.ones(1, 1, 8, 8), stride=4)[0, 0]
    torch.testing.assert_close(render_attention(extractor, [a1, a2, a3])[0], expected)


def test_upsample_to_raw_frame() -> None:
    maps = torch.rand(3, 84, 84)
    up = upsample_to_frame(maps)
    assert up.shape == (3, 210, 160)
    assert up.min() >= maps.min() - 1e-6 and up.max() <= maps.max() + 1e-6


def assert_orthogonal(weight: torch.Tensor, gain: float) -> None:
    w = weight.detach().reshape(weight.shape[0], -1).double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.double), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", ["nature_cnn", "sparse_fls", "dense_fls", "rs", "daqn", "maxpool_cnn"])
def test_initialisation_gains(variant: str) -> None:
    policy = policy_for(variant)
    layers = [m for m in policy.features_extractor.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers
    for layer in layers:
        assert_orthogonal(layer.weight, math.sqrt(2))
        assert torch.count_nonzero(layer.bias) == 0
    assert_orthogonal(policy.action_net.weight, 0.01)
    assert_orthogonal(policy.value_net.weight, 1.0)
    assert policy.action_net.weight.shape == (9, 512) and policy.value_net.weight.shape == (1, 512)
    assert torch.count_nonzero(policy.action_net.bias) == 0 and torch.count_nonzero(policy.value_net.bias) == 0


def test_parameter_counts_follow_the_architecture() -> None:
    nature = count_parameters(make_policy(VARIANTS["nature_cnn"], actions=4))
    convs = (4 * 32 * 64 + 32) + (32 * 64 * 16 + 64) + (64 * 64 * 9 + 64)
    assert nature == convs + (3136 * 512 + 512) + (512 * 4 + 4) + (512 + 1)
    fls_module = (64 * 256 * 9 + 256) + (256 * 9 + 1)
    assert count_parameters(make_policy(VARIANTS["sparse_fls"], actions=4)) == nature + fls_module


# Each variant against the model it modifies: the option must change either the parameters or the function.
OPTION_PAIRS = [
    ("sparse_fls", "sparse_fls_sum_pool"),
    ("sparse_fls", "sparse_fls_norm"),
    ("sparse_fls_sum_pool", "sparse_fls_sum_pool_norm"),
    ("sparse_fls", "sparse_fls_1x1"),
    ("sparse_fls", "sparse_fls_softplus2"),
    ("sparse_fls", "sparse_fls_no_final_relu"),
    ("sparse_fls", "sparse_fls_conv1"),
    ("sparse_fls", "sparse_fls_every_conv"),
    ("dense_fls", "dense_fls_norm"),
    ("rs", "rs_no_pad"),
    ("maxpool_cnn", "maxpool_cnn_narrow"),
]


@pytest.mark.parametrize(("base", "variant"), OPTION_PAIRS)
def test_each_option_changes_the_computation(base: str, variant: str, atari_obs: torch.Tensor) -> None:
    a = policy_for(base).features_extractor
    b = copy.deepcopy(policy_for(variant).features_extractor)
    shapes_a = {k: v.shape for k, v in a.state_dict().items()}
    shapes_b = {k: v.shape for k, v in b.state_dict().items()}
    if shapes_a != shapes_b:
        return  # different parameters: a different graph by construction
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        out_a, out_b = a(atari_obs), b(atari_obs)
    assert not torch.allclose(out_a, out_b), f"{variant} computes the same function as {base}"


def test_final_relu_off_lets_features_go_negative(atari_obs: torch.Tensor) -> None:
    extractor = policy_for("sparse_fls_no_final_relu").features_extractor
    seen = {}
    extractor.fls["2"].register_forward_hook(lambda _m, inputs, _o: seen.setdefault("f", inputs[0]))
    with torch.no_grad():
        extractor(atari_obs)
    assert (seen["f"] < 0).any()


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"name": "resnet"},
            "model.name=resnet: one of nature_cnn, sparse_fls, dense_fls, rs, daqn, maxpool_cnn",
        ),
        ({"name": "nature_cnn", "sum_pool": True}, "model.sum_pool does not apply to nature_cnn (its options: none)"),
        ({"name": "sparse_fls", "pad_input": True}, "model.pad_input does not apply to sparse_fls"),
        ({"name": "dense_fls", "sum_pool": False}, "dense_fls always sum-pools"),
        ({"name": "sparse_fls", "attention_at": "conv1", "sum_pool": True}, "needs model.attention_at=conv3"),
        ({"name": "sparse_fls", "fls_kernel": 5}, "model.fls_kernel=5: one of 3, 1, or null"),
        (
            {"name": "sparse_fls", "attention_at": "conv2"},
            "model.attention_at=conv2: one of conv3, conv1, every_conv, or null",
        ),
        ({"name": "sparse_fls", "entropy_lambda": -0.1}, "model.entropy_lambda=-0.1: a finite number >= 0"),
        ({"name": "nature_cnn", "entropy_lambda": 0.001}, "needs a model with attention; nature_cnn has none"),
        (
            {"name": "maxpool_cnn", "channels": [32, 0]},
            "model.channels=[32,0]: a list, each item an integer >= 1, or null",
        ),
        ({"name": "maxpool_cnn", "kernel_size": 4}, "model.kernel_size=4: a positive odd integer, or null"),
    ],
)
def test_bad_model_configs_are_named(cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        extractor_kwargs(cfg)
    assert message in str(info.value)


@pytest.mark.parametrize("variant", ["sparse_fls", "dense_fls", "rs", "daqn"])
def test_an_extractor_copies_after_a_forward_pass_with_gradients(variant: str, atari_obs: torch.Tensor) -> None:
    """The stored attention maps are non-leaf tensors of the last pass's graph: a copy (faithfulness's randomised
    networks, a user's target network) leaves them out instead of failing."""
    extractor = policy_for(variant).features_extractor
    extractor(atari_obs)  # with gradients: last_attention is part of a graph
    assert extractor.last_attention[0].grad_fn is not None
    clone = copy.deepcopy(extractor)
    assert clone.last_attention is None and extractor.last_attention is not None
    with torch.no_grad():
        assert torch.equal(clone(atari_obs), extractor(atari_obs))
