"""Shared command-line plumbing for train.py and evaluate.py: early override checks and one-line errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fls.config_schema import CONFIG_DIR  # the presets, shipped inside the package
from fls.errors import ConfigError, FlsError, Interrupted, fail, os_error_message

# Groups whose choices are files under configs/<group>/ (hydra/* groups are Hydra's and checked by Hydra).
OWN_GROUPS = ("model", "env", "ppo", "experiment")


def group_choices(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The selectable configs of a group (files starting with '_' are shared bases, not choices)."""
    folder = config_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def _override_values(override: Any) -> Iterable[str]:
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    value = override.value()
    return [] if value is None else [str(value)]


def _video_alias(value: str) -> str | None:
    """``video=true`` -> task=video; ``video=false`` changes nothing; anything else is refused."""
    if value.lower() in ("true", "false"):
        return "video" if value.lower() == "true" else None
    raise ConfigError(f"video={value}: true or false (a YAML/Hydra boolean)")


# Short forms of evaluate.py: the issue tracker's and the paper's vocabulary mapped onto the config's nodes.
ALIASES: dict[str, dict[str, tuple[str, Callable[[str], str | None]]]] = {
    "evaluate": {
        "saliency": ("saliency.methods", lambda value: value),
        "video": ("task", _video_alias),
    },
}


def apply_aliases(args: list[str], config_name: str) -> list[str]:
    """Rewrite short forms (``saliency=[a,b]``, ``video=true``) into the config's own keys."""
    table = ALIASES.get(config_name, {})
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in table:
            target, convert = table[key]
            new = convert(value)
            if new is not None:
                out.append(f"{target}={new}")
            continue
        out.append(arg)
    return out


def check_overrides(args: list[str], known_model_keys: Iterable[str], config_dir: Path = CONFIG_DIR) -> None:
    """Reject unknown group choices and unknown model options before Hydra composes the config.

    Hydra's own messages for these span many lines and, for options, do not list the valid keys.
    """
    try:
        overrides = parse_overrides(args)
    except ConfigError:
        return  # check_override_values reports it
    known = set(known_model_keys)
    for override in overrides:
        if override.is_delete():
            continue
        key = override.key_or_group.lstrip("+~")
        if key in OWN_GROUPS and (config_dir / key).is_dir():
            choices = group_choices(key, config_dir)
            for value in _override_values(override):
                if value not in choices and value != "null":
                    raise ConfigError(f"unknown {key} '{value}' (valid: {', '.join(choices)})")
        elif key.startswith("model.") and key.split(".", 1)[1] not in known:
            raise ConfigError(f"unknown model option '{key}' (valid: {', '.join('model.' + k for k in sorted(known))})")


def register_resolvers() -> None:
    """Resolvers used by configs/: sweep and job directories created exclusively (fls.rundir)."""
    import atexit

    from omegaconf import OmegaConf

    from fls.config_schema import register_defaults
    from fls.rundir import new_job_dir, new_sweep_dir, remove_created_if_empty

    register_defaults()

    def one_line_os_errors(resolver: Callable[..., str]) -> Callable[..., str]:
        def resolve(*args: Any) -> str:
            try:
                return resolver(*args)
            except OSError as error:
                fail(os_error_message(error, ""))  # SystemExit passes through OmegaConf and Hydra untouched

        return resolve

    if not OmegaConf.has_resolver("fls_new_dir"):
        # use_cache: Hydra copies resolver caches into each job's config, so a sweep directory is made once.
        OmegaConf.register_new_resolver("fls_new_dir", one_line_os_errors(new_sweep_dir), use_cache=True)
        OmegaConf.register_new_resolver("fls_job_dir", one_line_os_errors(new_job_dir), use_cache=True)
        atexit.register(remove_created_if_empty)


def guard_task(task: Callable[[Any], Any], config_name: str) -> Callable[[Any], Any]:
    """``task`` with an OSError turned into one line (exit 2) and the folders it created but left empty removed."""
    from fls.rundir import remove_created_if_empty

    def guarded(cfg: Any) -> Any:
        try:
            return task(cfg)
        except OSError as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            fail(os_error_message(error, config_name))
        finally:
            remove_created_if_empty()  # a refused job of a sweep must not leave its folder to the next

    return guarded


def run_hydra(task: Callable[[Any], Any], config_name: str) -> None:
    """Run ``task`` as a Hydra app on configs/<config_name>.yaml, turning ConfigError into a one-line error."""
    import hydra

    from fls.models.catalog import ALL_OPTIONS, COMMON_KEYS

    try:
        sys.argv[1:] = apply_aliases(sys.argv[1:], config_name)
        check_overrides(sys.argv[1:], (*COMMON_KEYS, *ALL_OPTIONS))
    except ConfigError as error:
        fail(str(error))
    check_command_line(sys.argv[1:], config_name)
    register_resolvers()
    task = guard_task(task, config_name)

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def _main(cfg: Any) -> Any:
        try:
            return task(cfg)
        except FlsError as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            if isinstance(error, Interrupted) or getattr(error, "interrupted", False):
                print(
                    str(error), file=sys.stderr
                )  # not an error: what was finished is kept, the same command continues
                sys.exit(error.exit_code)
            fail(str(error), error.exit_code)
        except KeyboardInterrupt:  # a task without handlers of its own (video, tree, objects, ...): no traceback
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(
                "interrupted (Ctrl-C) before it finished: finished outputs are kept and nothing half-written is; "
                "run the same command again",
                file=sys.stderr,
            )
            sys.exit(130)

    _main()


# ----------------------------------------------------------------------------------------------------------------
# Typed configuration (fls/config_schema.py) and --help


def config_groups(config_name: str, config_dir: Path = CONFIG_DIR) -> dict[str, str | None]:
    """The groups a config composes (its defaults list) and the default choice of each (None: none)."""
    from omegaconf import OmegaConf

    groups: dict[str, str | None] = {}
    for item in OmegaConf.load(config_dir / f"{config_name}.yaml").get("defaults", []):
        if not OmegaConf.is_dict(item):
            continue  # _self_
        for group, choice in item.items():
            group = str(group).removeprefix("override ").strip()
            if not group.startswith("hydra"):
                groups[group] = None if choice is None else str(choice)
    return groups


def _typed_values(override: Any) -> list[Any]:
    """The values an override sets, typed as Hydra parses them; [] for an interval that a sweeper samples."""
    from hydra.errors import HydraException

    if not override.is_sweep_override():
        return [override.value()]
    try:
        return list(override.sweep_iterator())
    except HydraException:
        return []


def _unknown_key(config_name: str, key: str, written: str) -> ConfigError:
    from fls.config_schema import node_keys

    parent = key
    while parent:
        parent = parent.rpartition(".")[0]
        keys = node_keys(config_name, parent)
        if keys is not None:
            where = f"keys of {parent}" if parent else "top-level keys"
            return ConfigError(f"{written}: unknown key ({where}: {', '.join(keys)})")
    raise AssertionError("the top level always has keys")


def _is_override(arg: str) -> bool:
    return ("=" in arg or arg.startswith("~")) and not arg.startswith("-")


def _is_hydras(key: str) -> bool:
    """Whether a key or group is Hydra's own (``hydra.run.dir``, ``hydra/launcher``)."""
    return key.lstrip("+~").split(".")[0].split("/")[0] == "hydra"


def parse_overrides(args: Iterable[str], config_name: str | None = None) -> list[Any]:
    """Hydra's parse of the overrides among ``args``; ConfigError (one line) for one that does not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    overrides = []
    for arg in filter(_is_override, args):
        try:
            overrides += parser.parse_overrides([arg])
        except OverrideParseException as error:  # Hydra's message spans lines: keep the one that says what
            lines = [line for line in str(error).strip().splitlines() if not line.startswith(("Error parsing", "See "))]
            detail = lines[0] if lines else "not Hydra's override syntax"
            raise ConfigError(
                f"{arg}: cannot parse ({detail}; quote values with spaces or special characters)"
            ) from None
        except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
            raise ConfigError(_too_long(arg, config_name)) from None
    return overrides


def _too_long(arg: str, config_name: str | None) -> str:
    from fls.config_schema import abbreviate, accepted, lookup

    key, _, text = arg.partition("=")
    found = lookup(config_name, key.lstrip("+~")) if config_name and not _is_hydras(key) else None
    what = accepted(*found) if found else "a number of that many digits is not a value of any key"
    return f"{key}={abbreviate(text)}: {what}"


# Hydra's keys that name folders: empty, they are the current folder (train.py would make it a run directory).
HYDRA_PATH_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


@contextmanager
def hydra_loaded() -> Iterator[Any]:
    """Hydra's config loader on configs/: the running command's, else one for the duration of the block."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a running command
        yield GlobalHydra.instance().config_loader()
        return
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def hydra_group_choices(group: str) -> list[str]:
    """The choices of one of Hydra's groups (``hydra/launcher``): Hydra's own, its installed plugins' and configs/'."""
    with hydra_loaded() as loader:
        return list(loader.get_group_options(group))


def _check_hydra_override(override: Any, key: str) -> None:
    """Hydra's own groups and folders: an unknown choice (Hydra's message spans lines) or an empty folder."""
    if override.is_delete():
        return
    values = list(_override_values(override)) or ["null"]
    if "/" in key and not key.startswith("hydra."):  # a group: hydra/launcher=, hydra/sweeper=, ...
        choices = hydra_group_choices(key)
        unknown = next((v for v in values if v not in choices), None)
        if unknown is not None:
            raise ConfigError(f"unknown {key} '{unknown}' (valid: {', '.join(choices)})")
    elif key in HYDRA_PATH_KEYS and any(not v.strip() for v in values):
        raise ConfigError(f"{key}=: a folder (not empty: an empty {key} is the current folder)")


def _check_group_override(
    override: Any, group: str, text: str, required: bool, config_name: str, config_dir: Path
) -> None:
    """What Hydra refuses in many lines or with a traceback: ``+group=``, ``++group=``, ``group=null``, and
    deleting a group the config needs."""
    from hydra.core.override_parser.types import OverrideType

    written = override.input_line or group
    choices = ", ".join(group_choices(group, config_dir))
    if override.is_delete() or None in _typed_values(override):
        if required:
            raise ConfigError(f"{written}: {config_name}.py needs a {group} (choose one: {group}=<name>; {choices})")
        if not override.is_delete():
            raise ConfigError(f"{written}: leave {group} out to choose none (or one of {choices})")
    elif override.type is not OverrideType.CHANGE:  # the group is in the defaults list already
        raise ConfigError(f"{written}: write {group}={text} (no + for a group of {config_name}.py's defaults)")


def check_override_values(args: Iterable[str], config_name: str, config_dir: Path = CONFIG_DIR) -> None:
    """Check the keys and values that overrides set (every value of a sweep) against the config's schema.

    Raises ConfigError ``<key>=<value>: <what is accepted>`` (or ``<override>: cannot parse (...)``). An unknown
    key is refused however it is written (``key=``, ``+key=``, ``++key=``, ``~key``), and so is deleting a key or a
    group the config needs. Choices of fls's groups are check_overrides' job, Hydra's keys are Hydra's (but for
    its groups' choices and empty folders).
    """
    from hydra.core.override_parser.types import OverrideType

    from fls.config_schema import accepted, check_value, lookup

    groups = config_groups(config_name, config_dir)
    for override in parse_overrides(args, config_name):
        key = override.key_or_group
        written = override.input_line or key
        if _is_hydras(key):
            _check_hydra_override(override, key)
            continue
        text = written.partition("=")[2]
        if key in groups:
            _check_group_override(override, key, text, groups[key] is not None, config_name, config_dir)
            continue
        if override.package is not None:
            continue
        found = lookup(config_name, key)
        if found is None and (config_dir / key).is_dir():
            raise ConfigError(
                f"{written}: {config_name}.py has no {key} group (its groups: {', '.join(groups) or 'none'})"
            )
        if found is None:
            raise _unknown_key(config_name, key, written)
        if override.is_delete():
            raise ConfigError(f"{written}: {config_name}.py needs {key} ({accepted(*found)}); set it, do not delete it")
        if override.type is OverrideType.ADD:  # Hydra refuses to add a key that exists, in many lines
            raise ConfigError(f"{written}: {key} is already in the config; set it with {key}={text}")
        for value in _typed_values(override):
            if not (isinstance(value, str) and "${" in value):  # interpolations are checked once composed
                check_value(key, value, *found)


def check_command_line(args: list[str], config_name: str) -> None:
    """Before Hydra starts: print --help and exit, or refuse a bad key or value with one line (exit 2), so that
    a refused command creates nothing."""
    if "--help" in args or "-h" in args:
        try:
            print(help_text(config_name, [a for a in args if a not in ("--help", "-h")]), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    try:
        check_override_values(args, config_name)
        check_wandb_environment()
    except ConfigError as error:
        fail(str(error))


# what wandb itself accepts in WANDB_MODE; anything else makes wandb.init raise a validation error mid-run
WANDB_ENV_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")


def check_wandb_environment() -> None:
    """Refuse a ``WANDB_MODE`` environment variable that wandb would reject only once the run folder exists."""
    mode = os.environ.get("WANDB_MODE")
    if mode is not None and mode not in WANDB_ENV_MODES:
        raise ConfigError(
            f"environment variable WANDB_MODE={mode!r} is not a W&B mode: unset it or set one of "
            f"{', '.join(WANDB_ENV_MODES[:3])} (logger.wandb.mode chooses per command)"
        )


def check_launcher(target: str) -> None:
    """Refuse the SLURM launcher where there is no SLURM, before the sweep folder exists (submitit would raise a
    RuntimeError traceback once the sweep has started)."""
    import shutil

    if target.endswith("SlurmLauncher"):
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            fail(
                f"hydra/launcher=slurm needs a SLURM cluster, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not on PATH here; "
                "hydra/launcher=submitit_local or local_parallel runs the same jobs on this machine"
            )


def _one_line(error: Exception) -> str:
    """OmegaConf's messages end with full_key/object_type lines: keep the first line and the key."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    full_key = getattr(error, "full_key", None)
    return f"{full_key}: {first}" if full_key else first


def check_composed(config: Any) -> None:
    """Check a composed Hydra config (with its ``hydra`` node) against its schema; exit 2 with one line if bad."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from fls.config_schema import check_config

    config_name = str(OmegaConf.select(config, "hydra.job.config_name", default="") or "")
    if config_name not in ("train", "evaluate"):
        return
    try:
        check_config(config, config_name)
    except ConfigError as error:
        fail(str(error))
    except OmegaConfBaseException as error:  # an interpolation that does not resolve
        fail(_one_line(error))


def sweep_jobs(config: Any) -> list[list[str]] | None:
    """The overrides of each job of a multirun with Hydra's basic sweeper (every combination of the sweeper's
    ``params`` and the command line's values, as the sweeper makes them); None for other sweepers (they choose as
    they go)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from omegaconf import OmegaConf

    if not str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).endswith(".BasicSweeper"):
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    return [job for batch in BasicSweeper.split_arguments(parse_overrides(args), None) for job in batch]


def check_sweep_jobs(config: Any) -> None:
    """Compose and check every job of a multirun (types, and the checks of several keys: model options, shards)
    before the first starts; exit 2 with one line naming the first bad job."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from fls.config_schema import check_config

    config_name = str(config.hydra.job.config_name)
    try:
        jobs = sweep_jobs(config)
    except ConfigError as error:
        fail(str(error))
    with hydra_loaded():
        for number, job in enumerate(jobs or []):
            try:
                check_config(compose(config_name=config_name, overrides=job), config_name)
            except ConfigError as error:
                fail(f"{error} (job {number} of the sweep: {' '.join(job)}; no job was started)")
            except (HydraException, OmegaConfBaseException) as error:
                fail(f"{_one_line(error)} (job {number} of the sweep: {' '.join(job)}; no job was started)")


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - Hydra < 1.1
    _HydraCallback = object  # type: ignore[assignment,misc]


class SchemaCheck(_HydraCallback):  # type: ignore[misc,valid-type]
    """Hydra callback (configs/*.yaml: ``hydra.callbacks.schema``) that checks the composed config against
    fls/config_schema.py before the run folder exists: once before a single run, and in a multirun before the
    sweep (its base config, every value of the sweeper's ``params`` and, with the basic sweeper, every job's
    composed config) and again for each job.

    Hydra turns exceptions of callbacks into warnings, so a bad config exits here (one line, exit 2).
    """

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        check_composed(config)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        check_composed(config)
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
        check_launcher(launcher)
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
        if OmegaConf.is_dict(params):
            try:
                check_override_values([f"{k}={v}" for k, v in params.items()], str(config.hydra.job.config_name))
            except ConfigError as error:
                fail(f"hydra.sweeper.params: {error}")
        check_sweep_jobs(config)
        if str(config.hydra.job.config_name) == "train" and not OmegaConf.select(config, "dry_run", default=False):
            from fls.sweep import start_sweep

            start_sweep(launcher)  # one job's NaN or interruption does not end the others (fls/sweep.py)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        """Name the jobs that stopped early (fls/sweep.py); a multirun of dry runs leaves nothing behind: Hydra's
        multirun.yaml and the folders made for it go."""
        from omegaconf import OmegaConf

        if OmegaConf.select(config, "dry_run", default=False) is not True:
            if str(config.hydra.job.config_name) == "train":
                from fls.sweep import end_sweep

                end_sweep(Path(str(config.hydra.sweep.dir)))
            return
        sweep = Path(str(config.hydra.sweep.dir)).resolve()
        (sweep / "multirun.yaml").unlink(missing_ok=True)
        for folder in (sweep, *sweep.parents[:2]):  # <sweep dir>, then <date>/ and multirun/ when left empty
            if folder == Path.cwd() or any(folder.iterdir()):
                break
            folder.rmdir()

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        if str(OmegaConf.select(config, "hydra.mode", default="")) == "RunMode.MULTIRUN":
            check_composed(config)


# Examples of evaluate.py's short forms for --help (rewritten by apply_aliases, so the help shows what they mean).
ALIAS_EXAMPLES = {"saliency": "[attention,gradcam]", "video": "true"}

USAGE = {
    "train": [
        "python train.py: train a PPO agent on Atari (README: Training).",
        "",
        "  python train.py [group=choice ...] [key=value ...]",
        "  python train.py experiment=quickstart              a few minutes on a CPU, then an evaluation and a video",
        "  python train.py model=rs dry_run=true              print the policy and its parameter count, exit",
        "  python train.py resume=<run dir>                   continue a run from its newest checkpoint",
        "  python train.py -m seed=1,2,3 model=rs,sparse_fls  a sweep: one run per combination",
    ],
    "evaluate": [
        "python evaluate.py: score an agent, record saliency videos, compare with human gaze, report a sweep"
        " (README: Evaluation).",
        "",
        "  python evaluate.py run=<run dir> [key=value ...]",
        "  python evaluate.py checkpoint=<model.zip> env=<game>   any SB3 Atari agent (PPO, A2C, DQN, QR-DQN)",
        "  python evaluate.py run=<run dir> video=true saliency=[attention,gradcam]",
        "  python evaluate.py task=report sweep=<multirun dir>",
    ],
}


def _summary(path: Path, limit: int = 86) -> str:
    """The first sentence of a config file's opening comment (its description), cut at ``limit`` characters."""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text.startswith("@package"):
            words.append(text)
    sentence = " ".join(words).split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 3].rsplit(" ", 1)[0] + " ..."


def _compose_for_help(config_name: str, args: list[str]) -> Any:
    """The config the command line would compose (without Hydra's node), or the defaults if it does not compose."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    overrides = [a for a in args if "=" in a and not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    for attempt in (overrides, []):
        try:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                return compose(config_name=config_name, overrides=attempt)
        except Exception:  # noqa: BLE001 - the help still prints with the defaults
            continue
    return None


def _group_lines(config_name: str) -> list[str]:
    from fls.models.catalog import CATALOG

    lines = ["Groups (group=choice; * marks the default):"]
    for group, default in config_groups(config_name).items():
        choices = group_choices(group)
        marked = {c: f"{c}*" if c == default else c for c in choices}
        title = f"{group} (none by default)" if default is None else group
        if len(choices) > 6 or len(choices) == 1:  # the games: their names say it
            lines += _columns(title, ", ".join(marked.values()))
            continue
        lines.append(f"  {title}")
        for choice in choices:
            spec = CATALOG.get(choice) if group == "model" else None
            text = f"{spec.description}" if spec else _summary(CONFIG_DIR / group / f"{choice}.yaml")
            if spec and spec.options:
                text += f" (options: {', '.join(spec.options)})"
            lines += _columns(f"  {marked[choice]}", text)
    return lines


# Hydra's own choices of the sweep groups that fls's README uses (fls's own are described by their config files)
_HYDRA_CHOICES = {
    "hydra/launcher": {
        "basic": "one job after another, in this process",
        "submitit_local": 'each job a local process (submitit; pip install -e ".[cluster]")',
    },
    "hydra/sweeper": {"basic": "every combination of the comma-separated values"},
}


def _sweep_lines() -> list[str]:
    """The launchers and sweepers of a multirun (-m): Hydra's built-in ones and fls's presets."""
    lines = ["", "Sweeps (-m; hydra/<group>=choice; * marks the default):"]
    for group, builtin in _HYDRA_CHOICES.items():
        lines.append(f"  {group}")
        choices = {f"{name}*" if name == "basic" else name: text for name, text in builtin.items()}
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            choices[path.stem] = _summary(path).split(": python ")[0]
        for name, text in sorted(choices.items()):
            lines += _columns(f"  {name}", text)
    return lines


def _columns(left: str, text: str, width: int = 120, column: int = 34) -> list[str]:
    """``left`` then ``text`` wrapped into a column (on the next line when ``left`` is too wide)."""
    import textwrap

    wrapped = textwrap.wrap(text, width - column) or [""]
    first = f"  {left:<{column - 2}}" if len(left) < column - 2 else f"  {left}\n{' ' * column}"
    return [first + wrapped[0], *(" " * column + more for more in wrapped[1:])]


def help_text(config_name: str, args: list[str] | None = None) -> str:
    """train.py's / evaluate.py's --help: usage, groups and their choices, tasks, short forms and the most used
    keys (with the value the command line composes), from configs/ and fls/config_schema.py."""
    from omegaconf import OmegaConf

    from fls.config_schema import TASKS, accepted, leaf_keys, show

    lines = [*USAGE[config_name], "", *_group_lines(config_name), *_sweep_lines()]
    if config_name == "evaluate":
        lines += ["", "Tasks (task=<name>):"]
        lines += [f"  {name:<16}{what}" for name, what in TASKS.items()]
    aliases = ALIASES.get(config_name, {})
    if aliases:
        lines += ["", "Short forms:"]
        for alias in aliases:
            example = f"{alias}={ALIAS_EXAMPLES[alias]}"
            lines.append(f"  {example:<30}= {' '.join(apply_aliases([example], config_name))}")
    cfg = _compose_for_help(config_name, args or [])
    lines += ["", "Most used keys (key=value, with the value this command line gives it):"]
    for name, tp, rule in leaf_keys(config_name):
        parent = name.rpartition(".")[0]
        if not rule.main or cfg is None or (parent and OmegaConf.select(cfg, parent, default=None) is None):
            continue  # e.g. env.* in evaluate.py without env=<game>
        value = OmegaConf.select(cfg, name, default=None)
        left = f"{name}={show(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)}"
        what = accepted(tp, rule).replace(" (a YAML/Hydra boolean)", "")
        text = rule.doc if what.startswith(("a string", "a path")) else f"{rule.doc}; {what}"
        lines += _columns(left, text)
    lines += [
        "",
        f"Every key and its value: python {config_name}.py --cfg job [overrides]   (types are checked before a run)",
        f"Hydra's own flags (multirun -m, launchers, sweepers): python {config_name}.py --hydra-help",
    ]
    return "\n".join(lines)
