"""Attention trees: a hand-built net's known strongest path, peak detection, the LRP contributions against autograd,
every model (all extractors, SB3 CnnPolicy, DQN), the PNG / plotly HTML views, the video panel and task=tree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import CnnPolicy as DQNCnnPolicy
from torch import nn
from torch.nn import functional as F

from fls.errors import ConfigError
from fls.models import build_policy
from fls.saliency import get_method
from fls.saliency.tree import AttentionTree, attention_trees, find_peaks
from fls.saliency.tree_views import tree_image, write_html, write_png
from tests.test_saliency import N_ACTIONS, OBS_SPACE, VARIANTS, policy_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def atari_obs() -> torch.Tensor:
    """Two real Breakout observations (full stacks, the ball in play)."""
    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=2, seed=5)
    env.action_space.seed(0)
    obs = env.reset()
    for _ in range(25):
        obs, *_ = env.step(np.array([env.action_space.sample() for _ in range(2)]))
    env.close()
    return torch.as_tensor(obs)


# --- peak detection ------------------------------------------------------------------------------------------------


def test_peaks_on_a_plateau_are_separated() -> None:
    values = np.zeros((8, 9))
    values[2:6, 1:7] = 1.0  # a 4x6 plateau: every cell is a (non-strict) local maximum
    values[7, 8] = 3.0
    peaks = find_peaks(values, n=10, min_separation=2)
    assert peaks[0] == (7, 8)
    plateau = peaks[1:]
    assert plateau == [(2, 1), (2, 3), (2, 5), (4, 1), (4, 3), (4, 5)]  # strongest first, ties in raster order
    for i, a in enumerate(peaks):
        for b in peaks[i + 1 :]:
            assert max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 2
    assert find_peaks(values, n=2, min_separation=3) == [(7, 8), (2, 1)]


def test_peaks_are_local_maxima_not_the_largest_values() -> None:
    yy, xx = np.mgrid[:20, :20]
    blob = np.exp(-((yy - 5) ** 2 + (xx - 5) ** 2) / 8.0)
    bump = 0.3 * np.exp(-((yy - 15) ** 2 + (xx - 14) ** 2) / 2.0)
    values = blob + bump
    flat = np.argsort(values, axis=None)[::-1][:2]
    assert all(np.hypot(*(np.array(np.unravel_index(i, values.shape)) - 5)) <= 1 for i in flat)  # top-2 crowd
    assert find_peaks(values, n=2) == [(5, 5), (15, 14)]
    assert find_peaks(-values, n=3) == []  # contributions must be positive
    with pytest.raises(ValueError):
        find_peaks(values[0], n=1)


# --- a hand-built net with a known strongest path --------------------------------------------------------------------


class TinyTrunk(BaseFeaturesExtractor):
    """1x8x8 -> conv 1->2 (k2 s2) -> ReLU -> conv 2->1 (k2 s2) -> ReLU -> 4 features."""

    def __init__(self, observation_space: gym.spaces.Box):
        super().__init__(observation_space, features_dim=4)
        self.convs = nn.ModuleList([nn.Conv2d(1, 2, 2, stride=2), nn.Conv2d(2, 1, 2, stride=2)])

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.float()
        for conv in self.convs:
            x = F.relu(conv(x))
        return x.flatten(1)


def tiny_policy() -> ActorCriticPolicy:
    space = gym.spaces.Box(0.0, 1.0, (1, 8, 8), np.float32)
    policy = ActorCriticPolicy(
        space, gym.spaces.Discrete(2), lambda _: 0.0, net_arch=[], features_extractor_class=TinyTrunk
    )
    conv1, conv2 = policy.features_extractor.convs
    with torch.no_grad():
        for layer in (conv1, conv2, policy.action_net):
            layer.bias.zero_()
        conv1.weight.copy_(torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]]))
        conv2.weight.copy_(torch.tensor([[[[0.1, 0.1], [0.1, 0.1]], [[0.0, 0.0], [0.0, 2.0]]]]))
        policy.action_net.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    return policy


def test_tiny_net_tree_is_its_strongest_path() -> None:
    """Action 0 reads conv2's top-left unit. Its field holds conv1 blocks (0,0) (the brightest pixel, 1.0, but
    weight 0.1: 0.1) and (1,1) (channel 1 x weight 2: 1.34); inside block (1,1) pixel (3,2) feeds channel 1
    (1.26) while the brighter (2,3) only feeds channel 0 (0.08). The tree must be exactly that path."""
    policy = tiny_policy()
    obs = np.zeros((1, 1, 8, 8), np.float32)
    obs[0, 0, 0, 0], obs[0, 0, 3, 2], obs[0, 0, 2, 3] = 1.0, 0.6, 0.8
    for n in (1, 2, 3):
        (tree,) = attention_trees(policy, obs, actions=[0], n=n)
        got = [(node.level, node.layer, node.channel, node.y, node.x, node.parent) for node in tree.nodes]
        assert got == [(2, "conv2", 0, 0, 0, None), (1, "conv1", 1, 1, 1, 0), (0, "input", 0, 3, 2, 1)], n
        np.testing.assert_allclose([node.contribution for node in tree.nodes], [1.44, 1.34, 1.26], rtol=1e-5)
        np.testing.assert_allclose([node.activation for node in tree.nodes], [1.44, 0.6, 0.6], rtol=1e-5)
        assert [node.center for node in tree.nodes] == [(1.5, 1.5), (2.5, 2.5), (3.0, 2.0)]
        assert tree.root == "gradient" and tree.action == 0 and tree.levels == ["input", "conv1", "conv2"]
    (shallow,) = attention_trees(policy, obs, actions=[0], n=1, depth=1)
    assert [node.level for node in shallow.nodes] == [2, 1]
    (other,) = attention_trees(policy, obs, actions=[1], n=1)  # action 1 reads a unit whose field is dark
    assert other.nodes == [] and other.action == 1


# --- the contribution rule against autograd -------------------------------------------------------------------------


def test_children_contributions_are_activation_times_gradient(atari_obs: torch.Tensor) -> None:
    """For the Nature CNN, conv2-level children carry sum_c A(c, r) ds/dA(c, r), s = sum_c dy/dz3(c,p) z3(c,p)."""
    policy = policy_for("nature_cnn")
    obs = atari_obs[:1]
    (tree,) = attention_trees(policy, obs, n=3, depth=1)
    extractor = policy.features_extractor
    captured = {}
    handle = extractor.convs[2].register_forward_hook(lambda m, i, o: captured.update(a=i[0], z=o))
    try:
        with torch.enable_grad():
            out = policy.action_net(policy.mlp_extractor(extractor(obs.float()))[0])
            action = int(out.argmax())
            (grad,) = torch.autograd.grad(out[0, action], captured["z"])
    finally:
        handle.remove()
    a2 = captured["a"].detach().requires_grad_(True)
    z3 = extractor.convs[2](a2)
    roots = [i for i, node in enumerate(tree.nodes) if node.parent is None]
    assert roots and tree.action == action
    for r in roots:
        root = tree.nodes[r]
        s = (grad[0, :, root.y, root.x] * z3[0, :, root.y, root.x]).sum()
        assert root.contribution == pytest.approx(float(s.detach()), rel=1e-4)
        (ds,) = torch.autograd.grad(s, a2, retain_graph=True)
        expected = (a2 * ds)[0].sum(dim=0).detach()
        children = tree.children(r)
        assert children
        for c in children:
            child = tree.nodes[c]
            assert child.contribution == pytest.approx(float(expected[child.y, child.x]), rel=1e-4, abs=1e-9)
            assert abs(child.y - root.y) <= 2 and abs(child.x - root.x) <= 2  # inside conv3's 3x3 field
            peak = expected[max(child.y - 1, 0) : child.y + 2, max(child.x - 1, 0) : child.x + 2].max()
            assert child.contribution == pytest.approx(float(peak), rel=1e-4)  # a local peak


# --- the z^B rule at the input pixels --------------------------------------------------------------------------------


class OneConv(BaseFeaturesExtractor):
    """uint8 1x6x6 (SB3 divides by 255) -> conv 1->2 (k3, s1, pad 1, with bias) -> ReLU -> 72 features."""

    def __init__(self, observation_space: gym.spaces.Box):
        super().__init__(observation_space, features_dim=72)
        self.convs = nn.ModuleList([nn.Conv2d(1, 2, 3, padding=1)])

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs[0](observations)).flatten(1)


def test_input_pixels_follow_the_zb_rule() -> None:
    """From conv1 to the pixels: R_i = sum_c v_c (x_i W - l W+ - h W-), v_c = w_c z_c / Z^B_c, bounds l = 0, h = 1
    (255 after SB3's /255; 0 in the conv's zero padding), computed here by hand. Black pixels under negative
    weights get relevance (LRP-0 gives them none), and nothing is left in the bias: the pixels add up to the root."""
    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, (1, 6, 6), np.uint8)
    policy = ActorCriticPolicy(
        space, gym.spaces.Discrete(2), lambda _: 0.0, net_arch=[], features_extractor_class=OneConv
    )
    conv = policy.features_extractor.convs[0]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -2.0, 0.5], [-1.0, 2.0, -0.5], [0.3, -0.7, 1.0]]]] * 2))
        conv.weight[1] *= -0.5
        conv.bias.copy_(torch.tensor([0.4, 0.2]))
    obs = np.zeros((1, 1, 6, 6), np.uint8)
    obs[0, 0, 2, 2], obs[0, 0, 3, 4], obs[0, 0, 1, 3] = 255, 128, 60
    (tree,) = attention_trees(policy, obs, actions=[0], n=1, min_separation=1)
    root = tree.nodes[0]
    assert tree.root == "gradient" and root.level == 1

    x = torch.as_tensor(obs, dtype=torch.float32) / 255.0
    z = conv(x)
    logits = policy.action_net(F.relu(z).flatten(1))
    (grad,) = torch.autograd.grad(logits[0, 0], z)
    w, zc = grad[0, :, root.y, root.x].detach(), z[0, :, root.y, root.x].detach()
    W = conv.weight.detach()
    padded = F.pad(x, (1, 1, 1, 1))[0, 0]
    high = F.pad(torch.ones(1, 1, 6, 6), (1, 1, 1, 1))[0, 0]  # 1 inside the image, 0 in the padding
    window = (slice(root.y, root.y + 3), slice(root.x, root.x + 3))  # padded coordinates
    terms = torch.zeros(2, 3, 3)
    for c in range(2):
        for i in range(3):
            for j in range(3):
                xi, hi, wij = padded[window][i, j], high[window][i, j], W[c, 0, i, j]
                terms[c, i, j] = xi * wij - hi * min(float(wij), 0.0)  # l = 0
    relevance = ((w * zc / terms.sum(dim=(1, 2)))[:, None, None] * terms).sum(dim=0)
    assert float(relevance.sum()) == pytest.approx(root.contribution, rel=1e-5)  # conservation, bias included
    assert root.contribution == pytest.approx(float((w * zc).sum()), rel=1e-5)
    children = [tree.nodes[i] for i in tree.children(0)]
    assert children
    for child in children:
        expected = relevance[child.y - root.y + 1, child.x - root.x + 1]
        assert child.contribution == pytest.approx(float(expected), rel=1e-5)
    black = (padded[window] == 0) & (high[window] > 0)
    assert (relevance[black].abs() > 1e-3).any()  # LRP-0 (x W) would give every black pixel exactly 0
    (lrp0_depth,) = attention_trees(policy, obs, actions=[0], n=1, min_separation=1, depth=0)
    assert lrp0_depth.nodes == tree.nodes[:1]


# --- roots weighted by the explained target's relevance -------------------------------------------------------------


def attended_relevance(policy, obs: torch.Tensor, action: int) -> torch.Tensor:
    """(h, w) sum_c T dy/dT at the deepest attended features T of a SparseFLS (LRP-0 of the logit there), by a
    forward pass written out here."""
    e = policy.features_extractor
    x, leaf = obs.float() / 255.0, None
    cut = max(int(k) for k in e.fls)
    for i, conv in enumerate(e.convs):
        x = F.relu(conv(x))
        if str(i) in e.fls:
            x = x * e.fls[str(i)](x)
        if i == cut:
            leaf = x = x.detach().requires_grad_(True)
    logits = policy.action_net(policy.mlp_extractor(e.fc(x.flatten(1)))[0])
    (grad,) = torch.autograd.grad(logits[0, action], leaf)
    return (leaf * grad)[0].sum(dim=0).detach()


@pytest.mark.parametrize("attention_at", ["conv3", "conv1"])
def test_attention_roots_carry_the_target_s_relevance(attention_at: str, atari_obs: torch.Tensor) -> None:
    torch.manual_seed(0)
    policy = build_policy({"name": "sparse_fls", "attention_at": attention_at}, OBS_SPACE, gym.spaces.Discrete(4))
    obs = atari_obs[:1]
    by_action = {a: attention_trees(policy, obs, actions=[a], n=3, depth=1)[0] for a in (0, 1)}
    plain = {a: attention_trees(policy, obs, actions=[a], n=3, depth=1, root="attention")[0] for a in (0, 1)}
    value = attention_trees(policy, obs, "value", n=3, depth=1)[0]
    assert plain[0].nodes == plain[1].nodes  # the attention alone: the same tree for every action
    assert plain[0].root == "attention" and by_action[0].root == value.root == "relevance"
    roots = {a: [n for n in t.nodes if n.parent is None] for a, t in by_action.items()}
    assert [(n.y, n.x) for n in roots[0]] == [(n.y, n.x) for n in plain[0].nodes if n.parent is None]  # peaks
    for action in (0, 1):
        expected = attended_relevance(policy, obs, action)
        for root in roots[action]:
            assert root.contribution == pytest.approx(float(expected[root.y, root.x]), rel=1e-4, abs=1e-9)
    assert [n.contribution for n in roots[0]] != [n.contribution for n in roots[1]]
    assert [n.contribution for n in value.nodes] != [n.contribution for n in by_action[0].nodes]
    assert "relevance of action 0" in by_action[0].root_text() and "same for every action" in plain[0].root_text()
    assert by_action[0].to_dict()["root"] == "relevance"


def test_attention_roots_need_a_model_with_attention(atari_obs: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="tree.root=attention roots the tree at attention peaks; NatureCNN has no"):
        attention_trees(policy_for("nature_cnn"), atari_obs[:1], root="attention")
    with pytest.raises(ConfigError, match="root must be one of relevance, attention"):
        get_method("tree", root="pixels")


# --- every model ------------------------------------------------------------------------------------------------------


def check_tree(tree: AttentionTree, n: int) -> None:
    assert tree.nodes, "no roots"
    roots = [i for i, node in enumerate(tree.nodes) if node.parent is None]
    assert 1 <= len(roots) <= n
    assert min(node.level for node in tree.nodes) == 0, "the default depth reaches the input pixels"
    for i, node in enumerate(tree.nodes):
        assert np.isfinite(node.activation) and np.isfinite(node.contribution)
        assert tree.levels[node.level] == node.layer
        assert 0 <= node.center[0] < 84 and 0 <= node.center[1] < 84
        kids = tree.children(i)
        assert len(kids) <= n
        for k in kids:
            child = tree.nodes[k]
            assert child.level == node.level - 1 and child.depth == node.depth + 1 and child.contribution > 0
            half = (node.field - 1) / 2 + 0.5  # the child's centre lies in the parent's receptive field
            assert abs(child.center[0] - node.center[0]) <= half and abs(child.center[1] - node.center[1]) <= half
        if node.level == 0:
            assert 0 <= node.y < 84 and 0 <= node.x < 84 and 0 <= node.channel < 4


def shape(node) -> tuple:
    return (node.level, node.channel, node.y, node.x, node.parent)


def policy_or_dqn(variant: str):
    if variant == "dqn":
        torch.manual_seed(0)
        return DQNCnnPolicy(OBS_SPACE, gym.spaces.Discrete(N_ACTIONS), lambda _: 1e-4)
    return policy_for(variant)


@pytest.mark.parametrize("variant", ["sparse_fls", "nature_cnn", "sb3_cnn", "dqn"])
def test_trees_of_the_main_models(variant: str, atari_obs: torch.Tensor) -> None:
    policy = policy_or_dqn(variant)
    trees = attention_trees(policy, atari_obs, n=3)
    assert len(trees) == 2
    for tree in trees:
        check_tree(tree, 3)
    expected_root = "relevance" if variant == "sparse_fls" else "gradient"
    assert trees[0].root == expected_root
    single = attention_trees(policy, atari_obs[1:], n=3)[0]
    # a batch grows the same trees as one at a time (up to float noise)
    assert [shape(node) for node in single.nodes] == [shape(node) for node in trees[1].nodes]
    np.testing.assert_allclose(
        [n.contribution for n in single.nodes], [n.contribution for n in trees[1].nodes], rtol=1e-4, atol=1e-9
    )


@pytest.mark.slow
@pytest.mark.parametrize("variant", [*VARIANTS, "sb3_cnn_separate"])
def test_every_model_produces_a_tree(variant: str, atari_obs: torch.Tensor) -> None:
    policy = policy_for(variant)
    for tree in attention_trees(policy, atari_obs, n=2):
        check_tree(tree, 2)
    for tree in attention_trees(policy, atari_obs, "value", n=2, depth=1):
        assert {node.level for node in tree.nodes} == {len(tree.levels) - 1, len(tree.levels) - 2}
        assert tree.action is None


def test_dqn_value_target_is_the_greedy_actions_q(atari_obs: torch.Tensor) -> None:
    """For a Q-network target=value is max_a Q(s, a): the tree of the greedy action."""
    policy = policy_or_dqn("dqn")
    greedy = policy.q_net(atari_obs).argmax(dim=1).tolist()
    by_value = attention_trees(policy, atari_obs, "value")
    by_action = attention_trees(policy, atari_obs, greedy)
    assert [t.nodes for t in by_value] == [t.nodes for t in by_action]


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="n must be an int >= 1"):
        get_method("tree", n=0)
    with pytest.raises(ConfigError, match="depth must be an int >= 0 or null"):
        get_method("tree", depth=-1)
    with pytest.raises(ConfigError, match="unknown option 'k' for saliency method 'tree'"):
        get_method("tree", k=3)


# --- views -----------------------------------------------------------------------------------------------------------


def plotly_json(path: Path) -> tuple[list, dict]:
    """The data and layout of the figure a plotly HTML file draws (the arguments of its Plotly.newPlot call)."""
    text = path.read_text()
    start = text.rindex("Plotly.newPlot(")
    decoder = json.JSONDecoder()
    index = text.index(",", start) + 1
    while text[index].isspace():
        index += 1
    data, index = decoder.raw_decode(text, index)
    index = text.index("{", index)
    layout, _ = decoder.raw_decode(text, index)
    return data, layout


def test_html_is_self_contained_valid_plotly(atari_obs: torch.Tensor, tmp_path: Path) -> None:
    import plotly.graph_objects as go

    (tree,) = attention_trees(policy_for("sparse_fls"), atari_obs[:1], n=2)
    path = write_html(tree, tmp_path / "tree.html", title="a tree")
    text = path.read_text()
    assert not re.search(r"<script[^>]*\bsrc=", text)  # nothing loaded from elsewhere
    assert len(text) > 1_000_000  # plotly.js inline: opens offline
    data, layout = plotly_json(path)
    assert layout["title"]["text"] == f"a tree<br><sub>{tree.root_text()}</sub>"  # which roots the figure shows
    figure = go.Figure(data=data, layout=layout)  # validates every trace and layout property
    markers = [t for t in figure.data if t.type == "scatter3d" and t.mode == "markers"]
    assert sum(len(t.x) for t in markers) == len(tree.nodes)
    hover = [h for t in markers for h in t.hovertext]
    assert all("activation" in h and ("channel" in h or "frame" in h) for h in hover)
    assert any("contribution to parent" in h for h in hover)
    lines = [t for t in figure.data if t.type == "scatter3d" and t.mode == "lines"]
    assert len(lines) == len(tree.edges())
    assert layout["scene"]["zaxis"]["ticktext"] == tree.levels


def test_png_shows_raw_frame_and_stacked_inputs(atari_obs: torch.Tensor, tmp_path: Path) -> None:
    (tree,) = attention_trees(policy_for("nature_cnn"), atari_obs[:1], n=3)
    frame = np.zeros((210, 160, 3), np.uint8)
    image = tree_image(tree, frame=frame, title="test", action_name="FIRE")
    assert image.shape[1] > 5 * 84 * 4 * 0.9 and image.dtype == np.uint8
    without = tree_image(tree)
    assert without.shape[1] == 4 * 84 * 4 + 3 * 4
    newest = without[22 : 22 + 336, -336:].astype(int)
    assert (np.abs(newest[..., 0] - newest[..., 2]) > 50).any()  # coloured nodes over the grey input
    path = write_png(image, tmp_path / "tree.png")
    assert iio.imread(path).shape == image.shape


def test_video_with_a_tree_panel(tmp_path: Path) -> None:
    from fls.saliency.video import record_video

    recording = record_video(
        policy_for("sparse_fls"),
        "Breakout",
        tmp_path / "tree.gif",
        methods=["tree", "attention"],
        max_steps=3,
        show_input=False,
        progress=False,
    )
    frames = iio.imread(recording.video)
    assert frames.shape[0] == 3 and frames.shape[2] == 3 * 2 * 160  # raw | tree | attention
    tree_panel, raw_panel = frames[0, 30:450, 320:640].astype(int), frames[0, 30:450, :320].astype(int)
    assert np.abs(tree_panel - raw_panel).sum() > 0  # the tree is drawn over the frame


def test_the_tree_options_reach_a_video_s_tree_panel(tiny_run: Path) -> None:
    from fls.agents.loading import load
    from fls.saliency.settings import saliency_methods
    from tests.conftest import compose_config

    args = [f"run={tiny_run}", "saliency=[tree]", "tree.n=2", "tree.depth=1", "tree.root=attention", "video=true"]
    cfg = compose_config("evaluate", args)
    (method,) = saliency_methods(cfg, load(cfg)).values()
    assert (method.n, method.depth, method.min_separation, method.root) == (2, 1, 2, "attention")
    default = compose_config("evaluate", [f"run={tiny_run}", "saliency=[tree]"])
    assert default.tree.root == "relevance"


# --- the command line ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tree_task_writes_png_html_json_and_logs(cli, tiny_run: Path) -> None:
    result = cli(
        "evaluate.py",
        "task=tree",
        f"run={tiny_run}",
        "saliency.episodes=1",
        "tree.steps=[3,5]",
        "tree.n=2",
        "logger.wandb.mode=offline",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tiny_run / "trees"
    for step in (3, 5):
        stem = out / f"final_model_Breakout_seed2000_game1_step{step:06d}"
        assert stem.with_suffix(".png").is_file() and stem.with_suffix(".html").is_file()
        record = json.loads(stem.with_suffix(".json").read_text())
        assert record["step"] == step and record["n"] == 2 and record["root"] == "relevance"
        assert (
            record["tree_root"] == "relevance"
            and "roots: attention peaks, weighted by the relevance" in record["root_text"]
        )
        assert min(node["level"] for node in record["nodes"]) == 0
    assert "2 attention trees (n=2)" in result.stdout
    assert list((out / "wandb").glob("offline-run-*")), "logged to W&B (offline)"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tree.steps=[-1]"], "error: tree.steps=[-1]: a list, each item an integer >= 0"),
        (["tree.steps=[100000]", "saliency.max_steps=5"], "no chosen step was reached"),
    ],
)
def test_tree_task_errors(cli, tiny_run: Path, args: list[str], message: str) -> None:
    result = cli("evaluate.py", "task=tree", f"run={tiny_run}", *args, "logger.wandb.mode=disabled")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1], result.stderr
