"""Feature extractors of the paper, the attention renderer and the actor-critic policy built on them.

The names below load their module (and torch) on first use, so that ``fls.models.catalog`` stays cheap to import
for the command lines' checks.
"""

from typing import Any

__all__ = [
    "ALL_OPTIONS",
    "MODELS",
    "AttentionSite",
    "FLSPolicy",
    "FeatureExtractor",
    "build_policy",
    "count_parameters",
    "describe_policy",
    "extractor_kwargs",
    "model_spec",
    "policy_kwargs",
    "receptive_field",
    "render_attention",
    "upsample_to_frame",
]


def __getattr__(name: str) -> Any:
    if name in ("AttentionSite", "FeatureExtractor"):
        from fls.models import base as module
    elif name in ("FLSPolicy", "build_policy", "count_parameters", "describe_policy", "policy_kwargs"):
        from fls.models import policy as module
    elif name in ("ALL_OPTIONS", "MODELS", "extractor_kwargs", "model_spec"):
        from fls.models import registry as module
    elif name in ("receptive_field", "render_attention", "upsample_to_frame"):
        from fls.models import renderer as module
    else:
        raise AttributeError(f"module 'fls.models' has no attribute {name!r}")
    return getattr(module, name)
