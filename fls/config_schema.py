"""Schemas of train.py's and evaluate.py's configs: each key's type, accepted values and one line of help.

Hydra composes plain YAML (configs/), so a mistyped value would otherwise reach the code as a string (or a
``nan``) and end in a traceback, or worse, run: ``eval.deterministic=no`` used to play greedily. The dataclasses
below describe every key; :func:`check_config` walks a composed config against them and raises one
:class:`~fls.errors.ConfigError` ``<key>=<value>: <what is accepted>`` for the first bad value. The CLI runs it on
the command-line values before Hydra composes anything and on the composed config before the run folder is made
(fls/cli.py). The same field metadata writes the key lines of ``--help``, so the help stays true.

Checked here: types, ranges, enumerations, non-finite numbers and ``null`` where the config does not allow it.
Checks that need several keys stay with the code that knows them: :func:`check_config` also runs the model
registry's (an option that does not apply to the chosen model) and :func:`check_shards` (evaluation's shards), and
evaluation's seed overlap with training stays in fls/evaluation/episodes.py (it needs the run). A multirun runs
:func:`check_config` on every combination of its sweep before the first job (fls/cli.py).
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING as MISSING_DEFAULT
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from fls.envs.games import GAMES
from fls.errors import ConfigError
from fls.models.catalog import ATTENTION_PLACES, CATALOG, check_model_config

# Choices defined by code that is too heavy to import before every command (fls.saliency pulls in captum) or
# that lives in modules importing this one; tests/test_config_schema.py checks they match their sources.
SALIENCY_METHODS = (
    "attention",
    "gradcam",
    "gradcam++",
    "fullgrad",
    "fullgrad++",
    "gradient",
    "smoothgrad",
    "vargrad",
    "integrated_gradients",
    "perturbation",
    "perturbation_critic",
    "tree",
)
# evaluate.py's tasks and what each does (--help lists them).
TASKS = {
    "episodes": "play eval.episodes games and score them (sharded with eval.shard/eval.num_shards, resumable)",
    "merge": "combine the shard files of one evaluation into one summary",
    "video": "a saliency video of saliency.episodes games (saliency.*)",
    "gaze": "agreement of the saliency maps with Atari-HEAD human gaze (gaze.*, saliency.*)",
    "report": "tables and curves of a whole sweep (sweep=<multirun dir>, report.*)",
    "faithfulness": "deletion/insertion curves and randomisation sanity checks of the saliency methods "
    "(faithfulness.*, saliency.*)",
    "tree": "attention trees of chosen steps of a seeded game, as PNG and 3-D HTML (tree.*, saliency.*)",
    "objects": "how the saliency maps of the video's seeded games point at the game objects read from RAM "
    "(objects.*, saliency.*)",
}
FAITHFULNESS_BASELINES = ("blur", "mean")
TREE_ROOTS = ("relevance", "attention")  # fls.saliency.tree.ROOTS
WANDB_MODES = ("offline", "online", "disabled")
SCHEDULES = ("linear", "constant")
VALUE_LOSSES = ("baselines", "sb3")
VIDEO_FORMATS = ("mp4", "gif")
VIDEO_NORMALIZE = ("video", "frame")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
MAX_SEED = 2**31 - 1  # ALE and numpy take 32-bit seeds; env i gets seed + i


@dataclass(frozen=True)
class Rule:
    """What a key accepts beyond its type, and its help line."""

    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None
    test: Callable[[Any], bool] | None = None  # an extra condition on a value of the right type
    accepted: str | None = None  # replaces the generated description of what is accepted
    main: bool = False  # listed by --help (the most used keys)
    path: bool = False  # a file or folder: an empty value (an unset shell variable) would mean the current folder


CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # the presets, shipped inside the package (wheels too)
REQUIRED = "???"  # OmegaConf's MISSING: a value a preset (config group choice) must give


def key(doc: str, default: Any = REQUIRED, *, main: bool = False, **rule: Any) -> Any:
    """A schema field: its default, its help line and what it accepts (see :class:`Rule`). The default is the
    setting's one home: the composed config starts from these (:func:`defaults_of`), and presets (configs/model,
    env, ppo, experiment) override them. A dataclass default is a group of keys; a list default is copied."""
    metadata = {"rule": Rule(doc, main=main, **rule)}
    if is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata=metadata)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# ----------------------------------------------------------------------------------------------------------------
# Config groups


@dataclass
class ModelConfig:
    """configs/model/*.yaml: the feature extractor and its options (null: the option does not apply)."""

    name: str = key("the feature extractor (model=<name> picks its config)", choices=tuple(CATALOG))
    entropy_lambda: float = key(
        "weight of the attention-entropy regulariser (models with attention)", 0.0, ge=0, main=True
    )
    # Every option is unset here; each model's preset lists the options that apply to it, and setting one that
    # does not apply to the chosen model is an error naming that model's options.
    sum_pool: bool | None = key(
        "sparse_fls, dense_fls: sum attended features over positions instead of flattening", None
    )
    normalize_attention: bool | None = key(
        "sparse_fls, dense_fls: divide the attention by its sum over positions", None
    )
    fls_kernel: int | None = key("sparse_fls, dense_fls: kernel of the FLS convs", None, choices=(3, 1))
    softplus_base2: bool | None = key("sparse_fls, dense_fls: base-2 softplus", None)
    final_relu: bool | None = key("sparse_fls, dense_fls: ReLU after the last trunk conv", None)
    attention_at: str | None = key("sparse_fls: where the attention sits", None, choices=ATTENTION_PLACES)
    pad_input: bool | None = key("rs: zero-pad the input by 1 px", None)
    channels: list[int] | None = key("maxpool_cnn: conv widths, e.g. [32,32,64,64]", None, ge=1)
    kernel_size: int | None = key(
        "maxpool_cnn: conv kernel", None, test=lambda v: v >= 1 and v % 2 == 1, accepted="a positive odd integer"
    )


@dataclass
class EnvConfig:
    """configs/env/*.yaml: the game (with the OpenAI-baselines Atari protocol) and how many envs step together."""

    name: str = key("the game (env=<game> picks its config)", choices=tuple(sorted(GAMES)))
    num_envs: int = key("envs stepped together (training)", 8, ge=1, main=True)
    num_threads: int = key("C++ threads stepping the training envs; 0: min(num_envs, cores)", 0, ge=0)
    repeat_action_probability: float = key(
        "sticky actions: chance ALE repeats the previous action at each frame (0: the paper; Machado et al.: 0.25)",
        0.0,
        ge=0,
        le=1,
    )


@dataclass
class PPOConfig:
    """configs/ppo/*.yaml: PPO's hyperparameters."""

    name: str = key("the preset's name (ppo=<name> picks it)")
    n_steps: int = key("steps per env per update", ge=1, main=True)
    batch_size: int = key("minibatch size", ge=1)
    n_epochs: int = key("passes over each rollout", ge=1)
    learning_rate: float = key("Adam step size (initial, with lr_schedule=linear)", gt=0, main=True)
    lr_schedule: str = key("linear: decays to 0 over total_timesteps", choices=SCHEDULES)
    clip_range: float = key("PPO's policy clip (initial, with clip_schedule=linear)", gt=0, main=True)
    clip_schedule: str = key("linear: decays to 0 over total_timesteps", choices=SCHEDULES)
    clip_range_vf: float | None = key("value clip; null disables value clipping", gt=0)
    value_loss: str = key("baselines: 0.5*max((v-R)^2,(v_clip-R)^2) | sb3: (v_clip-R)^2", choices=VALUE_LOSSES)
    ent_coef: float = key("policy-entropy bonus", ge=0)
    vf_coef: float = key("value-loss weight", ge=0)
    max_grad_norm: float = key("gradient-norm clip", gt=0)
    gamma: float = key("discount", ge=0, le=1)
    gae_lambda: float = key("GAE's lambda", ge=0, le=1)
    normalize_advantage: bool = key("normalise advantages per minibatch")
    compile: bool = key(
        "torch.compile the policy's forward and the PPO loss (compiled at the first rollout; same losses as eager)",
        False,
    )


@dataclass
class WandbConfig:
    """Weights & Biases logging."""

    mode: str = key("offline: no account, no network", "offline", choices=WANDB_MODES, main=True)
    project: str = key("W&B project", "fls")
    entity: str | None = key("W&B entity (null: your default)", None)
    group: str | None = key("null: the multirun sweep's directory name", None)
    tags: list[str] = key("extra tags (model, env, lambda and seed are always added)", [])


@dataclass
class LoggerConfig:
    """Where training logs go (progress.csv is always written)."""

    log_interval: int = key("PPO updates between log rows", 1, ge=1)
    tensorboard: bool = key("write TensorBoard events into the run directory", True)
    wandb: WandbConfig = key("Weights & Biases", WandbConfig)


@dataclass
class AfterTrainingConfig:
    """What train.py does once the budget is reached."""

    eval_episodes: int = key(
        "> 0: evaluate the final model on this many episodes (evaluate.py's protocol)", 0, ge=0, main=True
    )
    eval_num_envs: int = key("envs of that evaluation (evaluate.py's eval.num_envs: its records continue)", 16, ge=1)
    eval_seed: int | None = key(
        "first episode seed of that evaluation; null: evaluate.py's eval.seed (records in eval/final_model/), another"
        " value keeps its records apart (eval/final_model_seed<N>/)",
        None,
        ge=0,
        le=MAX_SEED,
    )
    video: bool = key("record a saliency video of one game (evaluate.py video=true)", False, main=True)
    video_methods: list[str] = key(
        "saliency methods of that video (cheap ones: perturbation costs 326 forward passes a frame)",
        ["attention", "gradcam", "fullgrad++"],
        choices=SALIENCY_METHODS,
    )
    video_steps: int = key("agent steps of that video at most", 1000, ge=1)
    video_objects: bool | None = key(
        "outline the game objects in that video (saliency.objects); null: saliency.objects's default", None
    )


def _is_device(value: str) -> bool:
    return DEVICE_PATTERN.fullmatch(value) is not None


DEVICE_RULE = {"test": _is_device, "accepted": "auto, cpu, cuda or cuda:N"}


@dataclass
class TrainConfig:
    """python train.py: the composed config (configs/train.yaml)."""

    model: ModelConfig = key("the feature extractor", ModelConfig)
    env: EnvConfig = key("the game", EnvConfig)
    ppo: PPOConfig = key("PPO's hyperparameters", PPOConfig)
    logger: LoggerConfig = key("logging", LoggerConfig)
    seed: int = key("env i gets seed + i; also seeds torch and numpy", 1, ge=0, le=MAX_SEED, main=True)
    device: str = key("auto: CUDA when present", "auto", main=True, **DEVICE_RULE)
    dry_run: bool = key("build the policy, print it and its parameter count, exit", False, main=True)
    total_timesteps: int = key("agent steps (4 frames each), summed over envs", 50_000_000, ge=1, main=True)
    checkpoint_every: int = key(
        "agent steps between checkpoints (plus one at the end and on SIGINT/SIGTERM)", 1_000_000, ge=1, main=True
    )
    resume: str | None = key("a run directory: continue it from its newest checkpoint", None, main=True, path=True)
    after_training: AfterTrainingConfig = key(
        "evaluation and video after training (also by every job of a multirun)", AfterTrainingConfig
    )
    allow_pickle: bool = key("resume=: let the checkpoint unpickle objects (runs code: trusted files only)", False)


# ----------------------------------------------------------------------------------------------------------------
# evaluate.py


@dataclass
class EvalConfig:
    """task=episodes: the evaluation protocol."""

    episodes: int = key("games to play (the paper: 16 envs x 512)", 8192, ge=1, main=True)
    num_envs: int = key("games played side by side", 16, ge=1, main=True)
    num_threads: int = key("C++ threads stepping the games; 0: min(num_envs, cores)", 0, ge=0)
    deterministic: bool = key("greedy actions (the paper samples from the policy)", False, main=True)
    epsilon: float | None = key("epsilon of DQN / QR-DQN; null: the rate saved in the model", None, ge=0, le=1)
    seed: int = key("episode i is played from seed + i", 1000, ge=0, le=MAX_SEED)
    max_episode_steps: int | None = key("agent steps per game; null: the game's default", None, ge=1)
    repeat_action_probability: float | None = key(
        "sticky actions of every task that plays (episodes, video, tree, faithfulness); null: the run's training "
        "value (0 for models from outside fls)",
        None,
        ge=0,
        le=1,
    )
    shard: int = key("which shard this process plays (0-based)", 0, ge=0, main=True)
    num_shards: int = key("processes splitting the episodes", 1, ge=1, main=True)
    out: str | None = key("null: <run>/eval/<checkpoint name>/", None, main=True, path=True)
    histogram_bins: int = key("bins of the score histogram", 50, ge=1)


def _is_target(value: Any) -> bool:
    return value in ("action", "value") if isinstance(value, str) else value >= 0


@dataclass
class SaliencyConfig:
    """task=video and task=gaze: the saliency maps."""

    methods: list[str] = key(
        "saliency methods (saliency=[a,b] for short)",
        ["attention", "gradcam", "fullgrad++", "perturbation"],
        choices=SALIENCY_METHODS,
        main=True,
    )
    target: str | int = key(
        "what the maps explain", "action", test=_is_target, accepted="action, value or an action index >= 0", main=True
    )
    layer: str | None = key("gradcam/gradcam++ layer (a module name); null: the trunk's last conv", None)
    gradcam_rectified: bool = key("gradcam/gradcam++ read the layer's output after its ReLU (default: before)", False)
    episodes: int = key("games per video", 1, ge=1)
    seed: int = key("video game i is played from seed + i", 2000, ge=0, le=MAX_SEED)
    max_steps: int = key("agent steps per video at most", 3000, ge=1, main=True)
    deterministic: bool = key("greedy actions", False)
    normalize: str = key("video: one max per method over the whole video | frame", "video", choices=VIDEO_NORMALIZE)
    input_panel: bool = key("add a panel with the network's input", True)
    frames: bool = key("also write every frame as a PNG", False)
    objects: bool = key(
        "video: outline the game objects (read from the RAM) on every panel, labelled by category; games with an"
        " object decoder only",
        False,
    )
    fps: int = key("frames per second of the video", 30, ge=1)
    format: str = key("video container", "mp4", choices=VIDEO_FORMATS, main=True)
    out: str | None = key("null: <run>/videos/", None, path=True)


@dataclass
class GazeConfig:
    """task=gaze: Atari-HEAD human-gaze agreement."""

    data: str | None = key("the Atari-HEAD directory", None, main=True, path=True)
    game: str | None = key("null: the run's game", None, choices=tuple(sorted(GAMES)))
    max_frames: int | None = key("network inputs per trial (null: all)", None, ge=1)
    batch_size: int = key("frames per forward pass", 64, ge=1)
    splits: int = key("shuffled-AUC splits", 100, ge=1)
    other_frames: int = key("frames whose fixations give shuffled-AUC negatives", 10, ge=1)
    seed: int = key("seed of the shuffled-AUC sampling", 0, ge=0, le=MAX_SEED)
    kl_eps: float = key("KL's epsilon (0: exact KL, frames with Q=0 under P>0 dropped)", 0.0, ge=0)
    out: str | None = key("null: <run>/gaze/<checkpoint>_<game>_<methods>/", None, path=True)


@dataclass
class ReportConfig:
    """task=report: a sweep's tables and curves."""

    out: str | None = key("null: <sweep dir>/report/", None, main=True, path=True)
    checkpoint: str | None = key(
        "the evaluation to tabulate; null: final_model, else the newest checkpoint", None, path=True
    )
    curve: str = key("progress.csv column plotted against time/total_timesteps", "rollout/ep_rew_mean")
    grid_points: int = key("common step grid on which seeds are averaged", 200, ge=2)
    std_ddof: int = key("std across seeds: 0 population | 1 sample", 0, choices=(0, 1))


def _is_zoo_model(value: Any) -> bool:
    return value in ("final", "best") if isinstance(value, str) else value >= 0


@dataclass
class ZooConfig:
    """checkpoint=<rl-zoo3 experiment folder>: which of its models."""

    model: str | int = key(
        "final (<EnvId>.zip) | best (best_model.zip) | N (rl_model_<N>_steps.zip)",
        "final",
        test=_is_zoo_model,
        accepted="final, best or a step count >= 0",
    )


@dataclass
class TreeConfig:
    """task=tree: attention trees."""

    n: int = key("children per node (and roots)", 3, ge=1, main=True)
    depth: int | None = key("layers below the roots; null: down to the input pixels", None, ge=0)
    min_separation: int = key("sibling peaks at least this many cells of their layer apart", 2, ge=0)
    root: str = key(
        "models with attention: roots at attention peaks weighted by the explained target's relevance | by the "
        "attention alone (the same tree for every action)",
        "relevance",
        choices=TREE_ROOTS,
    )
    steps: list[int] = key("agent steps of each game to explain", [100, 200], ge=0, main=True)
    out: str | None = key("null: <run>/trees/", None, path=True)


@dataclass
class FaithfulnessConfig:
    """task=faithfulness: deletion / insertion curves and sanity checks."""

    frames: int = key("network inputs drawn (seeded) from the evaluation games", 256, ge=1, main=True)
    games: int | None = key("first game of this many evaluation streams; null: eval.num_envs", None, ge=1)
    max_steps: int | None = key("stop the games after this many inputs in all (null: to the end)", None, ge=1)
    percent_step: int = key(
        "pixels removed per step, % (must divide 100)",
        5,
        ge=1,
        le=100,
        test=lambda v: 100 % v == 0,
        accepted="an integer that divides 100 (1, 2, 4, 5, 10, 20, 25, 50 or 100)",
    )
    baseline: str = key("what replaces pixels", "blur", choices=FAITHFULNESS_BASELINES)
    blur_sigma: float = key("Gaussian blur sigma of the blur baseline", 3.0, gt=0)
    batch_size: int = key("perturbed stacks per forward pass", 256, ge=1)
    map_batch_size: int = key("frames per saliency-method call", 32, ge=1)
    sanity: bool = key("cascading-randomisation sanity checks", True)
    sanity_frames: int | None = key("frames used by the sanity checks (null: all)", 64, ge=1)
    seed: int = key("frame draws, random order, tie breaking, randomised weights", 0, ge=0, le=MAX_SEED)
    out: str | None = key("null: <run>/eval/<checkpoint name>/faithfulness/<methods>_<baseline>/", None, path=True)


@dataclass
class ObjectsConfig:
    """task=objects: saliency maps against the game objects read from RAM (the games: saliency.seed/episodes/
    max_steps)."""

    tolerance: float = key(
        "pointing game: pixels a box grows on every side (Zhang et al.'s 15 px on 224-px images is 11-14 px on "
        "Atari's frame; 8 px: 3-4 cells of the 84x84 map)",
        8.0,
        ge=0,
        main=True,
    )
    seed: int = key("seed of the random-map baseline", 0, ge=0, le=MAX_SEED)
    out: str | None = key(
        "null: <run>/objects/<checkpoint>_<game>_seed<seed>_<episodes>ep_<methods>/", None, main=True, path=True
    )


@dataclass
class EvalWandbConfig:
    """Weights & Biases logging of evaluate.py's results."""

    mode: str = key("offline: no account, no network", "offline", choices=WANDB_MODES, main=True)
    project: str = key("W&B project", "fls")


@dataclass
class EvalLoggerConfig:
    """Where evaluate.py logs."""

    wandb: EvalWandbConfig = key("Weights & Biases", EvalWandbConfig)


@dataclass
class EvaluateConfig:
    """python evaluate.py: the composed config (configs/evaluate.yaml)."""

    task: str = key("what to do", "episodes", choices=tuple(TASKS), main=True)
    run: str | None = key("a run directory (its final model, else its newest checkpoint)", None, main=True, path=True)
    checkpoint: str | None = key("or a model file: an fls checkpoint or an SB3 Atari zip", None, main=True, path=True)
    sweep: str | list[str] | None = key(
        "task=report: a multirun directory or a list of run directories", None, main=True, path=True
    )
    device: str = key("auto: CUDA when present", "auto", main=True, **DEVICE_RULE)
    env: EnvConfig | None = key("the game; needed only for checkpoint=<zip> from outside fls", None)
    eval: EvalConfig = key("task=episodes", EvalConfig)
    saliency: SaliencyConfig = key("task=video, task=gaze", SaliencyConfig)
    gaze: GazeConfig = key("task=gaze", GazeConfig)
    report: ReportConfig = key("task=report", ReportConfig)
    zoo: ZooConfig = key("rl-zoo3 experiment folders", ZooConfig)
    tree: TreeConfig = key("task=tree", TreeConfig)
    faithfulness: FaithfulnessConfig = key("task=faithfulness", FaithfulnessConfig)
    objects: ObjectsConfig = key("task=objects", ObjectsConfig)
    allow_pickle: bool = key("let model files unpickle objects (runs code: trusted files only)", False)
    logger: EvalLoggerConfig = key("logging", EvalLoggerConfig)


SCHEMAS: dict[str, type] = {"train": TrainConfig, "evaluate": EvaluateConfig}


def defaults_of(schema: type) -> dict[str, Any]:
    """Every key's default, nested as the config is (``"???"``: a preset must give it)."""
    values: dict[str, Any] = {}
    for f in fields(schema):
        value = getattr(schema(), f.name) if f.default is MISSING_DEFAULT else f.default
        values[f.name] = defaults_of(type(value)) if is_dataclass(value) else value
    return values


def default_config(config_name: str) -> Any:
    """A command's defaults as an OmegaConf config (no preset applied: group keys a preset gives are ``???``)."""
    from omegaconf import OmegaConf

    return OmegaConf.create(defaults_of(schema_of(config_name)))


def model_defaults(name: str) -> dict[str, Any]:
    """A model's config as train.py composes it: every option's default, then the model's preset
    (configs/model/<name>.yaml)."""
    from omegaconf import OmegaConf

    merged = OmegaConf.create(defaults_of(ModelConfig))
    preset = CONFIG_DIR / "model" / f"{name}.yaml"
    if preset.is_file():
        merged = OmegaConf.merge(merged, OmegaConf.load(preset))
    merged.name = name
    return OmegaConf.to_container(merged, resolve=True)


def register_defaults() -> None:
    """Store each command's defaults in Hydra's ConfigStore as ``<command>_defaults``, the first entry of
    configs/<command>.yaml's defaults list: the YAML files hold only presets that are real choices."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_defaults", node=defaults_of(schema))


# ----------------------------------------------------------------------------------------------------------------
# Checking


def _rule(f: Any) -> Rule:
    return f.metadata["rule"]


def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _union_args(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _nullable(tp: Any) -> bool:
    return type(None) in _union_args(tp)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else str(value)


def _range(rule: Rule) -> str:
    parts = []
    if rule.gt is not None:
        parts.append(f"> {_number(rule.gt)}")
    if rule.ge is not None:
        parts.append(f">= {_number(rule.ge)}")
    if rule.le is not None:
        parts.append(f"<= {_number(rule.le)}")
    return " and ".join(parts)


def _one(tp: Any, rule: Rule) -> str:
    """What one (non-null) value of type ``tp`` may be."""
    if rule.choices is not None and typing.get_origin(tp) is not list:
        return "one of " + ", ".join(show(c) for c in rule.choices)
    if tp is bool:
        return "true or false (a YAML/Hydra boolean)"
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return "a list, each item " + _one(item, rule)
    if is_dataclass(tp):
        return "a group of keys: " + ", ".join(f.name for f in fields(tp))
    if tp is str and rule.path:
        return "a path (not empty)"
    kind = {int: "an integer", float: "a finite number", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))
    limits = _range(rule)
    return f"{kind} {limits}" if limits else kind


def accepted(tp: Any, rule: Rule) -> str:
    """What a key of type ``tp`` with ``rule`` accepts, in words (the second half of its error line)."""
    options = [t for t in _union_args(tp) if t is not type(None)]
    if rule.accepted is not None:
        text = rule.accepted
    else:
        text = " or ".join(_one(t, rule) for t in options)
    return f"{text}, or null" if _nullable(tp) else text


def show(value: Any) -> str:
    """A value as it would be written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{show(v)}" for k, v in value.items()) + "}"
    return str(value)


def abbreviate(text: str, limit: int = 40) -> str:
    """``text``, or its start and length when longer than ``limit`` (an error line stays readable)."""
    return text if len(text) <= limit else f"{text[:20]}... ({len(text)} characters)"


def _fits(value: Any, tp: Any, rule: Rule) -> bool:
    """Whether a non-null ``value`` is of type ``tp`` and satisfies ``rule`` (lists: every item)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, t, rule) for t in typing.get_args(tp) if t is not type(None))
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, (list, tuple)) and all(v is not None and _fits(v, item, rule) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    elif tp is str:
        # Paths and names typed as bare numbers (run=123) reach the code as ints; str() of them is the name.
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    else:
        return False
    if not ok:
        return False
    if tp is str:
        value = str(value)
        if rule.path and not value.strip():
            return False
    if rule.choices is not None and (value not in rule.choices or isinstance(value, bool)):
        return False
    if tp is not str and not _in_range(value, rule):
        return False
    return rule.test is None or rule.test(value)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _in_range(value: float, rule: Rule) -> bool:
    return not (
        (rule.gt is not None and not value > rule.gt)
        or (rule.ge is not None and not value >= rule.ge)
        or (rule.le is not None and not value <= rule.le)
    )


def check_value(name: str, value: Any, tp: Any, rule: Rule) -> None:
    """Raise ConfigError ``<name>=<value>: <accepted>`` unless ``value`` fits the key (groups: every key in it)."""
    if value is None:
        if _nullable(tp):
            return
        raise ConfigError(f"{name}=null: {accepted(tp, rule)}")
    node = next((t for t in _union_args(tp) if is_dataclass(t)), None)
    if node is not None:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}={show(value)}: {accepted(tp, rule)}")
        check_node(value, node, f"{name}.")
        return
    if not _fits(value, tp, rule):
        hint = ""
        if tp is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            hint = f" (write {int(value)}, without a decimal point or exponent)"
        raise ConfigError(f"{name}={abbreviate(show(value))}: {accepted(tp, rule)}{hint}")


def check_node(data: Mapping[str, Any], schema: type, prefix: str = "") -> None:
    """Check every key of ``data`` that ``schema`` describes; keys it does not describe are left alone (Hydra
    already refuses unknown keys from the command line; tests check that the schemas cover configs/)."""
    hints = _hints(schema)
    for f in fields(schema):
        if f.name in data:
            check_value(prefix + f.name, data[f.name], hints[f.name], _rule(f))


def schema_of(config_name: str) -> type:
    """The schema of configs/<config_name>.yaml."""
    return SCHEMAS[config_name]


def check_config(cfg: Mapping[str, Any], config_name: str) -> None:
    """Check a composed config (a DictConfig or a plain dict, without Hydra's own ``hydra`` node).

    Raises ConfigError ``<key>=<value>: <what is accepted>`` for the first key whose value does not fit.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        data = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in _items(cfg)}
    else:
        data = dict(cfg)
    data.pop("hydra", None)
    check_node(data, schema_of(config_name))
    if config_name == "train" and isinstance(data.get("model"), Mapping):
        check_model_config(data["model"])  # options that do not apply to the model, contradicting options
    ev = data.get("eval")
    if config_name == "evaluate" and data.get("task") == "episodes" and isinstance(ev, Mapping):
        check_shards(ev.get("shard", 0), ev.get("num_shards", 1), ev.get("num_envs", 1))


def check_shards(shard: int, num_shards: int, num_envs: int) -> None:
    """eval.shard against eval.num_shards, and eval.num_shards against eval.num_envs (shards split the envs)."""
    if num_shards < 1:
        raise ConfigError(f"eval.num_shards={num_shards}: an integer >= 1")
    if not 0 <= shard < num_shards:
        raise ConfigError(
            f"eval.shard={shard} is out of range for eval.num_shards={num_shards} (valid: 0..{num_shards - 1})"
        )
    if num_shards > num_envs:
        raise ConfigError(f"eval.num_shards={num_shards} exceeds eval.num_envs={num_envs}: shards split the envs")


def _items(cfg: Any) -> Iterator[tuple[str, Any]]:
    for k in cfg:
        if k != "hydra":
            yield str(k), cfg[k]


def lookup(config_name: str, dotted: str) -> tuple[Any, Rule] | None:
    """The type and rule of a dotted key (``ppo.learning_rate``), or None when the schema has no such key."""
    schema: Any = schema_of(config_name)
    tp: Any = None
    rule: Rule | None = None
    for part in dotted.split("."):
        node = next((t for t in _union_args(tp) if is_dataclass(t)), None) if tp is not None else schema
        if node is None:
            return None
        match = next((f for f in fields(node) if f.name == part), None)
        if match is None:
            return None
        tp, rule = _hints(node)[part], _rule(match)
    assert rule is not None
    return tp, rule


def node_keys(config_name: str, dotted: str) -> list[str] | None:
    """The keys of the group at ``dotted`` ("" for the top level), or None when it is not a group."""
    if not dotted:
        return [f.name for f in fields(schema_of(config_name))]
    found = lookup(config_name, dotted)
    if found is None:
        return None
    node = next((t for t in _union_args(found[0]) if is_dataclass(t)), None)
    return None if node is None else [f.name for f in fields(node)]


def leaf_keys(config_name: str) -> Iterator[tuple[str, Any, Rule]]:
    """Every key that holds a value (not a group), dotted, with its type and rule, in schema order."""

    def walk(schema: type, prefix: str) -> Iterator[tuple[str, Any, Rule]]:
        hints = _hints(schema)
        for f in fields(schema):
            node = next((t for t in _union_args(hints[f.name]) if is_dataclass(t)), None)
            if node is not None:
                yield from walk(node, f"{prefix}{f.name}.")
            else:
                yield prefix + f.name, hints[f.name], _rule(f)

    yield from walk(schema_of(config_name), "")
