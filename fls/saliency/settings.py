"""The saliency settings of evaluate.py's config (``saliency.methods``, ``saliency.target``, ...) as methods checked
against an agent, shared by every task that draws maps (video, tree, gaze, faithfulness)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from fls.errors import ConfigError

if TYPE_CHECKING:
    from fls.agents.loading import Loaded
    from fls.saliency.base import SaliencyMethod


def saliency_methods(cfg: DictConfig, loaded: Loaded) -> dict[str, SaliencyMethod]:
    """The configured saliency methods, checked against the agent (one-line errors name the valid choices)."""
    from fls.saliency import METHODS, get_method

    names = list(cfg.saliency.methods or [])
    if not names:
        raise ConfigError(f"no saliency method chosen (saliency=[...] with any of: {', '.join(METHODS)})")
    methods = {}
    rectified = cfg.saliency.get("gradcam_rectified", False)
    if not isinstance(rectified, bool):
        raise ConfigError(f"saliency.gradcam_rectified must be true or false, got {rectified!r}")
    for name in names:
        options = {"layer": cfg.saliency.layer} if cfg.saliency.layer and name in ("gradcam", "gradcam++") else {}
        if rectified and name in ("gradcam", "gradcam++"):
            options["rectified"] = True
        if name == "tree":  # a video's tree panel (and a gaze score of trees) grows trees as task=tree does
            tree = cfg.get("tree") or {}
            options.update({k: tree[k] for k in ("n", "depth", "min_separation", "root") if k in tree})
        method = get_method(str(name), **options)
        method.check(loaded.agent.policy)
        methods[str(name)] = method
    return methods


def saliency_target(cfg: DictConfig) -> Any:
    """``action``, ``value`` or an action index (for DQN / QR-DQN: Q(s, a) of the action, max_a Q, Q of an index)."""
    target = cfg.saliency.target
    if isinstance(target, str) and target not in ("action", "value"):
        raise ConfigError(f"saliency.target must be action, value or an action index, got '{target}'")
    return target
