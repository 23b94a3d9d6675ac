"""The saliency settings of evaluate.py's config (``saliency.methods``, ``saliency.target``, ...) as methods checked
against an agent, shared by every task that draws maps (video, tree, gaze, faithfulness, objects), and the settings
of the video task's seeded games (:func:`played_settings`), which the video and objects tasks play."""

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


def saliency_target(cfg: DictConfig, actions: int | None = None) -> Any:
    """``action``, ``value`` or an action index (for DQN / QR-DQN: Q(s, a) of the action, max_a Q, Q of an index);
    an index is checked against the agent's ``actions`` when given, before anything is played."""
    target = cfg.saliency.target
    if isinstance(target, str) and target not in ("action", "value"):
        raise ConfigError(f"saliency.target must be action, value or an action index, got '{target}'")
    if actions is not None and not isinstance(target, str) and not 0 <= int(target) < actions:
        raise ConfigError(
            f"saliency.target={target} is not an action of this agent (valid: action, value, 0..{actions - 1})"
        )
    return target


def video_stem(
    checkpoint: str,
    game: str,
    methods: list[str],
    seed: int,
    episodes: int,
    target: Any = "action",
    objects: bool = False,
) -> str:
    """The name of what the video task's seeded games show, so that another video (or another task's results of
    other games) never replaces it: ``final_model_Breakout_seed2000_1ep_attention-gradcam-fullgrad++`` (plus
    ``_target-<t>`` unless the maps explain the action taken, and ``_objects`` on a video with the game objects
    outlined). The video's file name, the objects task's folder."""
    stem = f"{checkpoint}_{game}_seed{seed}_{episodes}ep_{'-'.join(methods)}"
    stem = stem if str(target) == "action" else f"{stem}_target-{target}"
    return f"{stem}_objects" if objects else stem


def played_settings(cfg: DictConfig, loaded: Loaded, methods: list[str], epsilon: float | None) -> dict[str, Any]:
    """Everything the video task's seeded games and their maps depend on (``saliency.*``, the model, acting,
    sticky actions), shared by the tasks that play them (video, objects) and kept beside their outputs."""
    from fls.agents.loading import repeat_action_probability

    s = cfg.saliency
    settings = {
        "checkpoint": str(loaded.checkpoint),
        "digest": loaded.agent.digest,
        "game": loaded.game,
        "methods": methods,
        "seed": int(s.seed),
        "episodes": int(s.episodes),
        "target": s.target,
        "deterministic": bool(s.deterministic),
        "epsilon": epsilon,
        "max_steps": int(s.max_steps),
        "max_episode_steps": loaded.spec.eval_max_episode_steps,
        "repeat_action_probability": repeat_action_probability(cfg, loaded.run_dir),
        "gradcam_rectified": bool(s.get("gradcam_rectified", False)),
        "layer": s.layer,
    }
    if "tree" in methods:
        tree = cfg.get("tree") or {}
        settings |= {f"tree.{k}": tree.get(k) for k in ("n", "depth", "min_separation")}
    return settings
