"""Sticky actions (Machado et al. 2018, ALE's repeat_action_probability): threaded from the settings to every env
that plays, recorded with the results, and never mixed with results made without them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from fls.agents.loading import repeat_action_probability
from fls.envs import make_single_env, make_vec_env
from fls.errors import ConfigError
from fls.evaluation.records import EpisodeLog, read_records
from tests.conftest import evaluate_in_process


def _play_vec(p: float, game: str = "Breakout", steps: int = 150) -> np.ndarray:
    env = make_vec_env(game, num_envs=2, seed=5, repeat_action_probability=p)
    actions = np.random.default_rng(0).integers(env.action_space.n, size=(steps, 2))
    try:
        frames = [env.reset()]
        for a in actions:
            frames.append(env.step(a)[0])
    finally:
        env.close()
    return np.stack(frames)


@pytest.mark.parametrize("game", ["Breakout", "BreakoutInfinite"])  # the native and the Python vector env
def test_sticky_actions_change_play_and_zero_changes_nothing(game) -> None:
    plain = _play_vec(0.0, game)
    assert np.array_equal(plain, _play_vec(0.0, game))
    sticky = _play_vec(0.25, game)
    assert np.array_equal(sticky, _play_vec(0.25, game))  # reproducible per seed
    assert not np.array_equal(plain, sticky)


def test_the_single_env_plays_sticky_actions() -> None:
    def play(p: float) -> np.ndarray:
        env = make_single_env("Breakout", 5, repeat_action_probability=p)
        obs, _ = env.reset()
        frames = [obs]
        for a in np.random.default_rng(0).integers(env.action_space.n, size=150):
            obs, _, terminated, truncated, _ = env.step(int(a))
            frames.append(obs)
            if terminated or truncated:
                frames.append(env.reset()[0])
        env.close()
        return np.stack(frames)

    assert not np.array_equal(play(0.0), play(0.25))


@pytest.mark.parametrize("p", [1.5, -0.1, float("nan")])
def test_envs_refuse_a_probability_outside_0_1(p) -> None:
    for make in (
        lambda: make_vec_env("Breakout", 1, repeat_action_probability=p),
        lambda: make_single_env("Pong", 0, repeat_action_probability=p),
    ):
        with pytest.raises(ConfigError, match="repeat_action_probability=.*: a number >= 0 and <= 1"):
            make()


@pytest.fixture(scope="module")
def sb3_agent(tmp_path_factory) -> Path:
    """An untrained SB3 PPO CnnPolicy agent from outside fls (its evaluation plays without sticky actions unless
    eval.repeat_action_probability says otherwise)."""
    import stable_baselines3 as sb3

    path = tmp_path_factory.mktemp("sb3") / "ppo_breakout.zip"
    env = make_vec_env("Breakout", num_envs=1, seed=0)
    sb3.PPO("CnnPolicy", env, device="cpu", seed=0).save(path)
    env.close()
    return path


def _evaluate(agent: Path, out: Path, *extra: str) -> list[tuple]:
    args = [f"checkpoint={agent}", "env=Breakout", "eval.episodes=2", "eval.num_envs=2"]
    evaluate_in_process(*args, "eval.max_episode_steps=400", f"eval.out={out}", "logger.wandb.mode=disabled", *extra)
    _, episodes = read_records(out / "episodes.jsonl")
    return sorted((e.index, e.score, e.length, e.truncated) for e in episodes)


def test_evaluation_plays_records_and_keeps_apart_sticky_actions(sb3_agent, tmp_path) -> None:
    plain = _evaluate(sb3_agent, tmp_path / "default")
    assert _evaluate(sb3_agent, tmp_path / "zero", "eval.repeat_action_probability=0") == plain
    sticky = _evaluate(sb3_agent, tmp_path / "sticky", "eval.repeat_action_probability=0.25")
    assert sticky != plain  # same seeds, other games
    for name, p in (("default", 0.0), ("sticky", 0.25)):
        header, _ = read_records(tmp_path / name / "episodes.jsonl")
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert header["repeat_action_probability"] == summary["repeat_action_probability"] == p
        assert f"sticky actions {p:g}," in (tmp_path / name / "summary.md").read_text()
    # Continuing the records of one value with another is refused, naming the override that continues them.
    with pytest.raises(ConfigError, match=r"repeat_action_probability=0.0, not 0.25: add eval.repeat_action_probabi"):
        _evaluate(sb3_agent, tmp_path / "default", "eval.repeat_action_probability=0.25")


def test_records_made_before_the_setting_count_as_without_sticky_actions(tmp_path) -> None:
    path = tmp_path / "episodes.jsonl"
    old = {"format": "fls.episodes/1", "digest": "abc", "game": "Breakout", "episodes": 2, "seed": 1000}
    path.write_text(json.dumps(old) + "\n")
    EpisodeLog(path, {**old, "repeat_action_probability": 0.0})  # continues them
    with pytest.raises(ConfigError, match="holds records with repeat_action_probability=0.0, not 0.25"):
        EpisodeLog(path, {**old, "repeat_action_probability": 0.25})


def test_evaluation_defaults_to_the_runs_training_value(tmp_path) -> None:
    def cfg(value):
        return OmegaConf.create({"eval": {"repeat_action_probability": value}})

    machado, old = tmp_path / "machado", tmp_path / "old"
    for run, env in ((machado, {"name": "Pong", "repeat_action_probability": 0.25}), (old, {"name": "Pong"})):
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump({"env": env, "seed": 1}))
    assert repeat_action_probability(cfg(None), machado) == 0.25
    assert repeat_action_probability(cfg(None), old) == 0.0  # a run made before the setting
    assert repeat_action_probability(cfg(None), None) == 0.0  # a model file from outside fls
    assert repeat_action_probability(cfg(0), machado) == 0.0  # said explicitly
