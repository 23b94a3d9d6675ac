"""Loading the agent an evaluation task runs on: run=/checkpoint= resolved, the game checked, the device chosen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fls.agents.agent import Agent, load_agent, resolve_checkpoint, run_game
from fls.envs import get_game, make_vec_env
from fls.envs.games import GAMES, GameSpec
from fls.errors import ConfigError
from fls.model_files import allow_pickle_flag, check_finite_scores
from fls.rundir import CONFIG_FILE
from fls.runtime import resolve_device


def evaluation_config(**overrides: Any) -> DictConfig:
    """evaluate.py's default config (fls/config_schema.py's EvaluateConfig) with dotted-key overrides, for running
    evaluation tasks from inside another command (the quickstart evaluates after training) or the Python API."""
    from fls.config_schema import check_config, default_config

    cfg = default_config("evaluate")
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    check_config(cfg, "evaluate")  # the same checks as the command line's, declared once
    return cfg


def choose_game(chosen: str | None, run_dir: Path | None, option: str = "env") -> str:
    """The game to play: the one chosen (``env=`` on the command line, ``game=`` in the API), checked against the
    run's own; the run's when none is chosen; a ConfigError when neither says."""
    trained = run_game(run_dir)
    if chosen and trained and chosen != trained:
        raise ConfigError(
            f"{option}={chosen} but the run was trained on {trained}; drop {option}= to use the run's game"
        )
    game = chosen or trained
    if game is None:
        raise ConfigError(
            f"a model file from outside fls needs {option}=<game> (the file does not say which game it plays; valid: "
            f"{', '.join(sorted(GAMES))})"
        )
    return str(game)


def repeat_action_probability(cfg: DictConfig, run_dir: Path | None) -> float:
    """The sticky actions every evaluation task plays with: ``eval.repeat_action_probability``, or when it is null
    the run's training value (``env.repeat_action_probability``; 0 for a run made before the setting existed and for
    models from outside fls, which the baselines protocol trained)."""
    from fls.envs.preprocess import check_sticky

    chosen = OmegaConf.select(cfg, "eval.repeat_action_probability", default=None)
    if chosen is not None:
        return check_sticky(chosen)
    if run_dir is None or not (run_dir / CONFIG_FILE).is_file():
        return 0.0
    trained = OmegaConf.select(OmegaConf.load(run_dir / CONFIG_FILE), "env.repeat_action_probability", default=None)
    return check_sticky(trained or 0.0)


def zoo_model(cfg: DictConfig) -> str:
    """``zoo.model``: which model of an rl-zoo3 experiment folder (final, best or a checkpoint step)."""
    return str(OmegaConf.select(cfg, "zoo.model", default="final"))


@dataclass
class Loaded:
    """What every evaluation task starts from: the agent, where it came from and the game it plays."""

    agent: Agent
    checkpoint: Path
    run_dir: Path | None
    game: str
    spec: GameSpec


def load(cfg: DictConfig) -> Loaded:
    """Resolve run=/checkpoint=, the game and the device, and load the agent checked against the game."""
    checkpoint, run_dir = resolve_checkpoint(cfg.run, cfg.checkpoint, zoo_model(cfg))
    chosen = OmegaConf.select(cfg, "env.name", default=None)
    return load_checked(checkpoint, run_dir, chosen, str(cfg.device), allow_pickle_flag(cfg))


def load_checked(
    checkpoint: Path, run_dir: Path | None, game: str | None, device: str, allow_pickle: bool, option: str = "env"
) -> Loaded:
    """Load ``checkpoint`` for ``game`` (None: the run's) on ``device``, checked as every task needs it: it fits the
    game's observations and actions, its parameters are finite, and so are its scores on the game's first frame."""
    spec = get_game(choose_game(game, run_dir, option))
    probe = make_vec_env(spec, num_envs=1, seed=0)
    try:
        n_actions = int(probe.action_space.n)
        agent = load_agent(checkpoint, resolve_device(device), n_actions=n_actions, allow_pickle=allow_pickle)
        # Before any task writes anything: a model whose scores overflow on the game's first input is refused here.
        check_finite_scores(agent.scores(probe.reset()), str(checkpoint), "on the game's first frame")
    finally:
        probe.close()
    agent.game, agent.run_dir = spec.name, run_dir
    return Loaded(agent, checkpoint, run_dir, spec.name, spec)


def loaded(agent: Agent) -> Loaded:
    """What a task starts from, for an agent already in memory (fls.load's, or the model training just made)."""
    if agent.game is None:
        raise ConfigError("the agent does not know its game: load it with fls.load(source, game=...)")
    spec = get_game(agent.game)
    return Loaded(agent, agent.path, agent.run_dir, spec.name, spec)
