"""CUDA: training, outputs, saliency, trees, faithfulness, gaze, Q-learning agents, resume and memory on the GPU.

Marked ``gpu`` and skipped without CUDA (``python -m pytest -m gpu`` collects them anywhere).
``FLS_GPU_TEST_DEVICE=cpu`` runs the same tests on the CPU, to check the tests themselves where no GPU is at hand (the
CPU/CUDA comparisons then compare the CPU with itself). bench/gpu_check.sh runs them on a lent GPU machine.

Tolerances: TF32 is switched off in this module (full float32 on both sides); logits and values agree within 1e-4;
saliency maps, each normalised to [0, 1] by its own maximum, within 1e-3 per pixel.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fls
from fls.models import MODELS
from fls.saliency import policy_forward
from fls.saliency.base import trunk_extractor
from fls.saliency.video import play
from tests.conftest import TINY_SPARSE_FLS
from tests.test_saliency import Q_VARIANTS, VARIANTS, cheap_methods, policy_for

DEVICE = os.environ.get("FLS_GPU_TEST_DEVICE", "cuda")
ON_CUDA = DEVICE.startswith("cuda")
MAP_TOLERANCE = 1e-3  # per pixel, on maps normalised to [0, 1]
OUTPUT_TOLERANCE = 1e-4  # logits and values

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs CUDA (FLS_GPU_TEST_DEVICE=cpu: CPU)"),
]


@pytest.fixture(scope="module", autouse=True)
def full_float32():
    """No TF32 on either side: the comparisons are float32 against float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def obs() -> torch.Tensor:
    """Four real Breakout observations (the ball in play)."""
    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=4, seed=7)
    env.action_space.seed(0)
    batch = env.reset()
    for _ in range(25):
        batch, *_ = env.step(np.array([env.action_space.sample() for _ in range(4)]))
    env.close()
    return torch.as_tensor(batch)


def on_device(variant: str):
    """(CPU policy, the same weights on DEVICE), both in eval mode."""
    cpu = policy_for(variant)
    cpu.eval()
    return cpu, copy.deepcopy(cpu).to(DEVICE).eval()


def progress_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv") as handle:
        return list(csv.DictReader(handle))


def finite_losses(run_dir: Path) -> None:
    losses = [float(r["train/loss"]) for r in progress_rows(run_dir) if r.get("train/loss")]
    assert losses and all(math.isfinite(v) for v in losses), losses


TINY = (*TINY_SPARSE_FLS[1:], "after_training.eval_episodes=0")  # TINY_SPARSE_FLS without its model


@pytest.mark.parametrize("model", sorted(MODELS))
def test_training_updates_on_cuda(model: str, tmp_path) -> None:
    run = fls.train([*TINY, f"model={model}", f"device={DEVICE}", "total_timesteps=384"], run_dir=tmp_path / "run")
    finite_losses(run.dir)
    agent = fls.load(run.dir, device=DEVICE)
    assert agent.device.type == torch.device(DEVICE).type
    assert all(p.device.type == agent.device.type for p in agent.policy.parameters())


@pytest.mark.parametrize("variant", [*VARIANTS, "sb3_cnn", *Q_VARIANTS])
def test_cpu_and_cuda_outputs_agree(variant: str, obs) -> None:
    cpu, gpu = on_device(variant)
    with torch.no_grad():
        expected, got = policy_forward(cpu, obs), policy_forward(gpu, obs.to(DEVICE))
    torch.testing.assert_close(got.logits.cpu(), expected.logits, atol=OUTPUT_TOLERANCE, rtol=0)
    if expected.values is not None:
        torch.testing.assert_close(got.values.cpu(), expected.values, atol=OUTPUT_TOLERANCE, rtol=0)


@pytest.mark.parametrize("variant", ["sparse_fls", "sparse_fls_every_conv", "daqn", "rs", "nature_cnn", "sb3_dqn"])
def test_every_saliency_method_gives_the_cpu_maps(variant: str, obs) -> None:
    cpu, gpu = on_device(variant)
    has_attention = getattr(trunk_extractor(cpu), "has_attention", False)
    for name, method in cheap_methods().items():
        if name == "attention" and not has_attention:
            continue
        for target in ("action", "value"):
            expected = method(cpu, obs[:2], target)
            got = method(gpu, obs[:2].to(DEVICE), target)
            assert got.device.type == torch.device(DEVICE).type, name
            torch.testing.assert_close(got.cpu(), expected, atol=MAP_TOLERANCE, rtol=0, msg=f"{name} {target}")


@pytest.mark.parametrize("variant", ["sparse_fls", "sb3_qrdqn"])
def test_explaining_on_cuda_never_changes_the_game(variant: str) -> None:
    _, gpu = on_device(variant)
    acting = {"epsilon": 0.5} if variant in Q_VARIANTS else {}
    names = [n for n in cheap_methods() if n != "attention" or variant not in Q_VARIANTS]
    off = play(gpu, "Breakout", seed=11, episodes=2, max_steps=150, **acting)
    on = play(gpu, "Breakout", seed=11, episodes=2, max_steps=150, methods=cheap_methods(names), map_batch=64, **acting)
    assert [(e.score, e.length, e.actions) for e in on] == [(e.score, e.length, e.actions) for e in off]


def test_trees_faithfulness_and_gaze_on_cuda(tiny_run, tmp_path) -> None:
    from tests.test_gaze import make_trial

    agent = fls.load(tiny_run, device=DEVICE)
    pngs = fls.trees(agent, [2], n=2, depth=1, out=tmp_path / "trees")
    assert len(pngs) == 1 and pngs[0].is_file()
    folder = fls.faithfulness(
        agent, ["attention", "gradcam"], frames=4, percent_step=50, sanity_frames=2, out=tmp_path / "faithfulness"
    )
    assert (folder / "summary.json").is_file()
    make_trial(tmp_path / "atari_head")
    gaze = fls.score_gaze(agent, tmp_path / "atari_head", ["attention", "gradcam"], out=tmp_path / "gaze")
    assert gaze.exists()


def test_object_scores_on_cuda_are_the_cpu_scores(tiny_run, tmp_path) -> None:
    """task=objects plays the same greedy steps on both devices and its scores agree (maps within MAP_TOLERANCE)."""
    tables = []
    for i, device in enumerate(("cpu", DEVICE)):
        agent = fls.load(tiny_run, device=device)
        out = fls.objects.score(
            agent, methods=["attention", "gradcam"], max_steps=40, deterministic=True, out=tmp_path / f"{i}_{device}"
        )
        tables.append(json.loads((out / "summary.json").read_text())["scores"])
    cpu, cuda = tables
    for method, groups in cpu.items():
        for group, values in groups.items():
            assert cuda[method][group]["frames"] == values["frames"]
            for score in ("energy", "ratio"):
                assert cuda[method][group][score] == pytest.approx(values[score], rel=1e-2, abs=1e-4, nan_ok=True)


@pytest.mark.parametrize("algo", ["dqn", "qrdqn"])
def test_q_learning_agents_on_cuda(algo: str, tmp_path, obs) -> None:
    import sb3_contrib
    import stable_baselines3 as sb3

    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=1, seed=0)
    cls = sb3.DQN if algo == "dqn" else sb3_contrib.QRDQN
    small = {"features_extractor_kwargs": {"features_dim": 16}}
    cls("CnnPolicy", env, buffer_size=100, policy_kwargs=small, device="cpu").save(tmp_path / f"{algo}.zip")
    env.close()
    cpu = fls.load(tmp_path / f"{algo}.zip", game="Breakout", device="cpu")
    gpu = fls.load(tmp_path / f"{algo}.zip", game="Breakout", device=DEVICE)
    torch.testing.assert_close(gpu.scores(obs).cpu(), cpu.scores(obs), atol=OUTPUT_TOLERANCE, rtol=0)
    maps = fls.explain(gpu, obs, ["gradcam", "gradient", "perturbation"])
    for name, value in fls.explain(cpu, obs, ["gradcam", "gradient", "perturbation"]).items():
        np.testing.assert_allclose(maps[name], value, atol=MAP_TOLERANCE, rtol=0, err_msg=name)
    result = fls.evaluate(gpu, episodes=2, num_envs=2, progress=False, out=tmp_path / "eval")
    assert len(result.episodes) == 2


def test_resume_moves_a_run_between_cpu_and_cuda(unfinished_run, tmp_path) -> None:
    run_dir = shutil.copytree(unfinished_run, tmp_path / "from_cpu")  # trained on the CPU up to step 128
    fls.train([f"resume={run_dir}", f"device={DEVICE}"])
    assert (run_dir / "final_model.zip").is_file()
    finite_losses(run_dir)
    args = [*TINY_SPARSE_FLS, "total_timesteps=256", "checkpoint_every=128", f"device={DEVICE}"]
    back = fls.train([*args, "after_training.eval_episodes=0"], run_dir=tmp_path / "from_cuda").dir
    (back / "final_model.zip").unlink()  # as if stopped after its first checkpoint, on the GPU
    fls.train([f"resume={back}", "device=cpu"])
    assert (back / "final_model.zip").is_file()
    assert [int(r["time/total_timesteps"]) for r in progress_rows(back)][-1] == 256
    assert fls.load(back, device="cpu").device.type == "cpu"


@pytest.mark.skipif(not ON_CUDA, reason="GPU memory: CUDA only")
def test_gpu_memory_stays_bounded_over_a_long_evaluation(tiny_run, tmp_path) -> None:
    agent = fls.load(tiny_run, device=DEVICE)
    fls.evaluate(agent, episodes=4, num_envs=4, progress=False, out=tmp_path / "warm")  # allocator warm-up
    peaks = []
    for episodes in (4, 32):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fls.evaluate(agent, episodes=episodes, num_envs=4, progress=False, out=tmp_path / f"eval{episodes}")
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - before)
        assert torch.cuda.memory_allocated() - before < 1 << 20  # nothing kept per episode
    assert peaks[1] <= peaks[0] + (1 << 20), peaks  # 8x the episodes, the same peak
    assert json.loads((tmp_path / "eval32" / "summary.json").read_text())["episodes"] == 32


def test_host_arrays_reach_cuda_through_pinned_memory(monkeypatch) -> None:
    """Observations (evaluation) and rollout minibatches (training) go host -> device from pinned memory with
    non-blocking copies on CUDA, and arrive as the CPU has them (on the CPU nothing is pinned)."""
    from gymnasium import spaces

    from fls.ppo import AgentRolloutBuffer
    from fls.runtime import to_device

    pinned = []
    pin_memory = torch.Tensor.pin_memory

    def recording(self, *args, **kwargs):
        pinned.append(self.data_ptr())
        return pin_memory(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "pin_memory", recording)
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (8, 4, 84, 84), dtype=np.uint8)
    got = to_device(array, torch.device(DEVICE))
    assert got.device.type == torch.device(DEVICE).type and torch.equal(got.cpu(), torch.as_tensor(array))
    assert len(pinned) == (1 if ON_CUDA else 0)

    steps, envs, observation_space = 4, 2, spaces.Box(0, 255, (4, 84, 84), np.uint8)
    transitions = [
        (rng.integers(0, 255, (envs, 4, 84, 84)), rng.integers(0, 4, (envs, 1)), rng.normal(size=envs))
        for _ in range(steps)
    ]
    samples = {}
    for device in ("cpu", DEVICE):
        buffer = AgentRolloutBuffer(steps, observation_space, spaces.Discrete(4), device=device, n_envs=envs)
        for obs, actions, rewards in transitions:
            buffer.add(obs, actions, rewards, np.zeros(envs), torch.ones(envs, 1), torch.zeros(envs))
        buffer.compute_returns_and_advantage(last_values=torch.zeros(envs, 1), dones=np.zeros(envs))
        np.random.seed(0)  # the minibatch order
        samples[device] = next(buffer.get(steps * envs))
    for field, value in samples["cpu"]._asdict().items():
        moved = getattr(samples[DEVICE], field)
        assert value is None and moved is None or torch.equal(moved.cpu(), value), field
    assert len(pinned) == (1 + 6 if ON_CUDA else 0)  # observations, actions, values, log-probs, advantages, returns
