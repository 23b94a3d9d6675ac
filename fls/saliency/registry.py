"""Saliency method names -> classes, and :func:`get_method` with one-line errors naming the valid choices."""

from __future__ import annotations

from typing import Any

from fls.errors import ConfigError
from fls.saliency.attention import AttentionSaliency
from fls.saliency.base import METHOD_NAMES, SaliencyMethod
from fls.saliency.cam import GradCAM, GradCAMPlusPlus
from fls.saliency.fullgrad import FullGrad, FullGradPlusPlus
from fls.saliency.gradients import Gradient, IntegratedGradients, SmoothGrad, VarGrad
from fls.saliency.perturbation import Perturbation, PerturbationCritic
from fls.saliency.tree import TreeSaliency

METHODS: dict[str, type[SaliencyMethod]] = {
    cls.name: cls
    for cls in (
        AttentionSaliency,
        GradCAM,
        GradCAMPlusPlus,
        FullGrad,
        FullGradPlusPlus,
        Gradient,
        SmoothGrad,
        VarGrad,
        IntegratedGradients,
        Perturbation,
        PerturbationCritic,
        TreeSaliency,
    )
}


METHOD_NAMES[:] = METHODS


def get_method(name: str, **options: Any) -> SaliencyMethod:
    """A configured saliency method, e.g. ``get_method("gradcam", layer="features_extractor.convs.1")``.

    Raises ConfigError for an unknown name or option (listing the valid ones) and for invalid option values.
    """
    if name not in METHODS:
        raise ConfigError(f"unknown saliency method '{name}' (valid: {', '.join(METHODS)})")
    cls = METHODS[name]
    valid = cls.option_names()
    unknown = sorted(k for k in options if k not in valid)
    if unknown:
        raise ConfigError(
            f"unknown option '{unknown[0]}' for saliency method '{name}' (its options: {', '.join(valid) or 'none'})"
        )
    try:
        return cls(**options)
    except ConfigError:
        raise
    except ValueError as error:  # bad option values: one error type for the command line
        raise ConfigError(f"saliency method '{name}': {error}") from error
