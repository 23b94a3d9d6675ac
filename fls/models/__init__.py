"""Feature extractors of the paper, the attention renderer and the actor-critic policy built on them."""

from fls.models.base import AttentionSite, FeatureExtractor
from fls.models.policy import FLSPolicy, build_policy, count_parameters, describe_policy, policy_kwargs
from fls.models.registry import ALL_OPTIONS, MODELS, extractor_kwargs, model_spec
from fls.models.renderer import receptive_field, render_attention, upsample_to_frame

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
