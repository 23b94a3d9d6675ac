"""Resuming a run from a checkpoint: the model is built from the run's config.yaml, the checkpoint gives only what
training learned.

Every hyperparameter, the network and the envs come from config.yaml: a checkpoint whose JSON says otherwise
(``n_epochs``, ``gamma``, ``ent_coef``, ...) changes nothing. From the checkpoint come the weights, the optimiser's
state, the step, update and game counters, the episode statistics and the last update's logged statistics. The
file is read without unpickling anything (unless ``allow_pickle``) and checked whole (readable, fits the network,
finite) before the caller writes anything into the run directory.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from stable_baselines3.common.utils import check_for_correct_spaces

from fls.errors import ConfigError
from fls.model_files import first_non_finite, read_archive
from fls.ppo import AttentionPPO
from fls.rundir import checkpoints

COUNTERS = ("num_timesteps", "_n_updates", "_episode_num")


def _way_back(checkpoint: Path) -> str:
    """How to continue the run without ``checkpoint``."""
    earlier = [path for _, path in checkpoints(checkpoint.parent.parent) if path.name < checkpoint.name]
    if earlier:
        then = f"resume again to continue from {earlier[-1].name}"
    else:
        then = "resume again: there is no earlier checkpoint, so the run restarts from step 0 with its config.yaml"
    return f"move {checkpoint.name} out of {checkpoint.parent} (or rename it to {checkpoint.name}.broken) and {then}"


def _check_finite(checkpoint: Path, params: dict[str, Any]) -> None:
    optimizer = params.get("policy.optimizer")
    state = optimizer.get("state") if isinstance(optimizer, dict) else None
    named = [(f"parameter {name}", tensor) for name, tensor in (params.get("policy") or {}).items()]
    if isinstance(state, dict):
        named += [
            (f"optimiser state {index}.{name}", value)
            for index, values in state.items()
            if isinstance(values, dict)
            for name, value in values.items()
        ]
    bad = first_non_finite(named)
    if bad is not None:
        name, count, size = bad
        raise ConfigError(
            f"{checkpoint}: {name} is not finite ({count} of {size} values NaN or inf), the checkpoint is broken; "
            + _way_back(checkpoint)
        )


def _count(checkpoint: Path, data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(
            f"{checkpoint}: data field '{key}' is {str(value)[:60]!r}, not a count; {_way_back(checkpoint)}"
        )
    return value


def _episode_stats(buffer: Any, window: int) -> collections.deque:
    """The episode statistics SB3 logs (``r`` return, ``l`` length per game), entries of another form left out."""
    entries = buffer if isinstance(buffer, collections.deque | list) else ()
    games = [
        info
        for info in entries
        if isinstance(info, dict) and all(isinstance(info.get(k), int | float) for k in ("r", "l"))
    ]
    return collections.deque(games, maxlen=window)


def _update_log(entries: Any) -> dict[str, list[Any]]:
    """The last update's statistics as AttentionPPO saves them (``{"train/...": [number, [excluded sinks]]}``)."""
    kept = {}
    for key, entry in entries.items() if isinstance(entries, dict) else ():
        if not (isinstance(key, str) and key.startswith("train/") and isinstance(entry, list) and len(entry) == 2):
            continue
        value, exclude = entry
        if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(exclude, list):
            if all(isinstance(sink, str) for sink in exclude):
                kept[key] = [value, exclude]
    return kept


def restore_checkpoint(model: AttentionPPO, checkpoint: Path, *, allow_pickle: bool) -> None:
    """Give ``model`` (built from the run's config.yaml, with its envs) what training learned up to ``checkpoint``.

    Raises a one-line ConfigError when the file cannot be read safely, was not written for this run's envs and
    network, or holds a NaN or infinity (the message says how to continue from the checkpoint before it).
    """
    known = {"policy_kwargs": model.policy_kwargs, "learning_rate": model.learning_rate}
    known.update(clip_range=model.clip_range, clip_range_vf=model.clip_range_vf)
    data, params = read_archive(checkpoint, device=model.device, allow_pickle=allow_pickle, known=known)
    if "env" in data:  # SB3 never saves one: the file was edited, and the run's envs come from its config.yaml
        raise ConfigError(
            f"{checkpoint}: data field 'env' is not one SB3 writes (the run's envs come from its config.yaml); "
            f"the file was not written by train.py: {_way_back(checkpoint)}"
        )
    try:
        check_for_correct_spaces(model.get_env(), data["observation_space"], data["action_space"])
    except (KeyError, ValueError) as error:
        raise ConfigError(f"{checkpoint} was not written for this run's game ({error})") from None
    _check_finite(checkpoint, params)
    counters = [_count(checkpoint, data, key) for key in COUNTERS]
    # The optimiser's state (moments, step counts) from the file; its settings (eps, betas, ...) from the config.
    optimizer = params.get("policy.optimizer")
    own_groups = model.policy.optimizer.state_dict()["param_groups"]
    if isinstance(optimizer, dict) and isinstance(optimizer.get("param_groups"), list):
        saved_groups = optimizer["param_groups"]
        if len(saved_groups) == len(own_groups) and all(isinstance(group, dict) for group in saved_groups):
            optimizer["param_groups"] = [
                {**own, "params": saved.get("params")} for own, saved in zip(own_groups, saved_groups, strict=True)
            ]
    try:
        model.set_parameters(params, exact_match=True, device=model.device)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"{checkpoint} does not fit the run's network ({type(error).__name__}: {first}); was it copied from "
            "another run?"
        ) from None
    model.num_timesteps, model._n_updates, model._episode_num = counters
    model.ep_info_buffer = _episode_stats(data.get("ep_info_buffer"), model._stats_window_size)
    model.ep_success_buffer = collections.deque(maxlen=model._stats_window_size)
    model.last_update_log = _update_log(data.get("last_update_log"))
