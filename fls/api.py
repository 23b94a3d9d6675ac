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

from fls.errors import ConfigError, FlsError

if TYPE_CHECKING:
    import torch

    from fls.agents.agent import Agent
    from fls.evaluation.records import Episode


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
    from fls.agents.agent import resolve_checkpoint
    from fls.agents.loading import load_checked

    path = _path(source, "source")
    if not path.exists():
        raise ConfigError(f"{path} does not exist (a run directory, a checkpoint .zip or an rl-zoo3 folder)")
    run, checkpoint = (str(path), None) if path.is_dir() else (None, str(path))
    checkpoint_file, run_dir = resolve_checkpoint(run, checkpoint, zoo_model)
    return load_checked(checkpoint_file, run_dir, game, device, allow_pickle, option="game").agent


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
    num_envs: int | None = None,
    seed: int | None = None,
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
        num_envs: games played side by side (None: evaluate.py's ``eval.num_envs``, 16).
        seed: the first episode seed (None: evaluate.py's ``eval.seed``, 1000, which never overlaps training's
            ``seed + i``).
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
    from fls.agents.loading import loaded, repeat_action_probability
    from fls.evaluation.episodes import check_seeds
    from fls.evaluation.runner import acting_epsilon, run_episodes
    from fls.evaluation.summary import statistics

    given = _given("eval", episodes=episodes, num_envs=num_envs, seed=seed, deterministic=deterministic, out=out)
    cfg = _task_config(agent, "disabled", **given)  # the command's defaults and checks, declared once
    source = loaded(agent)
    if out is not None:
        return _evaluate_to_folder(cfg, source, _path(out, "out"), progress)
    ev = cfg.eval
    check_seeds(cfg, agent.run_dir)
    records = run_episodes(
        agent,
        source.spec,
        range(int(ev.episodes)),
        base_seed=int(ev.seed),
        streams=int(ev.num_envs),
        num_threads=int(ev.num_threads),
        deterministic=bool(ev.deterministic),
        epsilon=acting_epsilon(agent, bool(ev.deterministic), ev.epsilon),
        max_episode_steps=int(ev.max_episode_steps or source.spec.eval_max_episode_steps),
        repeat_action_probability=repeat_action_probability(cfg, agent.run_dir),
        progress=progress,
    )
    records = sorted(records, key=lambda e: e.index)
    return EvalResult(statistics(records), records)


def _evaluate_to_folder(cfg: Any, source: Any, out: Path, progress: bool) -> EvalResult:
    from fls.evaluation.episodes import evaluate_episodes
    from fls.evaluation.records import records_path, scan_records

    stats = evaluate_episodes(cfg, source, progress=progress)
    episodes = int(cfg.eval.episodes)
    scan = scan_records(records_path(out, 0, 1))
    records = sorted((e for e in scan.episodes if e.index < episodes), key=lambda e: e.index)
    return EvalResult(stats if stats is not None else {"episodes": len(records), "mean": math.nan}, records, out)


def _task_config(agent: Agent, wandb: str, **settings: Any) -> Any:
    """evaluate.py's config for a task on ``agent`` (its source, game and device) with ``settings``, checked by the
    schema as the command line's is."""
    from fls.agents.loading import evaluation_config

    source = {"run": str(agent.run_dir)} if agent.run_dir is not None else {"checkpoint": str(agent.path)}
    return evaluation_config(
        **source,
        **{"env": {"name": agent.game}, "device": str(agent.device), "logger.wandb.mode": wandb},
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
    )


def _given(prefix: str, **values: Any) -> dict[str, Any]:
    """Dotted settings for the values given; None leaves the setting at its default, declared once with the
    command's settings (fls/config_schema.py: the same default as evaluate.py's). Paths as text, sequences as lists."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        return list(value) if isinstance(value, (tuple, list)) else value

    return {f"{prefix}.{k}": plain(v) for k, v in values.items() if v is not None}


def video(
    agent: Agent,
    methods: Sequence[str] | None = None,
    *,
    episodes: int | None = None,
    seed: int | None = None,
    max_steps: int | None = None,
    target: str | int | None = None,
    deterministic: bool | None = None,
    normalize: str | None = None,
    fps: int | None = None,
    format: str | None = None,
    objects: bool | None = None,
    out: str | Path | None = None,
    wandb: str = "disabled",
) -> Path:
    """Record a saliency video, as ``evaluate.py video=true``: seeded games with each method's map beside the frame.

    Args:
        agent: from :func:`load`.
        methods: saliency methods, one panel each (``tree`` draws the attention tree).
        episodes: games played (seeded from ``seed``).
        seed: seed of the first game and of the action sampler.
        max_steps: agent steps of the video at most.
        target: what the maps explain: ``"action"`` (the action taken), ``"value"`` or an action index.
        deterministic: greedy actions instead of sampled ones.
        normalize: ``"video"`` (one maximum per method over the video) or ``"frame"``.
        fps: frames per second.
        format: ``"mp4"`` or ``"gif"``.
        objects: outline the game objects (from the RAM) on every panel, labelled by category (games with an object
            decoder only: :func:`fls.objects.games_with_decoder`).
        out: the folder (None: ``<run>/videos/``, or beside the model file).
        wandb: ``"disabled"``, ``"offline"`` or ``"online"``.

    Returns:
        The video's path (named by what it shows; its settings are kept beside it in ``<name>.json``).
    """
    from fls.agents.loading import loaded
    from fls.tasks.video import saliency_video

    settings = _given(
        "saliency",
        methods=methods,
        episodes=episodes,
        seed=seed,
        max_steps=max_steps,
        target=target,
        deterministic=deterministic,
        normalize=normalize,
        fps=fps,
        format=format,
        objects=objects,
        out=out,
    )
    return saliency_video(_task_config(agent, wandb, **settings), loaded(agent))


def trees(
    agent: Agent,
    steps: Sequence[int] | None = None,
    *,
    n: int | None = None,
    depth: int | None = None,
    root: str | None = None,
    seed: int | None = None,
    target: str | int | None = None,
    out: str | Path | None = None,
    wandb: str = "disabled",
) -> list[Path]:
    """Attention trees at chosen steps of a seeded game, as ``evaluate.py task=tree``: PNG, 3-D HTML and JSON each.

    Args:
        agent: from :func:`load`.
        steps: agent steps of the game to explain.
        n: children per node (and roots).
        depth: layers below the roots (None: down to the input pixels).
        root: ``"relevance"`` (roots weighted by the target's relevance) or ``"attention"`` (by the attention).
        seed: the game's seed.
        target: what the trees explain: ``"action"``, ``"value"`` or an action index.
        out: the folder (None: ``<run>/trees/``).
        wandb: ``"disabled"``, ``"offline"`` or ``"online"``.

    Returns:
        The PNG files written.
    """
    from fls.agents.loading import loaded
    from fls.tasks.tree import attention_tree_task

    settings = _given("tree", steps=steps, n=n, depth=depth, root=root, out=out)
    settings |= _given("saliency", seed=seed, target=target)
    return attention_tree_task(_task_config(agent, wandb, **settings), loaded(agent))


def faithfulness(
    agent: Agent,
    methods: Sequence[str] | None = None,
    *,
    frames: int | None = None,
    baseline: str | None = None,
    percent_step: int | None = None,
    sanity: bool | None = None,
    sanity_frames: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    wandb: str = "disabled",
) -> Path:
    """Deletion / insertion curves of each method (beside a random and a centre-prior order) and cascading
    randomisation sanity checks, as ``evaluate.py task=faithfulness``.

    Args:
        agent: from :func:`load`.
        methods: the saliency methods to score.
        frames: network inputs drawn (seeded) from the evaluation games.
        baseline: what replaces pixels: ``"blur"`` or ``"mean"`` (the per-pixel mean of the other frames).
        percent_step: pixels removed per step, in % (must divide 100).
        sanity: run the cascading-randomisation sanity checks.
        sanity_frames: frames the sanity checks use (None: all).
        seed: frame draws, random order, tie breaking, randomised weights.
        out: the folder (None: ``<run>/eval/<model>/faithfulness/<methods>_<baseline>/``).
        wandb: ``"disabled"``, ``"offline"`` or ``"online"``.

    Returns:
        The folder holding the CSVs, markdown, figures and ``summary.json``.
    """
    from fls.agents.loading import loaded
    from fls.tasks.faithfulness import faithfulness_task

    settings = _given(
        "faithfulness",
        frames=frames,
        baseline=baseline,
        percent_step=percent_step,
        sanity=sanity,
        seed=seed,
        out=out,
    )
    settings |= _given("faithfulness", sanity_frames=sanity_frames) | _given("saliency", methods=methods)
    return faithfulness_task(_task_config(agent, wandb, **settings), loaded(agent))


def score_gaze(
    agent: Agent,
    data: str | Path,
    methods: Sequence[str] | None = None,
    *,
    max_frames: int | None = None,
    out: str | Path | None = None,
    wandb: str = "disabled",
) -> Path:
    """Agreement of each method's maps with Atari-HEAD human gaze (NSS, KL, CC, shuffled AUC) beside the baselines,
    as ``evaluate.py task=gaze``.

    Args:
        agent: from :func:`load`.
        data: the Atari-HEAD directory, as published.
        methods: the saliency methods to score.
        max_frames: network inputs per trial (None: all).
        out: the folder (None: ``<run>/gaze/<model>_<game>_<methods>/``).
        wandb: ``"disabled"``, ``"offline"`` or ``"online"``.

    Returns:
        The folder holding the tables and ``summary.json``.
    """
    from fls.agents.loading import loaded
    from fls.tasks.gaze import gaze_agreement

    settings = _given("gaze", data=Path(data), max_frames=max_frames, out=out)
    settings |= _given("saliency", methods=methods)
    return gaze_agreement(_task_config(agent, wandb, **settings), loaded(agent))


def score_objects(
    run_or_agent: Agent | str | Path,
    *,
    methods: Sequence[str] | None = None,
    seed: int | None = None,
    episodes: int | None = None,
    max_steps: int | None = None,
    tolerance: float | None = None,
    baseline_seed: int | None = None,
    target: str | int | None = None,
    deterministic: bool | None = None,
    out: str | Path | None = None,
    wandb: str = "disabled",
) -> Path:
    """How each method's maps point at the game's objects (read from RAM) in the video's seeded games, beside a
    random and a centre-prior map, as ``evaluate.py task=objects``; also ``fls.objects.score``.

    Args:
        run_or_agent: an agent from :func:`load`, or what :func:`load` takes (a run directory, a checkpoint).
        methods: the saliency methods to score.
        seed: seed of the first game and of the action sampler (the video's ``saliency.seed``).
        episodes: games played.
        max_steps: agent steps in all at most.
        tolerance: pixels a box grows on every side for the pointing game.
        baseline_seed: seed of the random-map baseline.
        target: what the maps explain: ``"action"`` (the action taken), ``"value"`` or an action index.
        deterministic: greedy actions instead of sampled ones.
        out: the folder (None: ``<run>/objects/<model>_<game>_seed<seed>_<episodes>ep_<methods>/``).
        wandb: ``"disabled"``, ``"offline"`` or ``"online"``.

    Returns:
        The folder holding ``objects.csv``, ``objects.md``, the two figures and ``summary.json``.

    Raises:
        fls.FlsError: a game without an object decoder (before anything is played), an unknown method, results of
            other settings in ``out``.
    """
    from fls.agents.agent import Agent as AgentClass
    from fls.agents.loading import loaded
    from fls.tasks.objects import objects_task

    agent = run_or_agent if isinstance(run_or_agent, AgentClass) else load(run_or_agent)
    settings = _given(
        "saliency",
        methods=methods,
        seed=seed,
        episodes=episodes,
        max_steps=max_steps,
        target=target,
        deterministic=deterministic,
    )
    settings |= _given("objects", tolerance=tolerance, seed=baseline_seed, out=out)
    return objects_task(_task_config(agent, wandb, **settings), loaded(agent))


def report_sweep(
    sweep: str | Path | Sequence[str | Path], *, out: str | Path | None = None, wandb: str = "disabled"
) -> Path:
    """Tables and figures of a sweep (reward curves, evaluated scores, gaze agreement), as ``evaluate.py
    task=report``.

    Args:
        sweep: a multirun directory, or a list of run directories.
        out: the folder (None: ``<sweep dir>/report/``).
        wandb: ``"disabled"``, ``"offline"`` or ``"online"``.

    Returns:
        The report's folder.
    """
    from fls.agents.loading import evaluation_config
    from fls.report.make import make_report

    runs = str(sweep) if isinstance(sweep, (str, Path)) else [str(s) for s in sweep]
    settings = {"task": "report", "sweep": runs, "logger.wandb.mode": wandb, **_given("report", out=out)}
    return make_report(evaluation_config(**settings))


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

    from fls.cli import CONFIG_DIR, apply_aliases, check_override_values, check_overrides, register_resolvers
    from fls.config_schema import check_config
    from fls.errors import os_error_message
    from fls.models.catalog import ALL_OPTIONS, COMMON_KEYS
    from fls.rundir import make_dirs, new_directory, remove_created_if_empty
    from fls.training import main

    args = apply_aliases([str(a) for a in overrides or []], "train")
    if any(a.startswith("hydra.run.dir=") for a in args):
        raise ConfigError("give the run directory as run_dir=, not hydra.run.dir=")
    if any(a.lstrip("+").startswith("hydra") for a in args):
        raise ConfigError("fls.train takes the run's settings only (no hydra.* or hydra/ overrides: no sweeps)")
    check_overrides(args, (*COMMON_KEYS, *ALL_OPTIONS))
    check_override_values(args, "train")
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=args, return_hydra_config=True)
    check_config(cfg, "train")
    if run_dir is not None and str(run_dir).strip() == "":
        raise ConfigError("run_dir is empty: give a folder, or None for outputs/<date>/<time>_<game>_<model>_seed<N>")
    try:
        if cfg.resume or cfg.dry_run:
            directory = Path.cwd()
        elif run_dir is not None:
            directory = make_dirs(Path(run_dir).expanduser().resolve())
        else:
            directory = new_directory(str(cfg.hydra.run.dir))
    except OSError as error:
        raise ConfigError(os_error_message(error, "train")) from None
    with read_write(cfg.hydra):
        cfg.hydra.run.dir = str(directory)
        cfg.hydra.runtime.output_dir = str(directory)
        cfg.hydra.overrides.task = args
    HydraConfig.instance().set_config(cfg)
    task_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    try:
        objective = main(task_cfg)
    except FlsError:
        remove_created_if_empty()  # a refused run leaves no empty folder behind (the commands do this at exit)
        raise
    final_dir = Path(str(task_cfg.resume)).expanduser().resolve() if task_cfg.resume else directory
    return Run(final_dir, objective)
