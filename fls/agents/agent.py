"""Loading any SB3 Atari agent (fls runs, PPO, A2C, DQN, QR-DQN .zip files) behind one action-scoring interface."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.distributions import Distribution

from fls.errors import ConfigError
from fls.model_files import class_identity, first_non_finite, load_model, read_model_data
from fls.rundir import CONFIG_FILE, FINAL_MODEL, check_model_file, checkpoints, newest_checkpoint
from fls.runtime import to_device

OBS_SHAPE = (4, 84, 84)
SUPPORTED = "fls runs, PPO, A2C, DQN, QR-DQN (sb3-contrib)"


def file_digest(path: Path) -> str:
    """sha256 of a file (first 16 hex digits): identifies the exact checkpoint evaluation records belong to."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _algorithm(data: dict[str, Any], path: Path) -> type:
    module, _ = class_identity(data.get("policy_class"))
    if module.startswith("fls."):
        from fls.ppo import AttentionPPO

        return AttentionPPO
    if module == "stable_baselines3.common.policies":
        from stable_baselines3 import A2C, PPO

        return PPO if "clip_range" in data else A2C
    if module == "stable_baselines3.dqn.policies":
        from stable_baselines3 import DQN

        return DQN
    if module.startswith("sb3_contrib.qrdqn"):
        try:
            from sb3_contrib import QRDQN
        except ImportError:
            raise ConfigError(f"{path} is a QR-DQN agent: pip install sb3-contrib to evaluate it") from None
        return QRDQN
    raise ConfigError(f"{path}: unsupported agent (policy from '{module or 'unknown'}'; supported: {SUPPORTED})")


@contextmanager
def _unvalidated_distributions() -> Iterator[None]:
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


@dataclass
class Agent:
    """A loaded agent: ``scores(obs)`` gives action logits (actor-critic) or action values (Q-learning)."""

    model: Any
    path: Path
    digest: str
    algorithm: str
    stochastic: bool  # actor-critic agents sample from their logits; Q-learning agents act greedily
    channels_last: bool
    game: str | None = None  # the game it plays, when known (fls.load sets it)
    run_dir: Path | None = None  # the run directory or rl-zoo3 folder it came from, if any

    @property
    def policy(self) -> Any:
        return self.model.policy

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def n_actions(self) -> int:
        return int(self.model.action_space.n)

    def as_input(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Env observations (B,4,84,84) uint8 -> the tensor layout the agent was trained on."""
        tensor = to_device(obs, self.device)
        return tensor.permute(0, 2, 3, 1) if self.channels_last else tensor

    @torch.inference_mode()
    def scores(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, A) action logits or action values for a batch of observations."""
        x = self.as_input(obs)
        policy = self.policy
        if self.algorithm in ("AttentionPPO", "PPO", "A2C"):
            # No argument validation: NaN logits must reach the runner's check, not raise inside torch.
            with _unvalidated_distributions():
                return policy.get_distribution(x).distribution.logits
        if self.algorithm == "DQN":
            return policy.q_net(x)
        return policy.quantile_net(x).mean(dim=1)  # QR-DQN: expected value over quantiles

    def act(
        self,
        observations: np.ndarray | torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Actions (B,) for observations (B, 4, 84, 84) uint8: sampled from an actor-critic's policy (greedy when
        ``deterministic``); a Q-learning agent's greedy action (evaluation adds its ε-greedy exploration)."""
        observations = np.asarray(observations) if not isinstance(observations, torch.Tensor) else observations
        if observations.ndim == 3:
            observations = observations[None]
        scores = self.scores(observations)
        if self.stochastic and not deterministic:
            probabilities = torch.softmax(scores.float(), dim=1).cpu()
            return torch.multinomial(probabilities, 1, generator=generator)[:, 0].numpy()
        return scores.argmax(dim=1).cpu().numpy()


def resolve_checkpoint(
    run: str | None, checkpoint: str | None, zoo_model: str | int = "final"
) -> tuple[Path, Path | None]:
    """(checkpoint file, run directory or None) from ``run=`` (newest checkpoint) or ``checkpoint=`` (a file, or an
    rl-zoo3 experiment folder whose ``zoo_model`` is taken; the folder is then the run directory)."""
    if bool(run) == bool(checkpoint):
        raise ConfigError("give exactly one of run=<run dir> or checkpoint=<file.zip>")
    if run and Path(run).expanduser().is_file():
        raise ConfigError(f"run={run} is a file, not a run directory: give checkpoint={run} to evaluate a model file")
    from fls.agents.zoo import zoo_checkpoint

    zoo = zoo_checkpoint(run, checkpoint, zoo_model)
    if zoo is not None:
        return zoo
    if run:
        run_dir = Path(run).expanduser().resolve()
        final = run_dir / FINAL_MODEL
        if final.is_file():
            return check_model_file(final, in_run=bool(checkpoints(run_dir))), run_dir
        return newest_checkpoint(run_dir), run_dir
    path = Path(str(checkpoint)).expanduser().resolve()
    check_model_file(path)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, run_dir if (run_dir / CONFIG_FILE).is_file() else None


def run_game(run_dir: Path | None) -> str | None:
    """The game a run directory (an fls run or an rl-zoo3 experiment folder) was trained on (None without one)."""
    if run_dir is None:
        return None
    if not (run_dir / CONFIG_FILE).is_file():
        from fls.agents.zoo import read_zoo_folder

        return read_zoo_folder(run_dir).game
    return str(OmegaConf.load(run_dir / CONFIG_FILE).env.name)


def load_agent(
    path: Path, device: torch.device | str = "cpu", n_actions: int | None = None, allow_pickle: bool = False
) -> Agent:
    """Load an SB3 agent from a .zip, check it fits the (4,84,84) uint8 Atari stack and ``n_actions``, and that its
    parameters are finite. Nothing in the file is unpickled unless ``allow_pickle`` (see :mod:`fls.model_files`)."""
    data = read_model_data(path)
    algorithm = _algorithm(data, path)
    # Schedules are not needed to act; replacing them avoids unpickling closures from other code versions.
    custom = {
        "learning_rate": 0.0,
        "lr_schedule": lambda _: 0.0,
        "clip_range": lambda _: 0.0,
        "exploration_schedule": lambda _: 0.0,
    }
    model = load_model(algorithm, path, device=device, allow_pickle=allow_pickle, custom_objects=custom)
    shape = tuple(model.observation_space.shape)
    if shape == OBS_SHAPE:
        channels_last = False
    elif shape == (84, 84, 4):
        channels_last = True
    else:
        raise ConfigError(
            f"{path} expects observations of shape {shape}; fls plays 4 stacked 84x84 grayscale frames (4,84,84) "
            "— retrain with frame stack 4, or evaluate it with the pipeline it was trained on"
        )
    if n_actions is not None and int(model.action_space.n) != n_actions:
        raise ConfigError(
            f"{path} has {model.action_space.n} actions but the game has {n_actions} (minimal action set): "
            "wrong env=? (agents trained with full_action_space=True are not supported)"
        )
    bad = first_non_finite(model.policy)
    if bad is not None:
        name, count, size = bad
        # A NaN network still picks actions (argmax of NaN is action 0) and would get a normal-looking score.
        raise ConfigError(
            f"{path}: parameter {name} is not finite ({count} of {size} values NaN or inf); the model is broken "
            "(evaluate an earlier checkpoint)"
        )
    model.policy.set_training_mode(False)
    return Agent(
        model,
        path,
        file_digest(path),
        algorithm.__name__,
        algorithm.__name__ in ("AttentionPPO", "PPO", "A2C"),
        channels_last,
    )


def agent_in_memory(model: Any, path: Path, game: str, run_dir: Path | None = None) -> Agent:
    """An :class:`Agent` of a model already in memory that was saved to ``path`` (training's final model): the
    same agent :func:`load_agent` would read back from that file, without reading it."""
    model.policy.set_training_mode(False)
    name = type(model).__name__
    channels_last = tuple(model.observation_space.shape) == (84, 84, 4)
    stochastic = name in ("AttentionPPO", "PPO", "A2C")
    return Agent(model, path, file_digest(path), name, stochastic, channels_last, game=game, run_dir=run_dir)


def saved_exploration_rate(path: Path) -> float | None:
    """The ε a DQN / QR-DQN archive acts with (``exploration_rate``, else ``exploration_final_eps``), read from the
    archive's JSON ``data`` without unpickling anything; None if it records neither."""
    try:
        data = read_model_data(path)
    except ConfigError:
        return None
    for key in ("exploration_rate", "exploration_final_eps"):
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
            return float(value)
    return None
