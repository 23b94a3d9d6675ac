"""Model names -> extractor classes: the catalogue's entries (fls/models/catalog.py) with the classes they build."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fls.models.base import FeatureExtractor
from fls.models.catalog import ALL_OPTIONS, CATALOG, COMMON_KEYS, check_model_config, model_info
from fls.models.daqn import DAQN
from fls.models.dense_fls import DenseFLS
from fls.models.maxpool_cnn import MaxPoolCNN
from fls.models.nature_cnn import NatureCNN
from fls.models.region_sensitive import RegionSensitive
from fls.models.sparse_fls import SparseFLS

__all__ = ["ALL_OPTIONS", "COMMON_KEYS", "MODELS", "ModelSpec", "extractor_kwargs", "model_spec"]

CLASSES: dict[str, type[FeatureExtractor]] = {
    "nature_cnn": NatureCNN,
    "sparse_fls": SparseFLS,
    "dense_fls": DenseFLS,
    "rs": RegionSensitive,
    "daqn": DAQN,
    "maxpool_cnn": MaxPoolCNN,
}


@dataclass(frozen=True)
class ModelSpec:
    """One selectable model: its extractor class, its options and a one-line description."""

    cls: type[FeatureExtractor]
    options: tuple[str, ...]
    description: str
    attention: bool = True


MODELS: dict[str, ModelSpec] = {
    name: ModelSpec(CLASSES[name], info.options, info.description, info.attention) for name, info in CATALOG.items()
}


def model_spec(name: str) -> ModelSpec:
    """The spec of a model name, or a ConfigError listing the valid names."""
    model_info(name)
    return MODELS[name]


def extractor_kwargs(model_cfg: Mapping[str, Any]) -> tuple[type[FeatureExtractor], dict[str, Any]]:
    """Validate a model config (fls/models/catalog.py) and return (extractor class, constructor kwargs)."""
    from fls.config_schema import ModelConfig, check_node

    check_node(model_cfg, ModelConfig, "model.")  # each option's type, range and choices, declared once there
    kwargs = check_model_config(model_cfg)
    return MODELS[str(model_cfg.get("name"))].cls, kwargs
