"""The Python API: load an agent, explain what it looks at, evaluate it, train one — without Hydra or a shell.

Every function raises :class:`fls.FlsError` (with the same one-line message the commands print) for bad input;
none of them exits the process. ``fls.load``, ``fls.explain``, ``fls.evaluate`` and ``fls.train`` are
re-exported from :mod:`fls`::

    import fls

    run = fls.train(["experiment=quickstart", "total_timesteps=2048"])
    agent = fls.load(run.dir)                       # or an SB3 zip: fls.load("ppo.zip", game="Breakout")
    result = fls.evaluate(agent, episodes=32)       # result.summary["mean"], result.episodes
    maps = fls.explain(agent, observations, ["attention", "gradcam"])   # {"attention": (B, 84, 84) in [0, 1], ...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fls.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from fls.agents.agent import Agent
    from fls.evaluation.records import Episode

DEFAULT_EVAL_SEED = 1000  # evaluate.py's eval.seed: episode seeds 1000.. (disjoint from training's seed + i)


def _path(source: str | Path, what: str) -> Path:
    if source is None or str(source).strip() == "":
        raise ConfigError(f"{what} is empty: give a run directory, a checkpoint .zip or an rl-zoo3 folder")
    return Path(source).expanduser().resolve()


def load(
    source: str | Path,
    *,
    game: str | None = None,
    device: str = "auto",
    allow_pickle: bool = False,
    zoo_model: str | int = "final",
) -> Agent:
    """Load an agent that plays Atari.

    Args:
        source: an fls run directory (its final model, else its newest checkpoint), an fls or SB3 checkpoint
            ``.zip`` (PPO, A2C, DQN, QR-DQN), or an rl-zoo3 experiment folder ``logs/<algo>/<EnvId>_<n>/``.
        game: the game (e.g. ``"Breakout"``); required when the file cannot tell (an SB3 zip from elsewhere),
            checked against the run's game otherwise.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        allow_pickle: let the file unpickle objects (runs code from the file: trusted files only). Off by default,
            as in the commands.
        zoo_model: for an rl-zoo3 folder: ``"final"``, ``"best"`` or a checkpoint step.

    Returns:
        The :class:`~fls.agents.agent.Agent`: ``.policy``, ``.game``, ``.algorithm``, ``.act(observations)``.

    Raises:
        fls.FlsError: a missing or unsafe file, an unknown game, a model that does not fit the game.
    """
    from fls.agents.agent import load_agent, resolve_checkpoint, run_game
    from fls.envs import get_game, make_vec_env
    from fls.envs.games import GAMES
    from fls.runtime import resolve_device

    path = _path(source, "source")
    if not path.exists():
        raise ConfigError(f"{path} does not exist (a run directory, a checkpoint .zip or an rl-zoo3 folder)")
    run, checkpoint = (str(path), None) if path.is_dir() else (None, str(path))
    checkpoint_file, run_dir = resolve_checkpoint(run, checkpoint, zoo_model)
    trained = run_game(run_dir)
    if game is not None and trained is not None and game != trained:
        raise ConfigError(f"game={game} but the run was trained on {trained}; leave game out to use the run's game")
    chosen = game or trained
    if chosen is None:
        raise ConfigError(f"{path} does not say which game it plays: pass game= (valid: {', '.join(sorted(GAMES))})")
    spec = get_game(chosen)
    probe = make_vec_env(spec, num_envs=1, seed=0)
    n_actions = int(probe.action_space.n)
    probe.close()
    agent = load_agent(checkpoint_file, resolve_device(device), n_actions=n_actions, allow_pickle=allow_pickle)
    agent.game, agent.run_dir = spec.name, run_dir
    return agent


def explain(
    agent: Agent,
    observations: np.ndarray | torch.Tensor,
    methods: str | Sequence[str],
    *,
    target: str | int = "action",
) -> dict[str, np.ndarray]:
    """Saliency maps of ``observations`` by each method, as the videos show them.

    Args:
        agent: from :func:`load` (an actor-critic or a DQN / QR-DQN agent).
        observations: (B, 4, 84, 84) uint8 stacks of frames, as the envs give them (one (4, 84, 84) stack is
            taken as a batch of one).
        methods: method names (``fls.saliency.registry.METHODS``: attention, gradcam, gradcam++, fullgrad,
            fullgrad++, gradient, smoothgrad, vargrad, integrated_gradients, perturbation, perturbation_critic,
            tree).
        target: ``"action"`` (the logit — for Q-learning agents the Q-value — of the greedy action),
            ``"value"`` (the critic's value; max Q) or an action index.

    Returns:
        ``{method: (B, 84, 84) float32 array}``, each map divided by its own maximum (values in [0, 1]).

    Raises:
        fls.FlsError: an unknown method or target, a method that cannot explain this agent.
    """
    import torch

    from fls.saliency.base import normalize_maps, resize_maps
    from fls.saliency.registry import get_method

    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise ConfigError("methods is empty: name at least one saliency method")
    batch = observations if isinstance(observations, torch.Tensor) else np.asarray(observations)
    if batch.ndim == 3:
        batch = batch[None]
    if tuple(batch.shape[1:]) != (4, 84, 84):
        raise ConfigError(f"observations of shape {tuple(batch.shape)}: expected (B, 4, 84, 84) stacks of frames")
    instances = {name: get_method(name) for name in names}  # unknown names refused before any computation
    out: dict[str, np.ndarray] = {}
    for name, method in instances.items():
        maps = method.raw(agent.policy, batch, target)
        if tuple(maps.shape[-2:]) != (84, 84):
            maps = resize_maps(maps, (84, 84))
        out[name] = normalize_maps(maps).float().cpu().numpy()
    return out


@dataclass
class EvalResult:
    """An evaluation: ``summary`` (summary.json's statistics: ``episodes``, ``mean``, ``std``, ``sem``, ``ci95``,
    ``median``, ``min``, ``max``, ``mean_length``, ``truncated``), the per-episode ``episodes`` records (ordered
    by index) and, when written, the folder ``out`` holding them."""

    summary: dict[str, Any]
    episodes: list[Episode] = field(default_factory=list)
    out: Path | None = None

    @property
    def mean(self) -> float:
        return float(self.summary["mean"])


def evaluate(
    agent: Agent,
    *,
    episodes: int,
    num_envs: int = 16,
    seed: int = DEFAULT_EVAL_SEED,
    deterministic: bool | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """Play ``episodes`` seeded games with evaluate.py's protocol and score them (unclipped game score).

    Episode i is game ``i // num_envs`` of env ``i % num_envs``, whose env is seeded ``seed + i % num_envs``: the
    same episodes whatever the machine, and the first N of a larger set.

    Args:
        agent: from :func:`load`.
        episodes: games to play (the paper: 8192).
        num_envs: games played side by side.
        seed: the first episode seed (evaluate.py's default 1000 never overlaps training's ``seed + i``).
        deterministic: greedy actions; None: the agent's own way (actor-critics sample, as the paper; DQN and
            QR-DQN play ε-greedy with the rate saved in the model).
        out: a folder to write ``episodes.jsonl``, ``summary.json``, ``summary.md`` and ``histogram.png`` into,
            exactly as ``evaluate.py eval.out=<out>``: records already there are continued, not played again.
            None: nothing is written.
        progress: show a progress bar.

    Raises:
        fls.FlsError: bad arguments, seeds the agent was trained on, records in ``out`` made with other settings.
        fls.errors.Interrupted: SIGINT/SIGTERM stopped it (the records finished so far are kept in ``out``).
    """
    from fls.evaluation.runner import acting_epsilon, run_episodes
    from fls.evaluation.summary import statistics

    for name, value, low in (("episodes", episodes, 1), ("num_envs", num_envs, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name}={value!r}: an integer >= {low}")
    if agent.game is None:
        raise ConfigError("the agent does not know its game: load it with fls.load(source, game=...)")
    greedy = bool(deterministic) if deterministic is not None else False
    if out is not None:
        return _evaluate_to_folder(agent, episodes, num_envs, seed, greedy, _path(out, "out"), progress)
    from fls.envs import get_game

    spec = get_game(agent.game)
    _check_seeds(agent, seed, num_envs)
    records = run_episodes(
        agent,
        spec,
        range(episodes),
        base_seed=seed,
        streams=num_envs,
        deterministic=greedy,
        epsilon=acting_epsilon(agent, greedy, None),
        max_episode_steps=spec.eval_max_episode_steps,
        progress=progress,
    )
    records = sorted(records, key=lambda e: e.index)
    return EvalResult(statistics(records), records)


def _check_seeds(agent: Agent, seed: int, num_envs: int) -> None:
    from fls.agents.loading import evaluation_config
    from fls.evaluation.episodes import check_seeds

    check_seeds(evaluation_config(**{"eval.seed": seed, "eval.num_envs": num_envs}), agent.run_dir)


def _evaluate_to_folder(
    agent: Agent, episodes: int, num_envs: int, seed: int, greedy: bool, out: Path, progress: bool
) -> EvalResult:
    from fls.agents.loading import evaluation_config
    from fls.evaluation.episodes import evaluate_episodes
    from fls.evaluation.records import records_path, scan_records

    source = {"run": str(agent.run_dir)} if _is_run_source(agent) else {"checkpoint": str(agent.path)}
    cfg = evaluation_config(
        **source,
        **{
            "env": {"name": agent.game},
            "device": str(agent.device),
            "eval.episodes": episodes,
            "eval.num_envs": num_envs,
            "eval.seed": seed,
            "eval.deterministic": greedy,
            "eval.out": str(out),
            "logger.wandb.mode": "disabled",
        },
    )
    stats = evaluate_episodes(cfg)
    scan = scan_records(records_path(out, 0, 1))
    records = sorted((e for e in scan.episodes if e.index < episodes), key=lambda e: e.index)
    return EvalResult(stats if stats is not None else {"episodes": len(records), "mean": math.nan}, records, out)


def _is_run_source(agent: Agent) -> bool:
    """Whether ``agent`` is its run directory's evaluated model (evaluate.py run=<dir> plays that file)."""
    if agent.run_dir is None:
        return False
    from fls.agents.agent import resolve_checkpoint

    try:
        return resolve_checkpoint(str(agent.run_dir), None)[0] == agent.path
    except ConfigError:
        return False


@dataclass
class Run:
    """A training run made by :func:`train`: its directory, final model and objective (what ``train.py``
    returns: the after-training evaluation's mean, else the mean return of the last 100 training games)."""

    dir: Path
    objective: float | None

    @property
    def final_model(self) -> Path:
        from fls.rundir import FINAL_MODEL

        return self.dir / FINAL_MODEL


def train(overrides: Sequence[str] | None = None, *, run_dir: str | Path | None = None) -> Run:
    """Train as ``python train.py <overrides>`` would, in this process.

    Args:
        overrides: command-line overrides, e.g. ``["model=sparse_fls", "env=Pong", "total_timesteps=100000"]``
            (``resume=<run dir>`` continues a run).
        run_dir: where the run goes (must not hold a run yet); None: ``outputs/<date>/<time>_<game>_<model>_seed<N>``
            under the current directory, as train.py.

    Raises:
        fls.FlsError: an unknown key or value (the same one-line message as train.py's), a taken run directory.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    from fls.cli import CONFIG_DIR, apply_aliases, check_override_values, register_resolvers
    from fls.config_schema import check_config
    from fls.rundir import make_dirs, new_directory
    from fls.training import main

    args = apply_aliases([str(a) for a in overrides or []], "train")
    if any(a.startswith("hydra.run.dir=") for a in args):
        raise ConfigError("give the run directory as run_dir=, not hydra.run.dir=")
    if any(a.lstrip("+").startswith("hydra") for a in args):
        raise ConfigError("fls.train takes the run's settings only (no hydra.* or hydra/ overrides: no sweeps)")
    check_override_values(args, "train")
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=args, return_hydra_config=True)
    check_config(cfg, "train")
    if run_dir is not None and str(run_dir).strip() == "":
        raise ConfigError("run_dir is empty: give a folder, or None for outputs/<date>/<time>_<game>_<model>_seed<N>")
    if cfg.resume or cfg.dry_run:
        directory = Path.cwd()
    elif run_dir is not None:
        directory = make_dirs(Path(run_dir).expanduser().resolve())
    else:
        directory = new_directory(str(cfg.hydra.run.dir))
    with read_write(cfg.hydra):
        cfg.hydra.run.dir = str(directory)
        cfg.hydra.runtime.output_dir = str(directory)
        cfg.hydra.overrides.task = args
    HydraConfig.instance().set_config(cfg)
    task_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    objective = main(task_cfg)
    final_dir = Path(str(task_cfg.resume)).expanduser().resolve() if task_cfg.resume else directory
    return Run(final_dir, objective)
