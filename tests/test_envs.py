"""Atari env layer on real ALE games: the native vector env and the Python single env agree step for step,
and both follow the baselines protocol (episodic life, FIRE reset, stack zeroing, statistics, seeding)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ale_py.vector_env import AtariVectorEnv
from stable_baselines3.common.atari_wrappers import EpisodicLifeEnv
from stable_baselines3.common.monitor import Monitor

from fls.envs import GAMES, AtariVecEnv, get_game, make_single_env, make_vec_env
from fls.envs.preprocess import NoopSampler

# Max abs pixel difference between the C++ cv::resize(INTER_AREA) of the native env and Python's
# cv2.resize(INTER_AREA) of the same pooled frame, measured over thousands of steps of all registered
# games: 0 (same OpenCV algorithm, same uint8 input). The tolerance leaves room for a different OpenCV build.
PIXEL_TOL = 1


def _zero_frames(stack: np.ndarray) -> list[bool]:
    return [not frame.any() for frame in stack]


def _run_both(game, num_envs: int, seed: int, steps: int, actions=None, **kwargs) -> dict[str, int]:
    """Step the vector env and ``num_envs`` single envs with the same actions; assert they agree."""
    kwargs = {"clip_rewards": True, **kwargs}  # the two factories default differently (training vs videos)
    venv = make_vec_env(game, num_envs, seed, **kwargs)
    singles = [make_single_env(game, seed + i, **kwargs) for i in range(num_envs)]
    rng = np.random.default_rng(seed)
    counts = {"life_loss": 0, "game_over": 0, "truncated": 0, "max_diff": 0}

    def check_obs(single_obs: np.ndarray, vec_obs: np.ndarray) -> None:
        assert _zero_frames(single_obs) == _zero_frames(vec_obs)
        diff = int(np.abs(single_obs.astype(np.int16) - vec_obs).max())
        counts["max_diff"] = max(counts["max_diff"], diff)
        assert diff <= PIXEL_TOL

    vec_obs = venv.reset()
    for i, env in enumerate(singles):
        obs, info = env.reset()
        check_obs(obs, vec_obs[i])
        assert info["rgb"].shape == (210, 160, 3) and info["rgb"].dtype == np.uint8
    for _ in range(steps):
        action = rng.integers(0, venv.action_space.n, num_envs) if actions is None else np.full(num_envs, actions)
        vec_obs, vec_rewards, vec_dones, vec_infos = venv.step(action)
        assert vec_rewards.dtype == np.float32 and vec_dones.dtype == bool
        for i, env in enumerate(singles):
            obs, reward, terminated, truncated, info = env.step(int(action[i]))
            vinfo = vec_infos[i]
            assert reward == vec_rewards[i]
            assert (terminated or truncated) == vec_dones[i]
            assert info["game_over"] == vinfo["game_over"]
            assert ("episode" in info) == ("episode" in vinfo)
            if "episode" in info:
                assert (info["episode"]["r"], info["episode"]["l"]) == (vinfo["episode"]["r"], vinfo["episode"]["l"])
            if not vec_dones[i]:
                assert info["lives"] == vinfo["lives"]
                check_obs(obs, vec_obs[i])
                continue
            assert truncated == vinfo["TimeLimit.truncated"]
            check_obs(obs, vinfo["terminal_observation"])
            counts["game_over"] += info["game_over"]
            counts["life_loss"] += not info["game_over"]
            counts["truncated"] += truncated
            obs, info = env.reset()
            assert info["lives"] == vinfo["lives"]
            check_obs(obs, vec_obs[i])
    venv.close()
    return counts


def test_get_game() -> None:
    spec = get_game("Breakout")
    assert (spec.name, spec.rom, spec.max_frames, spec.eval_max_episode_steps) == (
        "Breakout",
        "breakout",
        400_000,
        30_000,
    )
    assert get_game("SpaceInvaders").max_frames == 300_000
    assert get_game("Seaquest").eval_max_episode_steps == 108_000
    with pytest.raises(ValueError) as err:
        get_game("breakout")
    assert str(err.value) == f"unknown game 'breakout' (valid: {', '.join(sorted(GAMES))})"
    for name in ("BeamRider", "Breakout", "MsPacman", "SpaceInvaders", "Enduro", "Seaquest", "Pong", "Frostbite"):
        assert GAMES[name].name == name


def test_noop_sampler_matches_cpp_generator() -> None:
    # Without FIRE reset the C++ reset only does the no-ops, so the episode frame number is their count.
    native = AtariVectorEnv("ms_pacman", 4, use_fire_reset=False, noop_max=30)
    frames = [native.reset(seed=40)[1]["episode_frame_number"]]
    frames += [native.reset()[1]["episode_frame_number"] for _ in range(4)]
    native.close()
    samplers = [NoopSampler(30, seed=40 + i) for i in range(4)]
    expected = [[s.draw() for s in samplers] for _ in range(5)]
    assert np.array_equal(np.array(frames), np.array(expected))
    assert all(0 <= n <= 29 for row in expected for n in row)


@pytest.mark.parametrize(
    ("game", "kwargs", "steps", "expected"),
    [
        # (each game plays hundreds of emulator steps twice: the fast subset keeps two cases, --slow all four)
        pytest.param("Breakout", {}, 400, {"life_loss": 5, "game_over": 1}, marks=pytest.mark.slow),
        pytest.param(
            "MsPacman", {"clip_rewards": False}, 600, {"life_loss": 2, "game_over": 1}, marks=pytest.mark.slow
        ),
        # Short raw-frame limit (ends a step mid frame-skip) and agent-step limit, without episodic life.
        (dataclasses.replace(get_game("Seaquest"), max_frames=403), {"episodic_life": False}, 300, {"truncated": 2}),
        ("Breakout", {"episodic_life": False, "max_episode_steps": 60}, 200, {"truncated": 2}),
    ],
    ids=["breakout", "mspacman-unclipped", "seaquest-frame-limit", "breakout-eval-step-limit"],
)
def test_native_and_single_env_agree(game, kwargs: dict, steps: int, expected: dict[str, int]) -> None:
    counts = _run_both(game, 2, 11, steps, **kwargs)
    assert all(counts[key] >= n for key, n in expected.items()), counts
    if not kwargs.get("episodic_life", True):
        assert counts["life_loss"] == 0


def test_noop_agent_is_served_after_every_life_loss() -> None:
    # FIRE is forced at the start of every learner episode, so a NOOP-only Breakout agent still
    # loses all five balls; without it the game would wait forever after the first lost life.
    counts = _run_both("Breakout", 1, 3, 400, actions=0)
    assert counts["game_over"] >= 1 and counts["life_loss"] >= 4
    env = make_single_env("Breakout", 3)
    env.reset()
    executed = []
    for _ in range(60):
        _, _, terminated, truncated, info = env.step(0)
        executed.append(info["executed_action"])
        if terminated or truncated:
            break
    assert executed[:2] == [1, 2] and set(executed[2:]) == {0}
    _, info = env.reset()
    assert [env.step(3)[4]["executed_action"] for _ in range(3)] == [1, 2, 3]
    pacman = make_single_env("MsPacman", 3)
    pacman.reset()
    assert [pacman.step(4)[4]["executed_action"] for _ in range(3)] == [4, 4, 4]


def test_life_loss_ends_learner_episode_but_not_game() -> None:
    env = make_vec_env("Breakout", 2, seed=5)
    obs = env.reset()
    assert np.array_equal(_zero_frames(obs[0]), [True, True, True, False])
    lives = [5, 5]
    since_done = [0, 0]
    rng = np.random.default_rng(0)
    life_losses = game_overs = 0
    for _ in range(500):
        obs, _, dones, infos = env.step(rng.integers(0, 4, 2))
        for i, info in enumerate(infos):
            since_done[i] += 1
            if dones[i]:
                since_done[i] = 0
                terminal = info["terminal_observation"]
                assert terminal[-1].any()
                if info["game_over"]:
                    game_overs += 1
                    assert info["lives"] == 5 and "episode" in info
                else:
                    life_losses += 1
                    assert info["lives"] == lives[i] - 1 and "episode" not in info
            # Frames from before the last done are zero: 3 right after it, then 2, 1, 0.
            assert _zero_frames(obs[i]) == [k < 3 - since_done[i] for k in range(4)]
            lives[i] = info["lives"]
    env.close()
    assert life_losses >= 8 and game_overs >= 1


def test_episode_return_is_unclipped_sum_over_all_lives() -> None:
    clipped = make_vec_env("MsPacman", 1, seed=2)
    raw = make_vec_env("MsPacman", 1, seed=2, clip_rewards=False)
    clipped.reset()
    raw.reset()
    rng = np.random.default_rng(1)
    total = clipped_total = steps = life_losses = 0
    for _ in range(3000):
        action = rng.integers(0, 9, 1)
        _, rewards, dones, infos = clipped.step(action)
        _, raw_rewards, _, raw_infos = raw.step(action)
        assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
        assert rewards[0] == np.sign(raw_rewards[0])
        total += raw_rewards[0]
        clipped_total += rewards[0]
        steps += 1
        if dones[0] and not infos[0]["game_over"]:
            life_losses += 1
        if "episode" in infos[0]:
            break
    assert "episode" in infos[0] and infos[0]["game_over"]
    assert life_losses == 2  # MsPacman has 3 lives
    assert infos[0]["episode"]["r"] == total == raw_infos[0]["episode"]["r"]
    assert infos[0]["episode"]["l"] == steps
    assert total > clipped_total > 0  # 10-point pellets: clipping changes the return


def test_agent_step_limit_truncates_and_resets() -> None:
    env = make_vec_env("MsPacman", 2, seed=0, episodic_life=False, max_episode_steps=30)
    env.reset()
    for step in range(1, 31):
        obs, _, dones, infos = env.step(np.zeros(2, np.int64))
        assert dones.all() == (step == 30)
    for info in infos:
        assert info["TimeLimit.truncated"] and info["game_over"]
        assert info["episode"]["l"] == 30
    assert _zero_frames(obs[0]) == [True, True, True, False]
    env.close()


def test_seeding_is_reproducible_per_env() -> None:
    # Env i plays the action sequence of its own seed, so env 1 of seed 7 and env 0 of seed 8 see the same.
    actions = {seed: np.random.default_rng(seed).integers(0, 4, 50) for seed in range(7, 10)}

    def trajectory(seed: int, num_envs: int) -> np.ndarray:
        env = make_vec_env("Breakout", num_envs, seed=seed)
        frames = [env.reset()]
        for t in range(50):
            frames.append(env.step(np.array([actions[seed + i][t] for i in range(num_envs)]))[0])
        env.close()
        return np.stack(frames, axis=1)  # (env, time, 4, 84, 84)

    first = trajectory(7, 2)
    assert np.array_equal(first, trajectory(7, 2))
    second = trajectory(8, 2)
    assert np.array_equal(first[1], second[0])
    assert not np.array_equal(first[0], second[0])
    single = make_single_env("Breakout", 8)
    obs, _ = single.reset()
    assert np.array_equal(obs, second[0, 0])
    for t in range(20):
        obs, _, terminated, truncated, _ = single.step(int(actions[8][t]))
        assert terminated or truncated or np.array_equal(obs, second[0, t + 1])
    # seed() then reset() reseeds envs in use.
    env = make_vec_env("Breakout", 2, seed=123)
    env.reset()
    env.step(np.ones(2, np.int64))
    env.seed(7)
    assert np.array_equal(env.reset(), first[:, 0])
    env.close()


def test_vec_env_sb3_api() -> None:
    env = make_vec_env("Seaquest", 3, seed=0)
    assert isinstance(env, AtariVecEnv) and env.game is get_game("Seaquest")
    assert env.observation_space.shape == (4, 84, 84) and env.action_space.n == 18
    assert env.action_meanings[:3] == ["NOOP", "FIRE", "UP"]
    obs = env.reset()
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    assert env.reset_infos[0]["lives"] == 4
    obs, rewards, dones, infos = env.step(np.zeros(3, np.int64))
    assert obs.shape == (3, 4, 84, 84) and rewards.shape == (3,) and dones.shape == (3,)
    assert len(infos) == 3 and all({"lives", "game_over"} <= info.keys() for info in infos)
    assert env.get_attr("render_mode") == [None, None, None]
    assert env.get_attr("action_meanings", [1]) == [env.action_meanings]
    env.set_attr("tag", "x", indices=[0, 2])
    assert env.get_attr("tag", [0, 2]) == ["x", "x"]
    with pytest.raises(AttributeError):
        env.get_attr("tag")
    assert env.env_method("get_action_meanings", indices=0) == [env.action_meanings]
    with pytest.raises(AttributeError):
        env.env_method("reset")
    assert env.env_is_wrapped(Monitor) == [True, True, True]
    assert env.env_is_wrapped(EpisodicLifeEnv) == [False, False, False]
    assert env.seed(4) == [4, 5, 6]
    env.close()
    single = make_single_env("Seaquest", 0)
    assert single.observation_space == env.observation_space
    assert single.get_wrapper_attr("action_meanings") == env.action_meanings
    single.reset()
    obs, _, _, _, info = single.step(0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert info["rgb"].shape == (210, 160, 3) and np.array_equal(info["rgb"], single.render())
