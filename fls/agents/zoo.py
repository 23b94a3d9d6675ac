"""rl-zoo3 experiment folders: which model file, which game, and whether fls can replay the agent's setting.

``python -m rl_zoo3.train --algo <algo> --env <EnvId>`` writes ``logs/<algo>/<EnvId>_<n>/`` holding
``<EnvId>.zip`` (the final model), ``best_model.zip`` (with evaluation), ``rl_model_<N>_steps.zip`` (checkpoints)
and ``<EnvId>/config.yml`` (the hyperparameters), ``<EnvId>/args.yml`` (the command line) and, with VecNormalize,
``<EnvId>/vecnormalize.pkl``. Both YAML files are ``yaml.dump`` of an ``OrderedDict``, so they carry python tags;
:class:`ZooYamlLoader` is a ``yaml.SafeLoader`` that builds those few tags as plain data (it never imports or calls
anything), instead of the unsafe loader rl-zoo3 itself would need.

fls replays the Atari stack of ``<Game>NoFrameskip-v4`` + SB3's ``AtariWrapper`` with its defaults + 4 stacked
frames (REFERENCE.md §1). Any other setting (another frame stack, VecNormalize, another wrapper or wrapper option,
env kwargs, a non-Atari env) would evaluate the agent on inputs it was not trained on, so it is refused with the
reason instead of giving a score that looks right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fls.envs.games import GAMES
from fls.errors import ConfigError

ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
VEC_FRAME_STACK = "stable_baselines3.common.vec_env.VecFrameStack"
# AtariWrapper options and the values fls reproduces (clip_reward only changes the learner's reward: any value).
ATARI_WRAPPER_DEFAULTS: dict[str, Any] = {
    "noop_max": 30,
    "frame_skip": 4,
    "screen_size": 84,
    "terminal_on_life_loss": True,
    "action_repeat_probability": 0.0,
}
ANY_VALUE = ("clip_reward",)
# env_kwargs of the NoFrameskip-v4 envs that are harmless at their default values.
ENV_KWARGS_DEFAULTS: dict[str, Any] = {"full_action_space": False, "repeat_action_probability": 0.0, "frameskip": 1}
MODEL_CHOICES = "final, best or a checkpoint step N"
_CHECKPOINT_RE = re.compile(r"^rl_model_(\d+)_steps\.zip$")
_ENV_ID_RE = re.compile(r"^([A-Za-z]+)NoFrameskip-v4$")


@dataclass(frozen=True)
class PythonTag:
    """A python tag the loader does not build (kept as its tag and plain value; never imported or called)."""

    tag: str
    value: Any


class ZooYamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads what rl-zoo3 dumps: ``OrderedDict`` (as a dict) and tuples; other python tags
    become :class:`PythonTag` placeholders, so an unexpected tag is reported, not executed."""


def _ordered_dict(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    # yaml.dump of an OrderedDict: !!python/object/apply:collections.OrderedDict [[[key, value], ...]]
    args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else []
    pairs = args[0] if args else []
    if not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs):
        raise yaml.constructor.ConstructorError(None, None, "malformed OrderedDict", node.start_mark)
    return {key: value for key, value in pairs}


def _tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


def _placeholder(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> PythonTag:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return PythonTag(f"python/{suffix}", value)


ZooYamlLoader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _ordered_dict)
ZooYamlLoader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)
ZooYamlLoader.add_multi_constructor("tag:yaml.org,2002:python/", _placeholder)


def read_zoo_yaml(path: Path) -> dict[str, Any]:
    """A config.yml / args.yml written by rl-zoo3, as a plain dict (ConfigError if it is not one)."""
    try:
        data = yaml.load(path.read_text(), Loader=ZooYamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read {path} ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not an rl-zoo3 hyperparameter file (not a mapping)")
    return data


def zoo_params_dir(folder: Path) -> Path | None:
    """``<folder>/<EnvId>/`` holding config.yml, or None when ``folder`` is not an rl-zoo3 experiment folder."""
    if not folder.is_dir():
        return None
    found = sorted(child for child in folder.iterdir() if (child / "config.yml").is_file())
    if len(found) > 1:
        names = ", ".join(child.name for child in found)
        raise ConfigError(f"{folder} holds the settings of several envs ({names}); rl-zoo3 writes one per folder")
    return found[0] if found else None


@dataclass(frozen=True)
class ZooExperiment:
    """One rl-zoo3 experiment folder, checked to be replayable by fls."""

    folder: Path
    env_id: str
    game: str  # the fls game name, e.g. "Breakout"
    hyperparams: dict[str, Any]  # config.yml
    args: dict[str, Any]  # args.yml (empty if absent)

    @property
    def seed(self) -> int | None:
        """The training seed (rl-zoo3 seeds env i with seed + i); None if args.yml does not say."""
        seed = self.args.get("seed")
        return int(seed) if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None

    @property
    def n_envs(self) -> int:
        """Training envs (config.yml's n_envs, rl-zoo3's default 1)."""
        n_envs = self.hyperparams.get("n_envs", 1)
        return int(n_envs) if isinstance(n_envs, int) else 1

    def models(self) -> dict[str, Path]:
        """The model files of the folder by ``zoo.model`` choice: "final", "best" and each checkpoint step."""
        found: dict[str, Path] = {}
        final = self.folder / f"{self.env_id.replace('/', '-')}.zip"  # rl-zoo3's EnvironmentName: ALE/X -> ALE-X
        if final.is_file():
            found["final"] = final
        if (self.folder / "best_model.zip").is_file():
            found["best"] = self.folder / "best_model.zip"
        steps = []
        for path in self.folder.glob("rl_model_*_steps.zip"):
            match = _CHECKPOINT_RE.match(path.name)
            if match:
                steps.append((int(match.group(1)), path))
        for step, path in sorted(steps):
            found[str(step)] = path
        return found

    def model(self, choice: str | int) -> Path:
        """The zip of ``zoo.model=final|best|<N>``; ConfigError naming the available choices otherwise."""
        choice = str(choice)
        models = self.models()
        if choice in models:
            return models[choice]
        available = ", ".join(models) or "none"
        if choice not in ("final", "best") and not choice.isdigit():
            raise ConfigError(f"zoo.model must be {MODEL_CHOICES}, got '{choice}' (in {self.folder}: {available})")
        why = {
            "final": f"no {self.env_id.replace('/', '-')}.zip (training did not finish?)",
            "best": "no best_model.zip (rl-zoo3 writes it only when evaluating, --eval-freq > 0)",
        }.get(choice, f"no rl_model_{choice}_steps.zip")
        raise ConfigError(f"zoo.model={choice}: {self.folder} has {why}; available: {available}")


def _wrapper_entries(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """rl-zoo3's wrapper spec (a name, {name: kwargs}, or a list of these) as [(name, kwargs)]."""
    entries = value if isinstance(value, list) else [value]
    out = []
    for entry in entries:
        if isinstance(entry, str):
            out.append((entry, {}))
        elif isinstance(entry, dict) and len(entry) == 1:
            name, kwargs = next(iter(entry.items()))
            out.append((str(name), dict(kwargs or {}) if isinstance(kwargs, dict) else {"?": kwargs}))
        else:
            out.append((repr(entry), {}))
    return out


def _game_of(env_id: str) -> str | None:
    match = _ENV_ID_RE.match(env_id)
    if match and match.group(1) in GAMES and not GAMES[match.group(1)].score_wrap:
        return match.group(1)
    return None


def unreplayable(folder: Path, env_id: str, hyperparams: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """The settings of an experiment that fls cannot reproduce, each with its reason (empty: replayable)."""
    problems = []
    if _game_of(env_id) is None:
        games = ", ".join(f"{name}NoFrameskip-v4" for name, spec in sorted(GAMES.items()) if not spec.score_wrap)
        problems.append(f"env {env_id} is not one of the Atari games fls plays ({games})")
    normalize = hyperparams.get("normalize", False)
    if normalize or (folder / env_id / "vecnormalize.pkl").is_file():
        problems.append("VecNormalize (normalize / vecnormalize.pkl): fls feeds the raw 0..255 frames")
    stack = hyperparams.get("frame_stack")
    for name, kwargs in _wrapper_entries(hyperparams.get("vec_env_wrapper") or []):
        if name == VEC_FRAME_STACK and stack is None and set(kwargs) <= {"n_stack"}:
            stack = kwargs.get("n_stack")
        else:
            problems.append(f"vec_env_wrapper {name}{kwargs or ''} is not part of the Atari stack fls replays")
    if stack != 4:
        problems.append(f"frame_stack {stack}: fls plays 4 stacked frames")
    wrappers = _wrapper_entries(hyperparams.get("env_wrapper") or [])
    if not wrappers:
        problems.append(f"no env_wrapper: fls replays {ATARI_WRAPPER}")
    for name, kwargs in wrappers:
        if name != ATARI_WRAPPER:
            problems.append(f"env_wrapper {name} is not one fls knows (it replays {ATARI_WRAPPER})")
            continue
        for key, value in kwargs.items():
            if key in ANY_VALUE:
                continue
            if key not in ATARI_WRAPPER_DEFAULTS or value != ATARI_WRAPPER_DEFAULTS[key]:
                defaults = ", ".join(f"{k}={v}" for k, v in ATARI_WRAPPER_DEFAULTS.items())
                problems.append(f"AtariWrapper {key}={value} (fls replays {defaults})")
    for source, kwargs in (("config.yml", hyperparams.get("env_kwargs")), ("args.yml", args.get("env_kwargs"))):
        items = (kwargs or {}).items() if isinstance(kwargs, dict) or kwargs is None else [("?", kwargs)]
        for key, value in items:
            if key not in ENV_KWARGS_DEFAULTS or value != ENV_KWARGS_DEFAULTS[key]:
                problems.append(f"env_kwargs {key}={value} in {source} (fls plays the game's defaults)")
    return problems


def read_zoo_folder(folder: Path) -> ZooExperiment:
    """Read and check an rl-zoo3 experiment folder; ConfigError with every reason it cannot be replayed."""
    params = zoo_params_dir(folder)
    if params is None:
        raise ConfigError(
            f"{folder} is not an rl-zoo3 experiment folder (no <EnvId>/config.yml in it); "
            "give checkpoint=<file.zip>, run=<fls run dir> or checkpoint=logs/<algo>/<EnvId>_<n>/"
        )
    hyperparams = read_zoo_yaml(params / "config.yml")
    args = read_zoo_yaml(params / "args.yml") if (params / "args.yml").is_file() else {}
    env_id = str(args.get("env") or params.name)
    if params.name != env_id.replace("/", "-"):
        raise ConfigError(f"{folder}: args.yml names env {env_id} but the settings are in {params.name}/")
    problems = unreplayable(folder, env_id, hyperparams, args)
    if problems:
        raise ConfigError(f"rl-zoo3 experiment {folder} cannot be replayed by fls: {'; '.join(problems)}")
    return ZooExperiment(folder, env_id, str(_game_of(env_id)), hyperparams, args)


def zoo_checkpoint(run: str | None, checkpoint: str | None, model: str | int = "final") -> tuple[Path, Path] | None:
    """(model file, experiment folder) when run=/checkpoint= names an rl-zoo3 folder or a model file in one;
    None for anything else (fls runs and lone zips).

    ``model`` (``zoo.model``) picks the zip of a folder; it must stay "final" when a file is named directly.
    """
    given = Path(str(run or checkpoint)).expanduser().resolve()
    if given.is_dir() and zoo_params_dir(given) is not None:
        return read_zoo_folder(given).model(model), given
    if given.is_dir() and not run:
        raise ConfigError(
            f"checkpoint={given} is a directory but not an rl-zoo3 experiment folder (no <EnvId>/config.yml); "
            "use run=<dir> for an fls run, or checkpoint=<file.zip>"
        )
    if str(model) != "final" and given.exists():  # an fls run or a model file: the option does not apply
        picks = f"zoo.model={model} picks a model of an rl-zoo3 folder"
        if run:
            raise ConfigError(
                f"{picks}; run={given} is an fls run: drop zoo.model "
                "(or name one of its checkpoints: checkpoint=<run>/checkpoints/<file>.zip)"
            )
        raise ConfigError(f"{picks}; checkpoint={given} is a model file: drop zoo.model")
    if given.is_dir():
        return None  # an fls run directory: the caller reads it
    if not given.is_file() or zoo_params_dir(given.parent) is None:
        return None
    read_zoo_folder(given.parent)  # a model inside a zoo folder is checked against the folder's settings
    return given, given.parent
