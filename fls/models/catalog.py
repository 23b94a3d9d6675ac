"""The models fls can build, by name: their options, descriptions and the checks of a model config.

Nothing here imports torch, so the command lines can refuse a bad model or option at once, before the heavy
imports (fls/models/registry.py pairs each name with its extractor class).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fls.errors import ConfigError

# Keys every model config has; everything else is a model option.
COMMON_KEYS = ("name", "entropy_lambda")
# Where sparse_fls's attention can sit (fls/models/sparse_fls.py).
ATTENTION_PLACES: tuple[str, ...] = ("conv3", "conv1", "every_conv")


@dataclass(frozen=True)
class ModelInfo:
    """One selectable model: its options and a one-line description."""

    options: tuple[str, ...]
    description: str
    attention: bool = True


CATALOG: dict[str, ModelInfo] = {
    "nature_cnn": ModelInfo((), "Nature CNN, no attention (the baseline)", attention=False),
    "sparse_fls": ModelInfo(
        ("sum_pool", "normalize_attention", "fls_kernel", "softplus_base2", "final_relu", "attention_at"),
        "Nature trunk x FLS attention (softplus map on the 7x7 features), flatten -> 512",
    ),
    "dense_fls": ModelInfo(
        ("sum_pool", "normalize_attention", "fls_kernel", "softplus_base2", "final_relu"),
        "stride-1 84x84 trunk x FLS attention, sum-pooled -> 512",
    ),
    "rs": ModelInfo(("pad_input",), "region-sensitive module (Yang et al.): 2 softmax channels"),
    "daqn": ModelInfo((), "DARQN's soft attention without recurrence: softmax over 49 positions, sum-pooled"),
    "maxpool_cnn": ModelInfo(
        ("channels", "kernel_size"),
        "Nature-like CNN with max-pooling after each conv (E-A3C Grad-CAM)",
        attention=False,
    ),
}

ALL_OPTIONS: tuple[str, ...] = tuple(sorted({o for info in CATALOG.values() for o in info.options}))


def _choices(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def model_info(name: str) -> ModelInfo:
    """The catalogue entry of a model name, or a ConfigError listing the valid names."""
    if name not in CATALOG:
        raise ConfigError(f"unknown model '{name}' (valid: {_choices(sorted(CATALOG))})")
    return CATALOG[name]


def check_model_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check what depends on the model (which options apply to it, options that contradict each other) and return
    the extractor's constructor kwargs. Each option's type, range and choices are checked by its declaration
    (fls/config_schema.py's ModelConfig), before this.

    Options left at None are not set. Raises ConfigError naming the problem and the valid choices.
    """
    cfg = dict(model_cfg)
    name = cfg.get("name")
    info = model_info(str(name))
    unknown = sorted(k for k in cfg if k not in COMMON_KEYS and k not in ALL_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown model option model.{unknown[0]} (valid: {_choices(ALL_OPTIONS)})")
    kwargs = {k: v for k, v in cfg.items() if k not in COMMON_KEYS and v is not None}
    for key in kwargs:
        if key not in info.options:
            valid = _choices(info.options) if info.options else "none"
            raise ConfigError(f"model.{key} does not apply to {name} (its options: {valid})")

    lam = cfg.get("entropy_lambda") or 0.0
    if lam > 0 and not info.attention:
        raise ConfigError(
            f"model.entropy_lambda={lam} needs a model with attention; {name} has none "
            f"(models with attention: {_choices(n for n, s in CATALOG.items() if s.attention)})"
        )

    if kwargs.get("sum_pool") and kwargs.get("attention_at", "conv3") != "conv3":
        raise ConfigError(
            f"model.sum_pool=true pools the attended conv3 features, so it needs model.attention_at=conv3 "
            f"(got {kwargs['attention_at']})"
        )
    if name == "dense_fls":
        if kwargs.pop("sum_pool", True) is False:
            raise ConfigError(
                "dense_fls always sum-pools: flattening its 64x84x84 map would need a 451,584-wide hidden layer "
                "(drop model.sum_pool=false)"
            )
    if "channels" in kwargs:
        channels = tuple(kwargs["channels"])
        if not channels or 84 >> len(channels) < 1:
            raise ConfigError(f"model.channels has {len(channels)} layers: 1 to 6 (max-pools that fit an 84x84 input)")
        kwargs["channels"] = channels
    return kwargs
