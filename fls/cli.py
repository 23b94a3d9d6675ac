"""Shared command-line plumbing for train.py and evaluate.py: early override checks and one-line errors."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from fls.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# Groups whose choices are files under configs/<group>/ (hydra/* groups are Hydra's and checked by Hydra).
OWN_GROUPS = ("model", "env", "ppo", "logger", "experiment")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def group_choices(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The selectable configs of a group (files starting with '_' are shared bases, not choices)."""
    folder = config_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def _override_values(override: Any) -> Iterable[str]:
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    value = override.value()
    return [] if value is None else [str(value)]


# Short forms of evaluate.py: the issue tracker's and the paper's vocabulary mapped onto the config's nodes.
ALIASES: dict[str, dict[str, tuple[str, Callable[[str], str | None]]]] = {
    "evaluate": {
        "saliency": ("saliency.methods", lambda value: value),
        "video": ("task", lambda value: "video" if value.lower() == "true" else None),
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
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except OverrideParseException:
        return  # Hydra reports syntax errors itself
    known = set(known_model_keys)
    for override in overrides:
        if override.is_delete():
            continue
        key = override.key_or_group.lstrip("+~")
        if key in OWN_GROUPS and (config_dir / key).is_dir():
            choices = group_choices(key, config_dir)
            for value in _override_values(override):
                if value not in choices and value != "null":
                    fail(f"unknown {key} '{value}' (valid: {', '.join(choices)})")
        elif key.startswith("model.") and key.split(".", 1)[1] not in known:
            fail(f"unknown model option '{key}' (valid: {', '.join('model.' + k for k in sorted(known))})")


def register_resolvers() -> None:
    """Resolvers used by configs/: sweep and job directories created exclusively (fls.rundir)."""
    import atexit

    from omegaconf import OmegaConf

    from fls.rundir import new_job_dir, new_sweep_dir, remove_created_if_empty

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


# What to do about an OSError, by errno, and where each command can be told to write instead.
_OS_ADVICE = {
    errno.EACCES: "make it writable or write elsewhere",
    errno.EPERM: "make it writable or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.ENOSPC: "the disk is full: free some space (then run the same command again) or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space (then run the same command again) or write elsewhere",
    errno.ENOTDIR: "a file stands where a folder is needed: move it or write elsewhere",
    errno.EEXIST: "something of that name is in the way: move it or write elsewhere",
    errno.EISDIR: "a folder stands where a file is needed: move it or write elsewhere",
    errno.ENOENT: "check the path",
}
_WRITE_ELSEWHERE = {
    "train": "hydra.run.dir=<folder>",
    "evaluate": "eval.out=, saliency.out=, gaze.out= or report.out=<folder>",
}


def os_error_message(error: OSError, command: str) -> str:
    """One line for an OSError: the path, what went wrong and what to do."""
    path = error.filename if error.filename is not None else "a file"
    reason = error.strerror or str(error)
    advice = _OS_ADVICE.get(error.errno, "check the path and its permissions")
    if "elsewhere" in advice and command in _WRITE_ELSEWHERE:
        advice += f" ({_WRITE_ELSEWHERE[command]})"
    return f"{path}: {reason.lower()}; {advice}"


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

    from fls.models.registry import ALL_OPTIONS, COMMON_KEYS

    sys.argv[1:] = apply_aliases(sys.argv[1:], config_name)
    check_overrides(sys.argv[1:], (*COMMON_KEYS, *ALL_OPTIONS))
    register_resolvers()
    task = guard_task(task, config_name)

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def _main(cfg: Any) -> Any:
        try:
            return task(cfg)
        except ConfigError as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            fail(str(error))

    _main()
