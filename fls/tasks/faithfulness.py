"""``evaluate.py task=faithfulness``: the settings, the output folder (named by methods and baseline, held by
one writer, never replaced by other settings), the measurement (:mod:`fls.saliency.metrics.faithfulness`) and its
files (:mod:`fls.saliency.metrics.faithfulness_results`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from fls.errors import ConfigError
from fls.locks import LOCK_FILE, hold, remove_orphans
from fls.model_files import check_finite_scores
from fls.rundir import evaluation_dir, faithfulness_dir, make_dirs, refuse_other_results
from fls.saliency.metrics.faithfulness import (
    BASELINE_ORDERS,
    BASELINE_STACKS,
    MEAN_MIN_FRAMES,
    baseline_orders,
    baseline_stack,
    draw_frames,
    explained_actions,
    percent_steps,
    perturbation_curves,
    pixel_ranks,
    tie_keys,
)
from fls.saliency.metrics.faithfulness_results import FaithfulnessResult, log_to_wandb, write_outputs

if TYPE_CHECKING:
    from fls.agents.loading import Loaded
    from fls.saliency.metrics.sanity import SanityResult


def _positive_int(settings: Mapping[str, Any], key: str, allow_none: bool = False) -> int | None:
    value = settings.get(key)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"faithfulness.{key} must be an integer >= 1{' or null' if allow_none else ''}, got {value!r}"
        )
    return int(value)


def _settings(cfg: DictConfig) -> dict[str, Any]:
    f = cfg.faithfulness
    out: dict[str, Any] = {
        "frames": _positive_int(f, "frames"),
        "games": _positive_int(f, "games", allow_none=True) or int(cfg.eval.num_envs),
        "max_steps": _positive_int(f, "max_steps", allow_none=True),
        "percent_step": f.percent_step,
        "batch_size": _positive_int(f, "batch_size"),
        "map_batch_size": _positive_int(f, "map_batch_size"),
        "sanity_frames": _positive_int(f, "sanity_frames", allow_none=True),
        "seed": f.seed,
        "baseline": str(f.baseline),
        "blur_sigma": f.blur_sigma,
        "sanity": f.sanity,
    }
    percent_steps(out["percent_step"])
    if out["baseline"] not in BASELINE_STACKS:
        raise ConfigError(f"faithfulness.baseline must be one of {', '.join(BASELINE_STACKS)}, got '{out['baseline']}'")
    if out["baseline"] == "mean" and out["frames"] < MEAN_MIN_FRAMES:
        raise ConfigError(
            f"faithfulness.baseline=mean replaces a frame's pixels by the mean of the other frames: it needs "
            f"faithfulness.frames >= {MEAN_MIN_FRAMES}, got {out['frames']} (or use faithfulness.baseline=blur)"
        )
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int):
        raise ConfigError(f"faithfulness.seed must be an integer, got {out['seed']!r}")
    if isinstance(out["blur_sigma"], bool) or not isinstance(out["blur_sigma"], (int, float)) or out["blur_sigma"] <= 0:
        raise ConfigError(f"faithfulness.blur_sigma must be a number > 0, got {out['blur_sigma']!r}")
    if not isinstance(out["sanity"], bool):
        raise ConfigError(f"faithfulness.sanity must be true or false, got {out['sanity']!r}")
    if out["games"] > int(cfg.eval.num_envs):
        raise ConfigError(
            f"faithfulness.games={out['games']} is more than eval.num_envs={cfg.eval.num_envs}: frames come from "
            "the first game of each evaluation stream"
        )
    return out


def faithfulness_task(cfg: DictConfig, loaded: Loaded) -> Path:
    """evaluate.py task=faithfulness: draw frames, score every method and baseline, run the sanity checks, write
    the CSVs, markdown, figures and summary.json, log them to W&B, print the table."""
    from fls.evaluation.episodes import check_seeds
    from fls.saliency.settings import saliency_methods

    s = _settings(cfg)
    agent = loaded.agent
    if not agent.stochastic:
        raise ConfigError(
            f"faithfulness follows the probability of the chosen action; {agent.algorithm} has no policy "
            "(use an actor-critic agent: fls, PPO, A2C)"
        )
    if agent.channels_last:
        raise ConfigError(f"{loaded.checkpoint} takes channel-last (84, 84, 4) inputs; saliency needs (4, 84, 84)")
    methods = saliency_methods(cfg, loaded)
    check_seeds(cfg, loaded.run_dir)
    configured = cfg.faithfulness.out
    out = (
        Path(str(configured)).expanduser().resolve()
        if configured
        else faithfulness_dir(
            evaluation_dir(loaded.run_dir, loaded.checkpoint, cfg.eval.out), list(methods), s["baseline"]
        )
    )
    identity = result_identity(cfg, loaded, s, list(methods))
    make_dirs(out)
    with hold(out / LOCK_FILE, f"faithfulness results in {out}"):  # one writer per results folder
        remove_orphans(out)
        refuse_other_results(out, identity, "faithfulness")
        return _compute_and_write(cfg, loaded, s, methods, out)


# settings that change how the work is batched, not its numbers: a folder's results may be recomputed with others
_BATCHING = ("batch_size", "map_batch_size")


def result_identity(cfg: DictConfig, loaded: Loaded, s: Mapping[str, Any], methods: list[str]) -> dict[str, Any]:
    """What the numbers of a faithfulness result depend on (kept in its summary.json)."""
    from fls.agents.loading import repeat_action_probability

    return {
        "checkpoint": str(loaded.checkpoint),
        "digest": loaded.agent.digest,
        "game": loaded.game,
        "eval_seed": int(cfg.eval.seed),
        "deterministic": bool(cfg.eval.deterministic),
        "repeat_action_probability": repeat_action_probability(cfg, loaded.run_dir),
        **{k: v for k, v in s.items() if k not in _BATCHING},
        "methods": methods,
        "target": "action",
        "gradcam_rectified": bool(cfg.saliency.get("gradcam_rectified", False)),
        "layer": cfg.saliency.layer,
    }


def _compute_and_write(cfg: DictConfig, loaded: Loaded, s: dict[str, Any], methods: dict, out: Path) -> Path:
    """The work of :func:`faithfulness_task` once its output folder is held."""
    from fls.saliency.metrics.sanity import cascading_randomisation, randomisation_groups

    agent = loaded.agent
    policy, device = agent.policy, agent.device
    percents = percent_steps(s["percent_step"])
    orders = [*methods, *BASELINE_ORDERS]
    n_nets = len(randomisation_groups(policy)) + 1 if s["sanity"] else 0
    sanity_frames = min(s["frames"], s["sanity_frames"] or s["frames"]) if s["sanity"] else 0
    forward = s["frames"] * len(orders) * 2 * len(percents)
    print(
        f"faithfulness cost: {s['frames']} frames × {len(orders)} orders ({', '.join(orders)}) × 2 curves × "
        f"{len(percents)} steps = {forward:,} forward passes (batches of {s['batch_size']}); maps: "
        f"{s['frames']} frames × {len(methods)} methods; sanity: {sanity_frames} frames × {len(methods)} methods × "
        f"{n_nets} randomised networks; on {device}",
        flush=True,
    )

    drawn = draw_frames(
        agent,
        loaded.spec,
        s["frames"],
        games=s["games"],
        base_seed=int(cfg.eval.seed),
        max_episode_steps=int(cfg.eval.max_episode_steps or loaded.spec.eval_max_episode_steps),
        seed=s["seed"],
        deterministic=bool(cfg.eval.deterministic),
        max_steps=s["max_steps"],
        repeat_action_probability=result_identity(cfg, loaded, s, [])["repeat_action_probability"],
    )
    n = len(drawn.observations)
    if n < s["frames"]:
        print(f"the games had only {n} inputs: using all of them", flush=True)
    obs = torch.as_tensor(drawn.observations, device=device)
    stacks = obs.float()

    def score_fn(x: torch.Tensor) -> torch.Tensor:
        scores = agent.scores(x)
        check_finite_scores(scores, str(agent.path), "on a drawn or perturbed frame", "; nothing was written")
        return scores

    actions, probs = explained_actions(score_fn, stacks, s["batch_size"])
    chosen = actions.cpu().numpy()  # the saliency methods take actions as an array

    maps: dict[str, np.ndarray] = {}
    with tqdm(total=n * len(methods), desc="maps", unit="map", dynamic_ncols=True) as bar:
        for name, method in methods.items():
            parts = []
            for start in range(0, n, s["map_batch_size"]):
                rows = slice(start, start + s["map_batch_size"])
                parts.append(method(policy, obs[rows], "action", actions=chosen[rows]).float().cpu().numpy())
                bar.update(len(parts[-1]))
            maps[name] = np.concatenate(parts)
    maps.update(baseline_orders(n, tuple(obs.shape[-2:]), s["seed"]))

    keys = tie_keys(n, int(obs.shape[-1] * obs.shape[-2]), s["seed"])
    base = baseline_stack(stacks, s["baseline"], float(s["blur_sigma"]))
    curves = {}
    with tqdm(total=n * len(orders) * 2 * len(percents), desc="curves", unit="fwd", dynamic_ncols=True) as bar:
        for name in orders:
            curves[name] = perturbation_curves(
                score_fn,
                stacks,
                base,
                pixel_ranks(maps[name], keys),
                actions,
                percents,
                batch_size=s["batch_size"],
                on_batch=bar.update,
            )

    sanity: list[SanityResult] = []
    if s["sanity"]:

        def as_map_fn(method: Any) -> Callable[..., np.ndarray]:
            def fn(network: Any, x: torch.Tensor, a: np.ndarray) -> np.ndarray:
                parts = [
                    method(network, x[i : i + s["map_batch_size"]], "action", actions=a[i : i + s["map_batch_size"]])
                    for i in range(0, len(x), s["map_batch_size"])
                ]
                return torch.cat(parts).float().cpu().numpy()

            return fn

        m = sanity_frames
        with tqdm(total=m * len(methods) * n_nets, desc="sanity", unit="map", dynamic_ncols=True) as bar:
            sanity = cascading_randomisation(
                policy,
                {name: as_map_fn(method) for name, method in methods.items()},
                obs[:m],
                chosen[:m],
                seed=s["seed"],
                reference={name: maps[name][:m] for name in methods},
                on_maps=bar.update,
            )

    result = FaithfulnessResult(drawn, chosen, probs.cpu().numpy(), curves, sanity, sanity_frames)
    blurred = f"blurred stack (Gaussian σ {s['blur_sigma']:g})"
    baseline_text = blurred if s["baseline"] == "blur" else "per-pixel mean of the other frames"
    setting = {
        **result_identity(cfg, loaded, s, list(methods)),
        **s,
        "baseline_text": baseline_text,
        "frames_drawn": n,
        "inputs_seen": drawn.seen,
        "percents": percents.tolist(),
    }
    write_outputs(result, setting, out)
    print((out / "faithfulness.md").read_text())
    print(f"per-frame results, curves and figures in {out}")
    if cfg.logger.wandb.mode != "disabled":
        log_to_wandb(result, setting, out, mode=str(cfg.logger.wandb.mode), project=str(cfg.logger.wandb.project))
    return out
