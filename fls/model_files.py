"""Loading SB3 model archives without running code hidden in them.

An SB3 ``.zip`` holds ``data`` (JSON) and the weights (``*.pth``). SB3 stores every ``data`` field that JSON cannot
hold as ``{":type:": ..., ":serialized:": <base64 cloudpickle>, <the object's JSON-readable attributes>}`` and
unpickles it on load, so a planted object runs code. SB3's ``load`` takes ``custom_objects`` that replace a field
*before* it is unpickled; :func:`load_model` supplies one for every serialized field, rebuilt from the readable
parts SB3 writes beside it (or from what the caller knows, e.g. a run's config.yaml), or refuses the file with one
line naming the field. Nothing is unpickled without ``allow_pickle=True``, except the pure-data buffers
(episode statistics, DQN's train frequency), read by an unpickler that can build nothing but a deque, numbers and
SB3's train-frequency tuple. The weights are read by SB3 with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import pickle
import re
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from fls.errors import ConfigError

OPT_IN = "pass allow_pickle=true only if you trust the file (it may run code)"
# What SB3's load raises on a damaged or foreign archive (a weights file that needs unpickling included).
LOAD_ERRORS = (
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    AssertionError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    OSError,
    gymnasium.error.Error,  # e.g. an env named in the file (allow_pickle=true only: the safe path drops it)
)
_FUNCTION_NAME = re.compile(r"<function (\w+)\.\w+ at 0x")
_NUMBER = re.compile(r"[-+]?(?:inf|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def allow_pickle_flag(cfg: Any) -> bool:
    """The ``allow_pickle`` setting of a command's config (false when absent); a non-boolean is a ConfigError."""
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, "allow_pickle", default=False)
    if not isinstance(value, bool):
        raise ConfigError(f"allow_pickle must be true or false, got {value!r}")
    return value


def read_model_data(path: Path) -> dict[str, Any]:
    """The ``data`` JSON of an SB3 archive as written (serialized fields are left as their readable parts)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise ConfigError(f"{path} is not an SB3 model archive ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not an SB3 model archive (its data is not a JSON object)")
    return data


def is_serialized(item: Any) -> bool:
    """Whether a ``data`` field is a pickled object (SB3 would unpickle it on load)."""
    return isinstance(item, dict) and ":serialized:" in item


def class_identity(item: Any) -> tuple[str, str | None]:
    """(module, class name) of a pickled class from its readable parts: ``__module__`` and the names in the
    reprs of its methods (``<function CnnPolicy.__init__ at 0x...>``); name None when no method names it."""
    if not isinstance(item, dict):
        return "", None
    names = {m for value in item.values() if isinstance(value, str) for m in _FUNCTION_NAME.findall(value)}
    return str(item.get("__module__", "")), names.pop() if len(names) == 1 else None


def _policy_classes() -> dict[tuple[str, str], type]:
    from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy
    from stable_baselines3.dqn.policies import CnnPolicy as DQNCnnPolicy
    from stable_baselines3.dqn.policies import DQNPolicy

    from fls.models.policy import FLSPolicy

    classes: list[type] = [FLSPolicy, ActorCriticCnnPolicy, ActorCriticPolicy, DQNCnnPolicy, DQNPolicy]
    try:
        from sb3_contrib.qrdqn.policies import CnnPolicy as QRDQNCnnPolicy
        from sb3_contrib.qrdqn.policies import QRDQNPolicy

        classes += [QRDQNCnnPolicy, QRDQNPolicy]
    except ImportError:  # QR-DQN files are refused by the algorithm check with an install hint
        pass
    return {(cls.__module__, cls.__name__): cls for cls in classes}


def _known_classes() -> dict[str, type]:
    """Classes that may appear by name in ``policy_kwargs`` (SB3 writes them as ``"<class 'module.Name'>"``)."""
    from stable_baselines3.common.buffers import DictReplayBuffer, DictRolloutBuffer, ReplayBuffer, RolloutBuffer
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
    from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN

    from fls.models.registry import MODELS

    nn, optim = torch.nn, torch.optim
    classes = [
        *(spec.cls for spec in MODELS.values()),
        NatureCNN,
        FlattenExtractor,
        *(optim.Adam, optim.AdamW, optim.RMSprop, optim.SGD, RMSpropTFLike),
        *(nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid),
        *(RolloutBuffer, DictRolloutBuffer, ReplayBuffer, DictReplayBuffer),
    ]
    return {f"<class '{cls.__module__}.{cls.__qualname__}'>": cls for cls in classes}


class _Refused(Exception):
    """A field that cannot be rebuilt safely; the message says why."""


def _policy_class(item: dict[str, Any]) -> type:
    module, name = class_identity(item)
    candidates = {key: cls for key, cls in _policy_classes().items() if key[0] == module}
    if name is None and len(candidates) == 1:  # e.g. FLSPolicy defines no __init__ but is its module's only policy
        return next(iter(candidates.values()))
    if (module, name) in candidates:
        return candidates[(module, name)]
    known = ", ".join(sorted(f"{m}.{n}" for m, n in _policy_classes()))
    raise _Refused(f"policy {module}.{name or '?'} is not a known Atari policy (known: {known})")


def _policy_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """The dict from its readable items: JSON values as they are, classes from their names (known ones only)."""
    from fls.models.registry import MODELS, extractor_kwargs

    classes = _known_classes()
    kwargs = {}
    for key, value in item.items():
        if key.startswith(":"):
            continue
        if isinstance(value, str):  # JSON cannot hold what SB3 wrote as a string here: it must be a known class
            if value not in classes:
                raise _Refused(f"policy_kwargs.{key} is {value[:80]}, not a known class")
            value = classes[value]
        kwargs[key] = value
    extractor = kwargs.get("features_extractor_class")
    names = [name for name, spec in MODELS.items() if spec.cls is extractor]
    if names:  # an fls extractor: its options pass the registry's checks and get their types back (tuples)
        try:
            _, kwargs["features_extractor_kwargs"] = extractor_kwargs(
                {"name": names[0], **kwargs.get("features_extractor_kwargs", {})}
            )
        except (ConfigError, TypeError) as error:
            raise _Refused(f"policy_kwargs.features_extractor_kwargs: {error}") from None
    return kwargs


def _uniform_bound(text: Any, dtype: np.dtype, what: str) -> Any:
    """A Box bound from its printed array: every printed value must be the same (as for image spaces)."""
    values = set(_NUMBER.findall(str(text)))
    if len(values) != 1:
        raise _Refused(f"the Box {what} bound is not uniform ({str(text)[:60]!r})")
    value = float(values.pop())
    if dtype.kind in "iu" and not np.isfinite(value):
        raise _Refused(f"the Box {what} bound {value} does not fit {dtype}")
    return np.asarray(value).astype(dtype).item()


def _space(item: dict[str, Any]) -> Any:
    from gymnasium import spaces

    kind = str(item.get(":type:", ""))
    try:
        if kind.endswith(".Discrete'>"):
            return spaces.Discrete(int(item["n"]), start=int(item.get("start", 0) or 0))
        if kind.endswith(".Box'>"):
            dtype = np.dtype(str(item["dtype"]))
            shape = tuple(int(n) for n in item.get("_shape", item.get("shape")))
            low, high = (_uniform_bound(item[key], dtype, key) for key in ("low", "high"))
            return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    except (KeyError, TypeError, ValueError) as error:
        raise _Refused(f"its readable parts do not describe a {kind} ({error})") from None
    raise _Refused(f"{kind} is not a Box or Discrete space")


def _schedule(item: dict[str, Any]) -> Any:
    """A schedule rebuilt from its printed form, or None when it is not one SB3 or fls prints legibly."""
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

    from fls.ppo import LinearDecay

    def parse(text: str) -> Any:
        constant = re.fullmatch(r"ConstantSchedule\(val=(\S+)\)", text)
        decay = re.fullmatch(r"LinearDecay\((\S+)\)", text)
        linear = re.fullmatch(r"LinearSchedule\(start=(\S+), end=(\S+), end_fraction=(\S+)\)", text)
        if constant:
            return ConstantSchedule(float(constant.group(1)))
        if decay:
            return LinearDecay(float(decay.group(1)))
        if linear:
            return LinearSchedule(*(float(x) for x in linear.groups()))
        return None

    kind = str(item.get(":type:", ""))
    try:
        if kind.endswith(".FloatSchedule'>") and isinstance(item.get("value_schedule"), str):
            inner = parse(item["value_schedule"])
            return None if inner is None else FloatSchedule(inner)
        if kind == "<class 'fls.ppo.LinearDecay'>" and "initial" in item:
            return LinearDecay(float(item["initial"]))
        if kind.endswith(".LinearSchedule'>") and {"start", "end", "end_fraction"} <= set(item):
            return LinearSchedule(float(item["start"]), float(item["end"]), float(item["end_fraction"]))
        if kind.endswith(".ConstantSchedule'>") and "val" in item:
            return ConstantSchedule(float(item["val"]))
    except (TypeError, ValueError):
        return None
    return None


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that can build only plain data: containers and numbers, a deque, SB3's TrainFreq."""

    ALLOWED = {
        ("collections", "deque"),
        ("stable_baselines3.common.type_aliases", "TrainFreq"),
        ("stable_baselines3.common.type_aliases", "TrainFrequencyUnit"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not plain data")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not plain data")


def _plain_data(item: dict[str, Any], expected: type | tuple[type, ...]) -> Any:
    try:
        value = _DataUnpickler(io.BytesIO(base64.b64decode(str(item[":serialized:"])))).load()
    except Exception as error:  # any failure of a restricted read means: not plain data
        raise _Refused(str(error)) from None
    if not isinstance(value, expected):
        raise _Refused(f"holds a {type(value).__name__}")
    return value


def _buffer_class(item: dict[str, Any]) -> type | None:
    module, name = class_identity(item)
    # None makes SB3 pick its default buffer for the spaces, which is what a file from a known module holds.
    return _known_classes().get(f"<class '{module}.{name}'>")


def _rebuild(key: str, item: dict[str, Any], data: dict[str, Any], warn: Callable[[str], None]) -> Any:
    """A safe stand-in for one serialized field; raises _Refused when there is none."""
    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

    if key == "policy_class":
        return _policy_class(item)
    if key == "policy_kwargs":
        return _policy_kwargs(item)
    if key in ("observation_space", "action_space"):
        return _space(item)
    if key in ("learning_rate", "lr_schedule", "clip_range", "clip_range_vf", "exploration_schedule"):
        # Schedules only change training; an illegible one (e.g. an rl-zoo closure) becomes a constant.
        schedule = _schedule(item)
        return schedule if schedule is not None else (lambda _: 0.0) if key != "learning_rate" else 0.0
    if key in ("_last_obs", "_last_original_obs", "_last_episode_starts", "action_noise"):
        return None  # the last rollout's observations: SB3 resets the envs before training again
    if key in ("rollout_buffer_class", "replay_buffer_class"):
        return _buffer_class(item)
    if key in ("rollout_buffer_kwargs", "replay_buffer_kwargs"):
        return {}
    if key in ("ep_info_buffer", "ep_success_buffer"):
        window = int(data.get("_stats_window_size", 100) or 100)
        try:
            return _plain_data(item, collections.deque)
        except _Refused as why:
            warn(f"{key} is not plain data ({why}); replaced by an empty buffer (episode statistics only)")
            return collections.deque(maxlen=window)
    if key == "train_freq":
        try:
            return _plain_data(item, TrainFreq)
        except _Refused as why:
            warn(f"train_freq is not plain data ({why}); replaced by 4 steps (DQN training only)")
            return TrainFreq(4, TrainFrequencyUnit.STEP)
    raise _Refused("fls does not know this field")


def safe_custom_objects(
    data: dict[str, Any], path: Path, known: dict[str, Any] | None = None, warn: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """SB3 ``custom_objects`` replacing every serialized field of ``data``, so that SB3 unpickles none of them.

    ``known`` gives values the caller has from a trusted source (a run's config.yaml); they win over the file.
    Raises a ConfigError naming the first field that cannot be rebuilt safely.
    """
    say = warn or (lambda message: print(f"warning: {path}: {message}", file=sys.stderr))
    custom = dict(known or {})
    for key, item in data.items():
        if key in custom or not is_serialized(item):
            continue
        try:
            custom[key] = _rebuild(key, item, data, say)
        except _Refused as why:
            raise ConfigError(
                f"{path}: data field '{key}' ({item.get(':type:', 'a pickled object')}) cannot be read without "
                f"unpickling it: {why}; {OPT_IN}"
            ) from None
    if "env" in data:  # SB3 never saves one; a plain string here would make SB3 call gym.make (imports a module)
        custom["env"] = None
    missing = [key for key, item in data.items() if is_serialized(item) and key not in custom]
    assert not missing, f"serialized fields left to SB3: {missing}"  # nothing reaches cloudpickle
    return custom


def _custom_objects(
    path: Path, allow_pickle: bool, known: dict[str, Any] | None, custom_objects: dict[str, Any] | None
) -> dict[str, Any]:
    custom = dict(custom_objects or {})
    if not allow_pickle:
        custom = safe_custom_objects(read_model_data(path), path, {**custom, **(known or {})})
    return custom


def _load_failure(path: Path, what: str, error: Exception) -> ConfigError:
    return ConfigError(f"{path} cannot be loaded as {what} ({load_failure(error)})")


def load_model(
    algorithm: type,
    path: Path,
    *,
    device: torch.device | str = "cpu",
    env: Any = None,
    allow_pickle: bool = False,
    known: dict[str, Any] | None = None,
    custom_objects: dict[str, Any] | None = None,
) -> Any:
    """``algorithm.load(path)`` without unpickling anything from the file unless ``allow_pickle``.

    ``known``: trusted values for fields (used instead of the file's, safe mode only); ``custom_objects``: replacements
    used in both modes (e.g. schedules an evaluation does not need). Load failures are ConfigErrors (one line).
    """
    custom = _custom_objects(path, allow_pickle, known, custom_objects)
    try:
        return algorithm.load(path, env=env, device=device, custom_objects=custom)
    except ConfigError:
        raise
    except LOAD_ERRORS as error:
        raise _load_failure(path, algorithm.__name__, error) from None


def load_failure(error: Exception) -> str:
    """Why SB3's load failed, in one line. torch's refusal of pickled weights is reduced to what it found:
    its advice (``weights_only=False``, allow-listing globals) would run the file's code, which fls never does
    for weights, not even with allow_pickle=true."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global| Please use|$)", text, re.M)
    if isinstance(error, pickle.UnpicklingError) and "weights_only" in text:
        what = found.group(1).strip().rstrip(".") if found else "an object that is not a tensor"
        return (
            f"its weights hold pickled code or objects ({what}); fls reads weights as plain tensors only, "
            "whatever allow_pickle says: use a file whose weights are tensors"
        )
    first = (text.splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {first}"


def check_finite_scores(scores: torch.Tensor | np.ndarray, source: str, where: str, kept: str = "") -> None:
    """Raise a ConfigError if any action score (logit or Q-value) in ``scores`` is NaN or inf.

    The one check of every task that runs a model: argmax over NaN picks action 0 and softmax over it cannot be
    sampled, so a model whose scores overflow would otherwise play on to normal-looking scores, fail inside torch or
    write "n/a" results. ``where`` says where it happened, ``kept`` what of the task's output survives."""
    finite = torch.isfinite(scores).all() if torch.is_tensor(scores) else np.isfinite(scores).all()
    if not bool(finite):
        raise ConfigError(
            f"{source}: the model's action scores became NaN or inf {where}; it cannot be evaluated or explained "
            f"(try an earlier checkpoint){kept}"
        )


def read_archive(
    path: Path, *, device: torch.device | str = "cpu", allow_pickle: bool = False, known: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``data`` and the weights (state dicts by name) of an SB3 archive, read as :func:`load_model` reads them
    (nothing unpickled unless ``allow_pickle``), without building a model from them."""
    from stable_baselines3.common.save_util import load_from_zip_file

    custom = _custom_objects(path, allow_pickle, known, None)
    try:
        data, params, _ = load_from_zip_file(path, custom_objects=custom, device=device)
    except LOAD_ERRORS as error:
        raise _load_failure(path, "an SB3 model archive", error) from None
    if not isinstance(data, dict) or not isinstance(params, dict):
        raise ConfigError(f"{path} is not an SB3 model archive (no data or no weights)")
    return data, params


def first_non_finite(tensors: torch.nn.Module | Iterable[tuple[str, Any]]) -> tuple[str, int, int] | None:
    """(name, non-finite count, size) of the first floating tensor holding NaN or inf, else None: of a module's
    parameters and buffers, or of (name, value) pairs (values that are not tensors are skipped)."""
    named = tensors.state_dict().items() if isinstance(tensors, torch.nn.Module) else tensors
    for name, tensor in named:
        if isinstance(tensor, torch.Tensor) and torch.is_floating_point(tensor):
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                return name, bad, tensor.numel()
    return None
