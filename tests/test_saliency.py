"""Saliency methods on real policies: hand-worked Grad-CAM/Grad-CAM++ (actor-critic and Q-networks), the attention of
the acting forward pass, a planted region for perturbation, no side effects on play, every method on every model
(SB3 DQN and sb3-contrib QR-DQN included), errors, and videos."""

from __future__ import annotations

import copy
import random

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib.qrdqn.policies import CnnPolicy as QRDQNCnnPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import CnnPolicy as DQNCnnPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn
from torch.nn import functional as F

from fls.errors import ConfigError
from fls.models import MODELS, build_policy, render_attention
from fls.saliency import METHODS, AttentionSaliency, get_method, policy_forward
from fls.saliency.base import normalize_maps, trunk_extractor
from fls.saliency.video import overlay, play, record_video

OBS_SPACE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
N_ACTIONS = 4  # Breakout's minimal action set

# Every registered model and the options that change the graph the methods walk (attention site, padding,
# negative features, pooling). Cheap settings keep the many-sample methods fast; their defaults are benchmarked.
VARIANTS = {
    "nature_cnn": {"name": "nature_cnn"},
    "sparse_fls": {"name": "sparse_fls"},
    "sparse_fls_sum_pool_norm": {"name": "sparse_fls", "sum_pool": True, "normalize_attention": True},
    "sparse_fls_no_final_relu": {"name": "sparse_fls", "final_relu": False},
    "sparse_fls_conv1": {"name": "sparse_fls", "attention_at": "conv1"},
    "sparse_fls_every_conv": {"name": "sparse_fls", "attention_at": "every_conv"},
    "dense_fls": {"name": "dense_fls"},
    "rs": {"name": "rs", "pad_input": True},
    "rs_no_pad": {"name": "rs", "pad_input": False},
    "daqn": {"name": "daqn"},
    "maxpool_cnn": {"name": "maxpool_cnn"},
    "maxpool_cnn_narrow": {"name": "maxpool_cnn", "channels": [16, 32, 32], "kernel_size": 3},
}
CHEAP = {
    "smoothgrad": {"n_samples": 2},
    "vargrad": {"n_samples": 2},
    "integrated_gradients": {"n_steps": 2},
    "perturbation": {"stride": 42},
    "perturbation_critic": {"stride": 42},
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread for this module: on a shared 2-core machine, two OpenMP threads that wait for each other
    while the other core is busy made small forward passes 10-50x slower (measured: 1.5 ms vs 96 ms at batch 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cheap_methods(names=None) -> dict:
    return {name: get_method(name, **CHEAP.get(name, {})) for name in names or METHODS}


_POLICIES: dict[str, BasePolicy] = {}
Q_VARIANTS = ("sb3_dqn", "sb3_qrdqn")  # SB3's DQN CnnPolicy and sb3-contrib's QR-DQN CnnPolicy, as the zoo trains


def policy_for(variant: str) -> BasePolicy:
    """One untrained policy per variant for the module (the orthogonal init of the 3136x512 layer is slow)."""
    if variant not in _POLICIES:
        torch.manual_seed(0)
        if variant == "sb3_dqn":
            _POLICIES[variant] = DQNCnnPolicy(OBS_SPACE, gym.spaces.Discrete(N_ACTIONS), lambda _: 1e-4)
        elif variant == "sb3_qrdqn":
            _POLICIES[variant] = QRDQNCnnPolicy(OBS_SPACE, gym.spaces.Discrete(N_ACTIONS), lambda _: 1e-4)
        elif variant.startswith("sb3_cnn"):  # SB3's own CnnPolicy (NatureCNN, normalize_images), as PPO("CnnPolicy")
            _POLICIES[variant] = ActorCriticCnnPolicy(
                OBS_SPACE,
                gym.spaces.Discrete(N_ACTIONS),
                lambda _: 2.5e-4,
                share_features_extractor=variant != "sb3_cnn_separate",
            )
        else:
            _POLICIES[variant] = build_policy(VARIANTS[variant], OBS_SPACE, gym.spaces.Discrete(N_ACTIONS))
    return _POLICIES[variant]


@pytest.fixture(scope="module")
def atari_obs() -> torch.Tensor:
    """Three real Breakout observations (full stacks, the ball in play)."""
    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=3, seed=5)
    env.action_space.seed(0)
    obs = env.reset()
    for _ in range(25):
        obs, *_ = env.step(np.array([env.action_space.sample() for _ in range(3)]))
    env.close()
    return torch.as_tensor(obs)


# --- hand-built networks -------------------------------------------------------------------------------------------


class PatchConv(BaseFeaturesExtractor):
    """x/255 -> conv 4->2 (kernel 12, stride 12: a 7x7 grid) -> ReLU -> flatten (98 features)."""

    def __init__(self, observation_space: gym.spaces.Box):
        super().__init__(observation_space, features_dim=98)
        self.conv = nn.Conv2d(4, 2, kernel_size=12, stride=12)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(observations.float() / 255.0)).flatten(1)


class RegionReader(BaseFeaturesExtractor):
    """Reads only rows 40..51, cols 20..31 of all frames: nothing outside that box can change the outputs."""

    ROWS, COLS = slice(40, 52), slice(20, 32)

    def __init__(self, observation_space: gym.spaces.Box):
        super().__init__(observation_space, features_dim=4 * 12 * 12)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return (observations.float()[:, :, self.ROWS, self.COLS] / 255.0).flatten(1)


def hand_policy(extractor: type[BaseFeaturesExtractor]) -> ActorCriticPolicy:
    return ActorCriticPolicy(
        OBS_SPACE,
        gym.spaces.Discrete(3),
        lambda _: 0.0,
        net_arch=[],
        features_extractor_class=extractor,
        normalize_images=False,
    )


@pytest.fixture(scope="module")
def patch_net():
    """PatchConv with fixed weights: per (out, in) channel a constant kernel v[k, c], biases, fixed heads."""
    policy = hand_policy(PatchConv)
    v = np.array([[1.0, -0.5, 0.25, 2.0], [-1.0, 0.5, 1.5, -0.25]]) / 144.0
    conv_bias = np.array([0.05, 0.3])
    rng = np.random.default_rng(7)
    head = rng.normal(size=(3, 2, 7, 7))
    with torch.no_grad():
        conv = policy.features_extractor.conv
        conv.weight.copy_(torch.as_tensor(v, dtype=torch.float32)[:, :, None, None].expand(2, 4, 12, 12))
        conv.bias.copy_(torch.as_tensor(conv_bias, dtype=torch.float32))
        policy.action_net.weight.copy_(torch.as_tensor(head.reshape(3, 98), dtype=torch.float32))
        policy.action_net.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        policy.value_net.weight.copy_(torch.as_tensor(rng.normal(size=(1, 98)), dtype=torch.float32))
    obs = torch.as_tensor(rng.integers(0, 256, size=(2, 4, 84, 84)), dtype=torch.uint8)
    return policy, obs, v, conv_bias, head


def hand_activations(obs: np.ndarray, v: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A[b, k, i, j] = sum_c v[k, c] * (sum of the 12x12 patch (i, j) of channel c) / 255 + bias[k]."""
    patches = obs.astype(np.float64).reshape(obs.shape[0], 4, 7, 12, 7, 12).sum(axis=(3, 5)) / 255.0
    return np.einsum("kc,bcij->bkij", v, patches) + bias[None, :, None, None]


def upsample(grid: np.ndarray) -> torch.Tensor:
    return F.interpolate(torch.as_tensor(grid, dtype=torch.float32)[:, None], size=(84, 84), mode="bilinear")[:, 0]


def test_gradcam_matches_the_formula_worked_by_hand(patch_net) -> None:
    policy, obs, v, conv_bias, head = patch_net
    a = hand_activations(obs.numpy(), v, conv_bias)
    y = np.einsum("akij,bkij->ba", head, np.maximum(a, 0)) + np.array([0.1, -0.2, 0.3])
    greedy = y.argmax(axis=1)
    # y = sum W * relu(A): dy/dA = W where A > 0, else 0.
    grad = head[greedy] * (a > 0)
    alpha = grad.mean(axis=(2, 3))
    expected = upsample(np.maximum((alpha[:, :, None, None] * a).sum(axis=1), 0))
    method = get_method("gradcam", layer="features_extractor.conv")
    torch.testing.assert_close(method.raw(policy, obs), expected, rtol=1e-4, atol=1e-5)
    # The default layer is the last conv of the trunk, here the only one; normalisation divides by the max.
    torch.testing.assert_close(get_method("gradcam")(policy, obs), normalize_maps(expected), rtol=1e-4, atol=1e-5)
    # An explicit action and the critic.
    grad2 = head[[2, 2]] * (a > 0)
    expected2 = upsample(np.maximum((grad2.mean(axis=(2, 3))[:, :, None, None] * a).sum(axis=1), 0))
    torch.testing.assert_close(method.raw(policy, obs, 2), expected2, rtol=1e-4, atol=1e-5)
    wv = policy.value_net.weight.detach().numpy().astype(np.float64).reshape(1, 2, 7, 7)
    gv = wv * (a > 0)
    expected_v = upsample(np.maximum((gv.mean(axis=(2, 3))[:, :, None, None] * a).sum(axis=1), 0))
    torch.testing.assert_close(method.raw(policy, obs, "value"), expected_v, rtol=1e-4, atol=1e-5)


def test_gradcam_plus_plus_matches_the_formula_worked_by_hand(patch_net) -> None:
    policy, obs, v, conv_bias, head = patch_net
    a = hand_activations(obs.numpy(), v, conv_bias)
    g = head[[1, 0]] * (a > 0)
    alpha = g**2 / (2 * g**2 + a.sum(axis=(2, 3), keepdims=True) * g**3 + 1e-7)
    alpha = np.where(g != 0, alpha, 0.0)
    weights = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
    expected = upsample(np.maximum((weights[:, :, None, None] * a).sum(axis=1), 0))
    got = get_method("gradcam++").raw(policy, obs, actions=[1, 0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_rectified_gradcam_matches_the_formula_worked_by_hand(patch_net) -> None:
    policy, _, v, _, head = patch_net
    # patch_net's activations are all positive; this bias and flat 12x12 patches make about half of them negative.
    policy = copy.deepcopy(policy)
    bias = np.array([-1.5, 0.0])
    with torch.no_grad():
        policy.features_extractor.conv.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    levels = np.random.default_rng(11).integers(0, 256, size=(2, 4, 7, 7))
    obs = torch.as_tensor(levels.repeat(12, axis=2).repeat(12, axis=3), dtype=torch.uint8)
    a = hand_activations(obs.numpy(), v, bias)
    assert 0.3 < (a > 0).mean() < 0.8
    r = np.maximum(a, 0)  # the rectified feature maps
    w_value = policy.value_net.weight.detach().numpy().astype(np.float64).reshape(1, 2, 7, 7)
    for target, w in ((0, head[[0, 0]]), ("value", w_value.repeat(2, axis=0))):
        # y = sum W * r: dy/dr = W everywhere, also where the ReLU is off (before it: W * [A > 0]).
        expected = upsample(np.maximum((w.mean(axis=(2, 3))[:, :, None, None] * r).sum(axis=1), 0))
        got = get_method("gradcam", rectified=True).raw(policy, obs, target)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        assert float(got.max()) > 0.05 and differs(got, get_method("gradcam").raw(policy, obs, target))
        alpha = w**2 / (2 * w**2 + r.sum(axis=(2, 3), keepdims=True) * w**3 + 1e-7)
        weights = (np.where(w != 0, alpha, 0.0) * np.maximum(w, 0)).sum(axis=(2, 3))
        expected_pp = upsample(np.maximum((weights[:, :, None, None] * r).sum(axis=1), 0))
        got_pp = get_method("gradcam++", rectified=True).raw(policy, obs, target)
        torch.testing.assert_close(got_pp, expected_pp, rtol=1e-4, atol=1e-6)


def test_gradcam_matches_captum_before_and_after_the_relu(atari_obs) -> None:
    """SB3's NatureCNN has the ReLU as a module: captum's LayerGradCam on the conv is the default, on the ReLU
    module the rectified option."""
    from captum.attr import LayerAttribution, LayerGradCam

    policy = policy_for("sb3_cnn")
    modules = dict(policy.features_extractor.named_modules())
    with torch.no_grad():
        greedy = policy_forward(policy, atari_obs).logits.argmax(dim=1)
    for layer, rectified in (("cnn.4", False), ("cnn.5", True)):
        cam = LayerGradCam(lambda t: policy_forward(policy, t).logits, modules[layer])
        attribution = cam.attribute(atari_obs.float(), target=greedy, relu_attributions=True)
        reference = LayerAttribution.interpolate(attribution, (84, 84), interpolate_mode="bilinear")[:, 0].detach()
        got = get_method("gradcam", rectified=rectified).raw(policy, atari_obs)
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6 * float(reference.abs().max()))
    assert differs(get_method("gradcam").raw(policy, atari_obs), got)  # the two conventions give other maps


def test_rectified_gradcam_needs_a_relu_after_the_layer(atari_obs) -> None:
    with pytest.raises(ConfigError, match="goes through 0"):  # the "w/o final ReLU" variant
        get_method("gradcam", rectified=True)(policy_for("sparse_fls_no_final_relu"), atari_obs)
    with pytest.raises(ConfigError, match="rectified must be true or false"):
        get_method("gradcam", rectified="yes")


def test_fullgrad_resizes_with_aligned_corners_as_the_reference(patch_net) -> None:
    """FullGrad on the one-conv net, worked by hand and resized as idiap/fullgrad-saliency does."""
    policy, obs, v, conv_bias, head = patch_net
    a = hand_activations(obs.numpy(), v, conv_bias)
    y = np.einsum("akij,bkij->ba", head, np.maximum(a, 0))
    g = head[y.argmax(axis=1)] * (a > 0)  # dy/dA
    # dA[k, i, j] / dx[c, pixel of patch (i, j)] = v[k, c] / 255
    grad_x = np.einsum("bkij,kc->bcij", g, v / 255.0).repeat(12, axis=2).repeat(12, axis=3)
    x = obs.numpy().astype(np.float64)

    def minmax(t: np.ndarray) -> np.ndarray:
        flat = t.reshape(len(t), -1)
        low, high = flat.min(axis=1), flat.max(axis=1)
        return (t - low.reshape(-1, *[1] * (t.ndim - 1))) / (high - low).reshape(-1, *[1] * (t.ndim - 1))

    bias_part = torch.as_tensor(minmax(np.abs(conv_bias[None, :, None, None] * g)))
    resized = F.interpolate(bias_part, size=(84, 84), mode="bilinear", align_corners=True).sum(dim=1)
    expected = torch.as_tensor(minmax(np.abs(x * grad_x)).sum(axis=1)) + resized
    got = get_method("fullgrad").raw(policy, obs)
    torch.testing.assert_close(got, expected.float(), rtol=1e-4, atol=1e-4)
    half_pixel = F.interpolate(bias_part, size=(84, 84), mode="bilinear", align_corners=False).sum(dim=1)
    assert float((half_pixel - resized).abs().max()) > 0.1  # the resize matters here


def hand_q_network(kind: str, v: np.ndarray, conv_bias: np.ndarray, seed: int = 11):
    """A DQN / QR-DQN policy on PatchConv with the patch_net conv; returns it, its (3, 2, 7, 7) action-value head and
    (3,) bias (QR-DQN: the mean over its 5 quantiles of each action's). The target network gets other weights, so a
    map that used it would differ."""
    rng = np.random.default_rng(seed)
    common = {"net_arch": [], "features_extractor_class": PatchConv, "normalize_images": False}
    if kind == "dqn":
        policy = DQNPolicy(OBS_SPACE, gym.spaces.Discrete(3), lambda _: 0.0, **common)
        online, target, rows = policy.q_net, policy.q_net_target, 3
    else:
        policy = QRDQNPolicy(OBS_SPACE, gym.spaces.Discrete(3), lambda _: 0.0, n_quantiles=5, **common)
        online, target, rows = policy.quantile_net, policy.quantile_net_target, 15
    weights, bias = rng.normal(size=(rows, 98)), rng.normal(size=rows)
    with torch.no_grad():
        for network, scale in ((online, 1.0), (target, -3.0)):
            conv = network.features_extractor.conv
            conv.weight.copy_(torch.as_tensor(scale * v, dtype=torch.float32)[:, :, None, None].expand(2, 4, 12, 12))
            conv.bias.copy_(torch.as_tensor(conv_bias, dtype=torch.float32))
            linear = next(m for m in network.modules() if isinstance(m, nn.Linear))
            linear.weight.copy_(torch.as_tensor(scale * weights, dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(scale * bias, dtype=torch.float32))
    if kind == "dqn":
        return policy, weights.reshape(3, 2, 7, 7), bias
    # QuantileNetwork views its output as (B, n_quantiles, A): row q * A + a is quantile q of action a.
    return policy, weights.reshape(5, 3, 98).mean(axis=0).reshape(3, 2, 7, 7), bias.reshape(5, 3).mean(axis=0)


@pytest.mark.parametrize("kind", ["dqn", "qrdqn"])
def test_gradcam_on_a_q_network_explains_q_of_the_action(kind: str, patch_net) -> None:
    """Grad-CAM worked by hand with y = Q(s, a) (QR-DQN: the mean of a's quantiles), y = max_a Q for "value"."""
    _, obs, v, conv_bias, _ = patch_net
    policy, head, q_bias = hand_q_network(kind, v, conv_bias)
    a = hand_activations(obs.numpy(), v, conv_bias)
    q = np.einsum("akij,bkij->ba", head, np.maximum(a, 0)) + q_bias
    torch.testing.assert_close(policy_forward(policy, obs).logits.double(), torch.as_tensor(q), rtol=1e-4, atol=1e-4)

    def expected(rows: np.ndarray) -> torch.Tensor:
        grad = head[rows] * (a > 0)  # dQ_a/dA = W_a where A > 0
        return upsample(np.maximum((grad.mean(axis=(2, 3))[:, :, None, None] * a).sum(axis=1), 0))

    method = get_method("gradcam")  # default layer: the online network's conv, never the target network's
    assert method.layer_name(policy) == ("q_net" if kind == "dqn" else "quantile_net") + ".features_extractor.conv"
    greedy = q.argmax(axis=1)
    torch.testing.assert_close(method.raw(policy, obs), expected(greedy), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        method.raw(policy, obs, actions=[1, 0]), expected(np.array([1, 0])), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(method.raw(policy, obs, 2), expected(np.array([2, 2])), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(method.raw(policy, obs, "value"), expected(greedy), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["dqn", "qrdqn"])
def test_perturbation_on_a_q_network_is_half_the_squared_q_change(kind: str, patch_net) -> None:
    from fls.saliency.perturbation import gaussian_blur

    _, obs, v, conv_bias, _ = patch_net
    policy = hand_q_network(kind, v, conv_bias)[0]
    x = obs[:1].float()
    yy, xx = torch.meshgrid(torch.arange(84.0), torch.arange(84.0), indexing="ij")
    mask = torch.exp(-(yy**2 + xx**2) / (2 * 5.0**2))
    perturbed = x * (1 - mask) + gaussian_blur(x, 3.0) * mask
    with torch.no_grad():
        if kind == "dqn":
            clean, changed = policy.q_net(x), policy.q_net(perturbed)
        else:
            clean, changed = policy.quantile_net(x).mean(dim=1), policy.quantile_net(perturbed).mean(dim=1)
    actor = 0.5 * (clean - changed).pow(2).sum()
    critic = 0.5 * (clean.max() - changed.max()).pow(2)
    assert actor > 0
    torch.testing.assert_close(get_method("perturbation", stride=84).raw(policy, obs[:1]), actor.expand(1, 84, 84))
    critic_map = get_method("perturbation_critic", stride=84).raw(policy, obs[:1])
    torch.testing.assert_close(critic_map, critic.expand(1, 84, 84))


def test_gradient_matches_captum_saliency(patch_net, atari_obs) -> None:
    from captum.attr import Saliency

    for policy, obs in [(patch_net[0], patch_net[1]), (policy_for("sparse_fls"), atari_obs)]:
        x = obs.float().requires_grad_(True)
        with torch.no_grad():
            greedy = policy_forward(policy, obs).logits.argmax(dim=1)
        reference = Saliency(lambda t, p=policy: policy_forward(p, t).logits).attribute(x, target=greedy, abs=True)
        # Relative tolerance only: an untrained net's input gradients are ~1e-7.
        torch.testing.assert_close(get_method("gradient").raw(policy, obs), reference.amax(dim=1), rtol=1e-5, atol=0)
        summed = get_method("gradient", frames="sum").raw(policy, obs)
        torch.testing.assert_close(summed, reference.sum(dim=1), rtol=1e-5, atol=1e-6 * float(summed.max()))


def test_perturbation_peaks_at_the_planted_region() -> None:
    torch.manual_seed(0)
    policy = hand_policy(RegionReader)
    rng = np.random.default_rng(3)
    obs = torch.as_tensor(rng.integers(0, 256, size=(2, 4, 84, 84)), dtype=torch.uint8)
    rows, cols = RegionReader.ROWS, RegionReader.COLS
    for name, target in [("perturbation", "action"), ("perturbation", 1), ("perturbation_critic", "action")]:
        maps = get_method(name).raw(policy, obs, target)
        assert maps.shape == (2, 84, 84)
        for m in maps:
            peak = np.unravel_index(int(m.argmax()), m.shape)
            assert rows.start <= peak[0] < rows.stop and cols.start <= peak[1] < cols.stop, (name, target, peak)
            # Far from the box (beyond 4 mask sigmas plus the grid step) the Gaussian mask leaves it untouched.
            far = torch.ones_like(m, dtype=torch.bool)
            far[max(0, rows.start - 25) : rows.stop + 25, max(0, cols.start - 25) : cols.stop + 25] = False
            assert m[far].max() < 1e-4 * m.max()


def test_perturbation_actor_score_is_half_the_squared_logit_change(patch_net) -> None:
    """One grid point (a stride past the frame), against a perturbation built by hand."""
    from fls.saliency.perturbation import gaussian_blur

    policy, obs = patch_net[0], patch_net[1][:1]
    x = obs.float()
    yy, xx = torch.meshgrid(torch.arange(84.0), torch.arange(84.0), indexing="ij")
    mask = torch.exp(-(yy**2 + xx**2) / (2 * 5.0**2))  # centred on pixel (0, 0), peak 1
    perturbed = x * (1 - mask) + gaussian_blur(x, 3.0) * mask
    with torch.no_grad():
        clean, changed = policy_forward(policy, x), policy_forward(policy, perturbed)
    actor = 0.5 * (clean.logits - changed.logits).pow(2).sum()
    critic = 0.5 * (clean.values - changed.values).pow(2).sum()
    assert actor > 0 and critic > 0
    method = get_method("perturbation", stride=84)
    torch.testing.assert_close(method.raw(policy, obs), actor.expand(1, 84, 84))
    torch.testing.assert_close(method.raw(policy, obs, "value"), critic.expand(1, 84, 84))
    torch.testing.assert_close(get_method("perturbation_critic", stride=84).raw(policy, obs), critic.expand(1, 84, 84))


# --- attention -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["sparse_fls", "sparse_fls_every_conv", "rs", "daqn"])
def test_attention_is_the_render_of_the_acting_forward_pass(variant: str, atari_obs: torch.Tensor) -> None:
    policy = policy_for(variant)
    method = AttentionSaliency()
    with torch.no_grad():
        actions, _, _ = policy(atari_obs, deterministic=True)  # the pass that chooses the actions
    expected = render_attention(policy.features_extractor)
    torch.testing.assert_close(method.from_forward(policy, normalize=False), expected)
    torch.testing.assert_close(method.from_forward(policy), normalize_maps(expected))
    # Standalone: one forward of its own gives the same maps, and act() returns that pass's outputs too.
    torch.testing.assert_close(method.raw(policy, atari_obs), expected)
    out, maps = method.act(policy, atari_obs, normalize=False)
    assert torch.equal(out.logits.argmax(dim=1), actions)
    torch.testing.assert_close(maps, expected)
    # Rendering after another forward pass shows that pass, not the first one.
    with torch.no_grad():
        policy(atari_obs.flip(0))
    torch.testing.assert_close(method.from_forward(policy, normalize=False), expected.flip(0))


# --- no side effects -----------------------------------------------------------------------------------------------


def policy_state(policy: nn.Module) -> dict:
    return {
        "params": {k: v.detach().clone() for k, v in policy.state_dict().items()},
        "grads": [p.grad for p in policy.parameters()],
        "requires_grad": [p.requires_grad for p in policy.parameters()],
        "training": [m.training for m in policy.modules()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in policy.modules()],
        "attention": [id(m.last_attention) for m in policy.modules() if hasattr(m, "last_attention")],
    }


@pytest.mark.parametrize("variant", ["sparse_fls", "sb3_cnn", "sb3_dqn"])
def test_methods_leave_no_trace(variant: str, atari_obs: torch.Tensor) -> None:
    policy = policy_for(variant)
    obs = atari_obs[:2]
    policy.train()  # training mode must survive the eval-mode computations
    with torch.no_grad():
        policy(obs)  # leaves last_attention: a loss could still read it
    before = policy_state(policy)
    rng_states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    methods = cheap_methods([n for n in METHODS if n != "attention" or variant == "sparse_fls"])
    for name, method in methods.items():
        first = method(policy, obs)
        torch.testing.assert_close(method(policy, obs), first, msg=f"{name} is not deterministic")
        if name in ("gradient", "integrated_gradients", "perturbation"):  # one per way of getting gradients
            with torch.no_grad():  # callers in no_grad or inference mode still get gradient maps
                torch.testing.assert_close(method(policy, obs), first)
            with torch.inference_mode():
                torch.testing.assert_close(method(policy, obs), first)
        after = policy_state(policy)
        for key in ("grads", "requires_grad", "training", "hooks", "attention"):
            assert after[key] == before[key], f"{name} changed {key}"
        for key, value in before["params"].items():
            assert torch.equal(after["params"][key], value), f"{name} changed {key}"
    assert torch.equal(torch.get_rng_state(), rng_states[0])
    assert np.array_equal(np.random.get_state()[1], rng_states[1])
    assert random.getstate() == rng_states[2]
    policy.eval()


STEPS = 200


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["sparse_fls", *Q_VARIANTS])
def test_saliency_on_or_off_gives_the_same_game(variant: str) -> None:
    """An untrained policy playing Breakout with sampled (Q-networks: ε-greedy) actions: every method that applies
    on, or none, same game."""
    policy = policy_for(variant)
    policy.train()
    # A large ε: the untrained Q-networks' greedy action is nearly constant.
    acting = {"epsilon": 0.5} if variant in Q_VARIANTS else {}
    names = [n for n in METHODS if n != "attention" or variant not in Q_VARIANTS]
    off = play(policy, "Breakout", seed=11, episodes=3, max_steps=STEPS, **acting)
    on = play(
        policy, "Breakout", seed=11, episodes=3, max_steps=STEPS, methods=cheap_methods(names), map_batch=64, **acting
    )
    assert policy.training
    assert [(e.score, e.length, e.actions) for e in on] == [(e.score, e.length, e.actions) for e in off]
    assert sum(e.length for e in on) == STEPS and not on[-1].finished
    if variant not in Q_VARIANTS:  # an untrained DQN's first game outlasted the 200 steps (measured)
        assert len(on) >= 2 and on[0].finished  # a game over and a new game within the steps
    assert len(set(on[0].actions)) > 1  # sampled actions, not a constant
    policy.eval()


# --- every method on every model -----------------------------------------------------------------------------------


def check_maps(maps: torch.Tensor, batch: int, name: str) -> None:
    assert maps.shape == (batch, 84, 84), name
    assert maps.dtype == torch.float32, name
    assert torch.isfinite(maps).all(), name
    assert (maps >= 0).all(), name


@pytest.mark.slow
@pytest.mark.parametrize("variant", [*VARIANTS, "sb3_cnn", "sb3_cnn_separate", *Q_VARIANTS])
def test_every_method_runs_on_every_model(variant: str, atari_obs: torch.Tensor) -> None:
    policy = policy_for(variant)
    has_attention = getattr(trunk_extractor(policy), "has_attention", False)
    obs = atari_obs[:2]
    for name, method in cheap_methods().items():
        if name == "attention" and not has_attention:
            with pytest.raises(ConfigError):
                method(policy, obs)
            continue
        check_maps(method.raw(policy, obs), 2, name)
        check_maps(method.raw(policy, obs[:1], "value"), 1, f"{name} value")
        normalized = method(policy, obs)
        check_maps(normalized, 2, name)
        peaks = normalized.flatten(1).amax(dim=1)
        assert torch.all((peaks == 0) | torch.isclose(peaks, torch.ones_like(peaks))), name


def test_registered_models_are_all_covered() -> None:
    assert {cfg["name"] for cfg in VARIANTS.values()} == set(MODELS)


def test_batched_maps_equal_one_at_a_time(atari_obs: torch.Tensor) -> None:
    policy = policy_for("sparse_fls")
    for name in ["gradient", "gradcam", "gradcam++", "fullgrad", "fullgrad++", "integrated_gradients", "perturbation"]:
        method = get_method(name, **CHEAP.get(name, {}))
        batched = method.raw(policy, atari_obs)
        single = torch.cat([method.raw(policy, atari_obs[i : i + 1]) for i in range(len(atari_obs))])
        torch.testing.assert_close(batched, single, rtol=1e-3, atol=1e-6 * float(single.max()), msg=name)


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two batches of maps differ beyond float noise (relative to their scale: raw maps can be ~1e-12)."""
    return not torch.allclose(normalize_maps(a), normalize_maps(b), rtol=1e-3, atol=1e-4)


def test_targets_select_what_is_explained(atari_obs: torch.Tensor) -> None:
    policy = policy_for("sparse_fls")
    method = get_method("gradient")
    with torch.no_grad():
        greedy = policy_forward(policy, atari_obs).logits.argmax(dim=1)
    default = method.raw(policy, atari_obs)
    assert torch.equal(default, method.raw(policy, atari_obs, actions=greedy))
    other = (greedy + 1) % N_ACTIONS
    assert differs(default, method.raw(policy, atari_obs, actions=other))
    assert torch.equal(method.raw(policy, atari_obs, actions=other), method.raw(policy, atari_obs, other))
    assert differs(default, method.raw(policy, atari_obs, "value"))
    smooth = get_method("smoothgrad", n_samples=3)
    assert torch.equal(smooth.raw(policy, atari_obs), smooth.raw(policy, atari_obs))  # seeded per call
    assert differs(smooth.raw(policy, atari_obs), get_method("smoothgrad", n_samples=3, seed=1).raw(policy, atari_obs))


# --- errors --------------------------------------------------------------------------------------------------------


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        get_method("lime")
    message = str(info.value)
    assert "unknown saliency method 'lime'" in message and "\n" not in message
    for name in METHODS:
        assert name in message
    with pytest.raises(ConfigError, match="unknown option 'n_samples' for saliency method 'gradcam' .*layer"):
        get_method("gradcam", n_samples=3)
    with pytest.raises(ConfigError, match="frames must be one of max, sum, newest"):
        get_method("gradient", frames="mean")


def test_bad_layer_lists_the_conv_layers(atari_obs: torch.Tensor) -> None:
    policy = policy_for("sparse_fls")
    with pytest.raises(ConfigError) as info:
        get_method("gradcam", layer="features_extractor.convs.7")(policy, atari_obs)
    message = str(info.value)
    assert "\n" not in message and "unknown layer 'features_extractor.convs.7'" in message
    for name in ["features_extractor.convs.0", "features_extractor.convs.1", "features_extractor.convs.2"]:
        assert name in message
    with pytest.raises(ConfigError, match="features_extractor.cnn.4"):
        get_method("gradcam++", layer="cnn.4")(policy_for("sb3_cnn"), atari_obs)
    # An existing layer that is not the default works, and differs from the default.
    conv2 = get_method("gradcam", layer="features_extractor.convs.1").raw(policy, atari_obs)
    check_maps(conv2, 3, "gradcam conv2")
    assert not torch.allclose(conv2, get_method("gradcam").raw(policy, atari_obs))


def test_attention_on_a_model_without_attention_names_the_models_with_it(atari_obs: torch.Tensor) -> None:
    for variant in ["nature_cnn", "sb3_cnn", *Q_VARIANTS]:
        with pytest.raises(ConfigError) as info:
            get_method("attention")(policy_for(variant), atari_obs)
        message = str(info.value)
        assert "needs a model with attention" in message and "\n" not in message
        for name in ["daqn", "dense_fls", "rs", "sparse_fls"]:
            assert name in message
        assert "methods that apply: gradcam, gradcam++, fullgrad, fullgrad++" in message
    with pytest.raises(ConfigError, match="needs a model with attention"):
        play(policy_for("nature_cnn"), "Breakout", methods=["attention"], max_steps=1)


def test_bad_targets_are_config_errors(atari_obs: torch.Tensor) -> None:
    policy = policy_for("sparse_fls")
    with pytest.raises(ConfigError, match="valid: action, value"):
        get_method("gradient")(policy, atari_obs, "q")
    with pytest.raises(ConfigError, match="0..3"):
        get_method("gradient")(policy, atari_obs, 4)


# --- overlays and videos -------------------------------------------------------------------------------------------


def test_overlay_blends_the_map_onto_the_frame() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(210, 160, 3), dtype=np.uint8)
    assert np.array_equal(overlay(frame, np.zeros((84, 84))), frame)  # no saliency: the game unchanged
    hot = overlay(frame, np.ones((84, 84)), alpha=1.0)
    assert hot.shape == (210, 160, 3) and hot.dtype == np.uint8
    assert np.ptp(hot.reshape(-1, 3), axis=0).max() <= 1  # full weight: the colormap's top colour everywhere
    reference = overlay(frame, np.full((84, 84), 0.5), style="reference")
    expected = np.clip((0.5 * (frame / 255.0 + 0.5)) * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(reference.astype(int) - expected).max() <= 1


def test_video_has_one_frame_per_step(tmp_path) -> None:
    import imageio.v2 as imageio

    policy = policy_for("sparse_fls")
    steps = 12
    recording = record_video(
        policy,
        "Breakout",
        tmp_path / "breakout.mp4",
        methods={"attention": "attention", "Grad-CAM": get_method("gradcam")},
        seed=2,
        max_steps=steps,
        png_dir=tmp_path / "frames",
        progress=False,
    )
    reader = imageio.get_reader(recording.video)
    try:
        frames = [frame for frame in reader]
    finally:
        reader.close()
    panels = 1 + 2 + 1  # raw frame, two methods, the network input
    assert len(frames) == steps
    assert frames[0].shape == (480, panels * 320, 3)
    assert len(recording.frames) == steps and all(p.exists() for p in recording.frames)
    assert imageio.imread(recording.frames[0]).shape == (480, panels * 320, 3)
    assert sum(e.length for e in recording.episodes) == steps and not recording.episodes[-1].finished
    # Same seed, same game, whatever is drawn.
    replay = play(policy, "Breakout", seed=2, max_steps=steps)
    assert [e.actions for e in replay] == [e.actions for e in recording.episodes]


def test_gif_with_per_frame_normalisation(tmp_path) -> None:
    import imageio.v3 as iio

    recording = record_video(
        policy_for("daqn"),
        "Breakout",
        tmp_path / "daqn.gif",
        methods=["attention"],
        max_steps=4,
        normalize="frame",
        show_input=False,
        scale=1,
        deterministic=True,
        progress=False,
    )
    frames = iio.imread(recording.video)
    assert frames.shape[1:3] == (240, 320)  # 15 + 210 + 15 -> 240, two 160 panels
    assert 1 <= frames.shape[0] <= 4  # GIF writers merge identical consecutive frames
    with pytest.raises(ConfigError, match="valid: video, frame"):
        record_video(policy_for("daqn"), "Breakout", tmp_path / "x.mp4", normalize="global", progress=False)
