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


def _game(cfg: DictConfig, run_dir: Path | None) -> str:
    chosen = OmegaConf.select(cfg, "env.name", default=None)
    trained = run_game(run_dir)
    if chosen and trained and chosen != trained:
        raise ConfigError(f"env={chosen} but the run was trained on {trained}; drop env= to use the run's game")
    game = chosen or trained
    if game is None:
        raise ConfigError(f"checkpoint=<zip> from outside fls needs env=<game> (valid: {', '.join(sorted(GAMES))})")
    return str(game)


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
    game = _game(cfg, run_dir)
    spec = get_game(game)
    device = resolve_device(str(cfg.device))
    probe = make_vec_env(spec, num_envs=1, seed=0)
    try:
        n_actions = int(probe.action_space.n)
        agent = load_agent(checkpoint, device, n_actions=n_actions, allow_pickle=allow_pickle_flag(cfg))
        # Before any task writes anything: a model whose scores overflow on the game's first input is refused here.
        check_finite_scores(agent.scores(probe.reset()), str(checkpoint), "on the game's first frame")
    finally:
        probe.close()
    return Loaded(agent, checkpoint, run_dir, game, spec)
