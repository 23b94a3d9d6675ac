"""task=faithfulness: deletion/insertion curves and their baselines, randomisation sanity checks, the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from torch import nn

from fls.errors import ConfigError
from fls.gaze.baselines import center_prior
from fls.models import build_policy
from fls.saliency import get_method
from fls.saliency.metrics.faithfulness import (
    auc,
    baseline_orders,
    baseline_stack,
    draw_frames,
    percent_steps,
    perturbation_curves,
    pixel_ranks,
    tie_keys,
)
from fls.saliency.metrics.sanity import (
    FULL,
    cascading_randomisation,
    randomisation_groups,
    randomised_networks,
    reinitialise,
    spearman,
    ssim,
)

OBS_SPACE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
REGION = (slice(30, 50), slice(40, 60))  # the only pixels the tiny network looks at
PERCENTS = percent_steps(5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RegionNet(nn.Module):
    """Two actions; action 0's logit rises with the brightness of REGION (all 4 frames), nothing else matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = x[:, :, REGION[0], REGION[1]].float().mean(dim=(1, 2, 3)) / 255.0
        return torch.stack([10.0 * brightness - 5.0, torch.zeros_like(brightness)], dim=1)


def region_frames(n: int = 6) -> torch.Tensor:
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 100, (n, 4, 84, 84))
    frames[:, :, REGION[0], REGION[1]] = 255.0
    return torch.as_tensor(frames, dtype=torch.float32)


def region_curves(maps: np.ndarray, frames: torch.Tensor, batch_size: int = 256):
    net = RegionNet()
    actions = net(frames).argmax(dim=1)
    keys = tie_keys(len(frames), 84 * 84, seed=0)
    return perturbation_curves(
        net, frames, torch.zeros_like(frames), pixel_ranks(maps, keys), actions, PERCENTS, batch_size=batch_size
    )


def test_a_map_of_the_region_deletes_faster_than_random_and_its_reverse_slower() -> None:
    frames = region_frames()
    region = np.zeros((len(frames), 84, 84))
    region[:, REGION[0], REGION[1]] = 1.0
    random = baseline_orders(len(frames), (84, 84), seed=0)["random"]
    marked, rand, reverse = (region_curves(m, frames).aucs() for m in (region, random, 1.0 - region))
    assert RegionNet()(frames).argmax(dim=1).eq(0).all()  # the explained action is the region's
    # Every frame, not just on average: the region map removes the evidence within the first 10 % of pixels.
    assert (marked["deletion_auc"] < rand["deletion_auc"]).all()
    assert (rand["deletion_auc"] < reverse["deletion_auc"]).all()
    assert marked["deletion_auc"].mean() < 0.1 and reverse["deletion_auc"].mean() > 0.9
    assert (marked["insertion_auc"] > rand["insertion_auc"]).all()
    assert (rand["insertion_auc"] > reverse["insertion_auc"]).all()
    # The greedy action flips once the region is gone, so the same-action areas order the same way.
    assert marked["deletion_same_auc"].mean() < rand["deletion_same_auc"].mean() < reverse["deletion_same_auc"].mean()


def test_curve_end_points_and_batching() -> None:
    frames = region_frames(3)
    maps = baseline_orders(3, (84, 84), seed=1)["random"]
    big, small = region_curves(maps, frames, 256), region_curves(maps, frames, 5)
    np.testing.assert_allclose(big.deletion, small.deletion, rtol=1e-6)
    np.testing.assert_array_equal(big.insertion_same, small.insertion_same)
    clean = torch.softmax(RegionNet()(frames), dim=1)[:, 0].numpy()
    blank = torch.softmax(RegionNet()(torch.zeros_like(frames)), dim=1)[:, 0].numpy()
    # 0 %: the clean frame; 100 %: all baseline (deletion), and the reverse for insertion.
    np.testing.assert_allclose(big.deletion[:, 0], clean, rtol=1e-6)
    np.testing.assert_allclose(big.deletion[:, -1], blank, rtol=1e-6)
    np.testing.assert_allclose(big.insertion[:, 0], blank, rtol=1e-6)
    np.testing.assert_allclose(big.insertion[:, -1], clean, rtol=1e-6)


def test_auc_is_the_trapezoid_over_the_pixel_fraction() -> None:
    percents = percent_steps(25)
    assert percents.tolist() == [0, 25, 50, 75, 100]
    np.testing.assert_allclose(auc(np.array([[1.0, 0.75, 0.5, 0.25, 0.0], [1, 1, 1, 1, 1]]), percents), [0.5, 1.0])
    np.testing.assert_allclose(auc(np.array([[0.0, 1.0, 0.0, 0.0, 0.0]]), percents), [0.25])
    for bad in (3, 0, 101, 2.5, True):
        with pytest.raises(ValueError, match="must be an integer that divides 100"):
            percent_steps(bad)


def test_ties_are_broken_by_the_shared_random_keys() -> None:
    maps = np.zeros((2, 84, 84))
    maps[:, 0, :3] = [3.0, 2.0, 1.0]  # three distinct values, the rest one tie
    keys = tie_keys(2, 84 * 84, seed=0)
    ranks = pixel_ranks(maps, keys)
    assert ranks[:, :3].tolist() == [[0, 1, 2], [0, 1, 2]]
    assert sorted(ranks[0]) == list(range(84 * 84))
    rest = ranks[0, 3:]
    # Not the row-major order a stable sort would give: the flat region goes in the keys' order.
    assert not np.array_equal(rest, np.arange(3, 84 * 84))
    assert np.array_equal(np.argsort(rest), np.argsort(keys[0, 3:]))
    assert np.array_equal(pixel_ranks(maps, tie_keys(2, 84 * 84, seed=0)), ranks)  # seeded


def test_mean_baseline_leaves_the_explained_frame_out() -> None:
    """Each frame's mean baseline is the mean of the other frames: with two frames, deleting every pixel of one
    gives the other; a single frame has no mean to be compared with and is refused (it used to be its own
    baseline, so nothing was perturbed and every AUC equalled the clean probability)."""
    frames = region_frames(3)
    frames[1, :, REGION[0], REGION[1]] = 0.0  # frame 1 does not light the region the net reads
    mean = baseline_stack(frames, "mean")
    assert mean.shape == frames.shape
    for i in range(3):
        others = [j for j in range(3) if j != i]
        np.testing.assert_allclose(mean[i].numpy(), frames[others].mean(dim=0).numpy(), rtol=1e-6)
    net = RegionNet()
    two = frames[:2]
    ranks = pixel_ranks(baseline_orders(2, (84, 84), seed=2)["random"], tie_keys(2, 84 * 84, seed=0))
    curves = perturbation_curves(
        net, two, baseline_stack(two, "mean"), ranks, torch.zeros(2, dtype=torch.long), PERCENTS
    )
    swapped = torch.softmax(net(two.flip(0)), dim=1)[:, 0].numpy()
    np.testing.assert_allclose(curves.deletion[:, -1], swapped, rtol=1e-6)
    assert curves.deletion[0, -1] < curves.deletion[0, 0] - 0.5  # frame 0 loses its evidence
    with pytest.raises(ConfigError, match="the mean of the other frames; 1 frame has none"):
        baseline_stack(frames[:1], "mean")


def test_a_single_frame_mean_baseline_is_refused_before_work_starts(tiny_run, tmp_path) -> None:
    from tests.conftest import evaluate_refusal

    out = tmp_path / "faithfulness"
    refusal = evaluate_refusal(
        "task=faithfulness",
        f"run={tiny_run}",
        "faithfulness.baseline=mean",
        "faithfulness.frames=1",
        f"faithfulness.out={out}",
    )
    assert refusal == (
        "faithfulness.baseline=mean replaces a frame's pixels by the mean of the other frames: it needs "
        "faithfulness.frames >= 2, got 1 (or use faithfulness.baseline=blur)"
    )
    assert not out.exists()


def test_baseline_stacks() -> None:
    frames = region_frames(3)
    blurred = baseline_stack(frames, "blur", 3.0)
    assert blurred.shape == frames.shape
    assert blurred[:, :, 40, 50].min() > 250  # inside the bright region
    assert blurred.std() < frames.std()
    with pytest.raises(ValueError, match="faithfulness.baseline must be one of blur, mean"):
        baseline_stack(frames, "zeros")


def test_spearman_and_ssim() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((3, 84, 84))
    np.testing.assert_allclose(spearman(a, a), 1.0)
    np.testing.assert_allclose(spearman(a, -a), -1.0)
    np.testing.assert_allclose(spearman(a, a**3), 1.0)  # ranks only
    assert abs(spearman(a, rng.random((3, 84, 84))).mean()) < 0.05
    assert np.isnan(spearman(np.zeros((1, 84, 84)), a[:1]))[0]  # constant map: undefined
    np.testing.assert_allclose(ssim(a, a), 1.0)
    assert ssim(a, rng.random((3, 84, 84))).max() < 0.1
    assert 0.5 < ssim(a, np.clip(a + 0.05, 0, 1)).min() < 1.0


@pytest.fixture(scope="module")
def breakout_obs() -> torch.Tensor:
    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=3, seed=5)
    obs = env.reset()
    for _ in range(20):
        obs, *_ = env.step(np.array([1, 2, 3]))
    env.close()
    return torch.as_tensor(obs)


def test_randomisation_groups_of_each_architecture() -> None:
    with torch.device("meta"):  # modules without storage: no costly initialisation
        sparse = build_policy({"name": "sparse_fls"}, OBS_SPACE, gym.spaces.Discrete(4))
        nature = build_policy({"name": "nature_cnn"}, OBS_SPACE, gym.spaces.Discrete(4))
        sb3 = ActorCriticCnnPolicy(OBS_SPACE, gym.spaces.Discrete(4), lambda _: 2.5e-4)
        every = build_policy({"name": "sparse_fls", "attention_at": "every_conv"}, OBS_SPACE, gym.spaces.Discrete(4))
        first = build_policy({"name": "sparse_fls", "attention_at": "conv1"}, OBS_SPACE, gym.spaces.Discrete(4))
        rs = build_policy({"name": "rs"}, OBS_SPACE, gym.spaces.Discrete(4))
    assert [g.name for g in randomisation_groups(sparse)] == ["heads", "hidden", "attention", "conv3", "conv2", "conv1"]
    assert [g.name for g in randomisation_groups(nature)] == ["heads", "hidden", "conv3", "conv2", "conv1"]
    assert [g.name for g in randomisation_groups(sb3)] == ["heads", "hidden", "conv3", "conv2", "conv1"]
    # Top-down by depth in the forward graph: each attention module just above the conv whose output it reads.
    assert [g.name for g in randomisation_groups(every)] == [
        "heads",
        "hidden",
        "attention_conv3",
        "conv3",
        "attention_conv2",
        "conv2",
        "attention_conv1",
        "conv1",
    ]
    assert [g.name for g in randomisation_groups(first)] == ["heads", "hidden", "conv3", "conv2", "attention", "conv1"]
    fls_modules = every.features_extractor.fls
    assert [m for m, _ in randomisation_groups(every)[4].layers] == [fls_modules["1"].hidden, fls_modules["1"].score]
    assert [g.name for g in randomisation_groups(rs)] == ["heads", "hidden", "attention", "conv3", "conv2", "conv1"]
    assert len(randomisation_groups(rs)[2].layers) == 2  # the 1x1 convs of the region-sensitive module
    assert [gain for _, gain in randomisation_groups(nature)[0].layers] == [0.01, 1.0]  # policy, value head


def test_sanity_columns_are_labelled_by_what_was_reinitialised() -> None:
    from fls.saliency.metrics.faithfulness_results import step_label

    assert step_label(FULL) == "fully re-initialised"  # not Adebayo's independent (one layer at a time) test
    assert step_label("attention_conv2") == "attention at conv2"
    assert [step_label(s) for s in ("heads", "hidden", "attention", "conv1")] == [
        "heads",
        "hidden 512",
        "attention",
        "conv1",
    ]


def test_cascading_randomisation_is_cumulative_seeded_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    nature = build_policy({"name": "nature_cnn"}, OBS_SPACE, gym.spaces.Discrete(4))
    before = {k: v.clone() for k, v in nature.state_dict().items()}
    networks = list(randomised_networks(nature, seed=3))
    assert [name for name, _ in networks] == ["heads", "hidden", "conv3", "conv2", "conv1", FULL]
    for key, value in nature.state_dict().items():  # the trained network is left alone
        assert torch.equal(value, before[key])
    heads, hidden = networks[0][1].state_dict(), networks[1][1].state_dict()
    assert not torch.equal(heads["action_net.weight"], before["action_net.weight"])
    assert torch.equal(heads["features_extractor.fc.0.weight"], before["features_extractor.fc.0.weight"])
    assert torch.equal(hidden["action_net.weight"], heads["action_net.weight"])  # cumulative, same draws
    assert not torch.equal(hidden["features_extractor.fc.0.weight"], before["features_extractor.fc.0.weight"])
    # The model's own initialiser: orthogonal rows scaled by the gain (0.01 for the policy head), zero bias.
    w = heads["action_net.weight"]
    np.testing.assert_allclose((w @ w.T).numpy(), 0.01**2 * np.eye(4), atol=1e-7)
    assert heads["action_net.bias"].abs().sum() == 0
    conv1 = "features_extractor.convs.0.weight"
    assert not torch.equal(networks[-1][1].state_dict()[conv1], networks[-2][1].state_dict()[conv1])  # independent
    assert not torch.equal(networks[-2][1].state_dict()[conv1], before[conv1])
    layers = [nn.Linear(8, 4) for _ in range(3)]
    for layer, seed in zip(layers, ((3, 0, 1), (3, 0, 1), (3, 0, 2)), strict=True):
        reinitialise(layer, 1.0, seed)
    assert torch.equal(layers[0].weight, layers[1].weight) and not torch.equal(layers[0].weight, layers[2].weight)


def test_sanity_check_tells_a_weight_blind_map_from_gradients(breakout_obs) -> None:
    torch.manual_seed(0)
    policy = build_policy({"name": "nature_cnn"}, OBS_SPACE, gym.spaces.Discrete(4))
    gradient = get_method("gradient")

    def centre(network, obs, actions):
        return np.broadcast_to(center_prior((84, 84)), (len(obs), 84, 84)).copy()

    def gradients(network, obs, actions):
        return gradient(network, obs, "action", actions=actions).numpy()

    actions = np.array([0, 1, 2])
    results = cascading_randomisation(policy, {"centre": centre, "gradient": gradients}, breakout_obs, actions, seed=0)
    by = {(r.method, r.step): r for r in results}
    steps = ["heads", "hidden", "conv3", "conv2", "conv1", FULL]
    assert sorted({r.step for r in results}) == sorted(steps)
    for step in steps:
        np.testing.assert_allclose(by[("centre", step)].spearman, 1.0)
        np.testing.assert_allclose(by[("centre", step)].ssim, 1.0)
    assert by[("gradient", FULL)].spearman.mean() < 0.95
    assert by[("gradient", FULL)].ssim.mean() < 0.9
    assert by[("gradient", "conv1")].spearman.mean() < 0.95


@pytest.mark.slow
def test_frames_are_drawn_from_the_evaluation_games() -> None:
    """The games played are the evaluation protocol's episodes 0 and 1 (same lengths as task=episodes), and the
    draw is reproducible."""
    import stable_baselines3 as sb3

    from fls.agents.agent import Agent
    from fls.envs import make_vec_env
    from fls.evaluation.runner import run_episodes

    env = make_vec_env("Breakout", num_envs=1, seed=0)
    torch.manual_seed(0)
    model = sb3.PPO("CnnPolicy", env, device="cpu", n_steps=8, batch_size=8)
    env.close()
    agent = Agent(model, Path("agent.zip"), "d", "PPO", True, False)
    kwargs = {"games": 2, "base_seed": 1000, "max_episode_steps": 60, "seed": 0, "progress": False}
    drawn = draw_frames(agent, "Breakout", 16, **kwargs)
    episodes = sorted(
        run_episodes(agent, "Breakout", [0, 1], base_seed=1000, streams=16, max_episode_steps=60, progress=False),
        key=lambda e: e.index,
    )
    assert drawn.finished.all() and drawn.lengths.tolist() == [e.length for e in episodes]
    assert drawn.seen == sum(e.length for e in episodes) and len(drawn.observations) == 16
    assert set(drawn.episodes.tolist()) == {0, 1} and (drawn.steps < 60).all()
    again = draw_frames(agent, "Breakout", 16, **kwargs)
    assert np.array_equal(again.observations, drawn.observations) and np.array_equal(again.steps, drawn.steps)
    other = draw_frames(agent, "Breakout", 16, **{**kwargs, "seed": 1})
    assert not np.array_equal(other.steps, drawn.steps)
    capped = draw_frames(agent, "Breakout", 200, **{**kwargs, "max_steps": 30})
    assert capped.seen == 30 and len(capped.observations) == 30 and not capped.finished.any()


# ---------------------------------------------------------------------------------------------------------------
# The report section


def _summary(deletion: float, insertion: float, rho: float, baseline: str = "blur") -> dict:
    results = {
        "attention": {"kind": "method", "frames": 8, "deletion_auc": deletion, "insertion_auc": insertion},
        "random": {"kind": "baseline", "frames": 8, "deletion_auc": 0.5, "insertion_auc": 0.5},
    }
    sanity = {"attention": {FULL: {"spearman": rho, "ssim": 0.9}}}
    return {"baseline": baseline, "results": results, "sanity": sanity}


def _write_summary(run: Path, folder: str, summary: dict) -> None:
    out = run / "eval" / "final_model" / "faithfulness" / folder
    out.mkdir(parents=True)
    (out / "summary.json").write_text(json.dumps(summary))


def test_report_collects_faithfulness_by_model_and_method(tmp_path) -> None:
    from fls.report.faithfulness import add_faithfulness, faithfulness_rows
    from fls.report.make import write_report
    from fls.report.runs import find_runs
    from fls.report.tables import build_report
    from tests.test_report import fake_run

    sweep = tmp_path / "sweep"
    for seed, (d, i, rho) in zip((1, 9), ((0.2, 0.6, 0.1), (0.4, 0.8, 0.3)), strict=True):
        run = fake_run(sweep / str(seed), model="sparse_fls", seed=seed, scores=[1.0])
        _write_summary(run, "attention_blur", _summary(d, i, rho))
    fake_run(sweep / "nofaith", model="nature_cnn", seed=1, scores=[1.0])
    runs, _ = find_runs(sweep)
    report = build_report(runs, title="t")
    rows = faithfulness_rows(report)
    assert [(r["label"], r["baseline"], r["method"]) for r in rows] == [
        ("sparse_fls", "blur", "attention"),
        ("sparse_fls", "blur", "random"),
    ]
    attention = rows[0]
    assert attention["seeds"] == 2 and attention["frames"] == 16
    assert attention["deletion_auc"] == pytest.approx(0.3) and attention["deletion_auc_std"] == pytest.approx(0.1)
    assert attention["insertion_auc"] == pytest.approx(0.7) and attention["full_spearman"] == pytest.approx(0.2)
    files = write_report(report, tmp_path / "report")
    files.update(add_faithfulness(report, tmp_path / "report", files["report_md"]))
    text = files["report_md"].read_text()
    assert "## Faithfulness of the saliency methods" in text
    assert (
        "| Breakout | sparse_fls | blur | attention | 0.300 ± 0.100 | 0.700 ± 0.100 | 0.200 ± 0.100 | 2 | 16 |" in text
    )
    assert "*random order*" in text
    with open(files["faithfulness_csv"]) as handle:
        assert len(list(csv.DictReader(handle))) == 2

    # another baseline is a row of its own; one method scored twice with different numbers is named, counted once
    _write_summary(sweep / "1", "attention_mean", _summary(0.25, 0.75, 0.1, baseline="mean"))
    _write_summary(sweep / "9", "attention-gradient_blur", _summary(0.9, 0.9, 0.9))
    notes: list[str] = []
    rows = faithfulness_rows(build_report(find_runs(sweep)[0], title="t"), notes)
    by = {(r["baseline"], r["method"]): r for r in rows}
    assert by[("mean", "attention")]["seeds"] == 1 and by[("mean", "attention")]["deletion_auc"] == 0.25
    assert by[("blur", "attention")]["seeds"] == 2 and by[("blur", "attention")]["deletion_auc"] == pytest.approx(0.55)
    assert notes == [
        "9: faithfulness of attention (blur baseline) differs between attention-gradient_blur and attention_blur "
        "(other settings); the table uses attention-gradient_blur"
    ]

    # seeds whose results were made with other settings (here: more frames) are named, not silently pooled
    path = sweep / "1" / "eval" / "final_model" / "faithfulness" / "attention_blur" / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "frames": 128}))
    notes = []
    faithfulness_rows(build_report(find_runs(sweep)[0], title="t"), notes)
    assert notes[-1].startswith("Breakout (blur baseline): results made with different settings: frames=128, games=")
    assert notes[-1].endswith(" in 9")


# ---------------------------------------------------------------------------------------------------------------
# The command line


@pytest.mark.slow
def test_faithfulness_cli_end_to_end(cli, tiny_run, tmp_path) -> None:
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "run")  # results go into the run: keep the shared fixture clean
    result = cli(
        "evaluate.py",
        "task=faithfulness",
        f"run={run}",
        "saliency=[attention,gradient]",
        "faithfulness.frames=6",
        "faithfulness.games=2",
        "faithfulness.max_steps=80",
        "faithfulness.percent_step=25",
        "faithfulness.sanity_frames=3",
        "logger.wandb.mode=offline",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 frames × 4 orders (attention, gradient, random, center_prior) × 2 curves × 5 steps = 240" in result.stdout
    out = run / "eval" / "final_model" / "faithfulness" / "attention-gradient_blur"
    for name in ("faithfulness.csv", "curves.csv", "sanity.csv", "faithfulness.md", "summary.json"):
        assert (out / name).is_file(), name
    for name in ("deletion.png", "insertion.png", "sanity.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    with open(out / "faithfulness.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 6 and {r["method"] for r in rows} == {"attention", "gradient", "random", "center_prior"}
    assert all(0.0 <= float(r["deletion_auc"]) <= 1.0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sanity_steps"] == ["heads", "hidden", "attention", "conv3", "conv2", "conv1", "full"]
    assert summary["sanity"]["attention"]["heads"]["spearman"] == pytest.approx(1.0)  # upstream of the heads
    assert list((out / "wandb").glob("offline-run-*"))
    md = (out / "faithfulness.md").read_text()
    assert "| *random order* |" in md and "Spearman rank correlation" in md
    assert "| fully re-initialised |" in md and "independent" not in md

    report = cli(
        "evaluate.py",
        "task=report",
        f"sweep=[{run}]",
        f"report.out={tmp_path / 'report'}",
        "logger.wandb.mode=disabled",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "| Breakout | sparse_fls | blur | attention |" in (tmp_path / "report" / "faithfulness.md").read_text()

    # the same methods and baseline with another frame count would replace these results: refused, nothing changed
    from tests.conftest import evaluate_refusal

    before = (out / "summary.json").read_text()
    refusal = evaluate_refusal(
        "task=faithfulness", f"run={run}", "saliency=[attention,gradient]", "faithfulness.frames=5"
    )
    assert refusal.startswith(f"{out} already holds faithfulness results with frames=6, not 5; give ")
    assert (out / "summary.json").read_text() == before

    bad = cli(
        "evaluate.py",
        "task=faithfulness",
        f"run={run}",
        "faithfulness.baseline=zeros",
        "logger.wandb.mode=disabled",
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "error: faithfulness.baseline=zeros: one of blur, mean" in bad.stderr
