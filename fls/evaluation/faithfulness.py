"""task=faithfulness: does removing what a saliency map calls salient change the agent's decision?

``python evaluate.py task=faithfulness run=<run dir> saliency=[attention,gradcam,gradient] faithfulness.frames=256``

1. **Frames.** The first game of each of ``faithfulness.games`` evaluation streams is played exactly as
   ``task=episodes`` plays episodes 0, 1, ... (env seeded ``eval.seed`` + stream, the episode's own action-sampling
   generator, sampled actions); ``faithfulness.frames`` network inputs are drawn uniformly from every input of
   those games (reservoir sampling with a generator seeded ``faithfulness.seed``).
2. **Maps**, once per frame and method, explaining the action the policy prefers on the frame (its greedy action),
   whose probability the curves follow.
3. **Deletion / insertion** (Petsiuk et al. 2018): for k = 0, 5, ..., 100 % of the 84x84 pixels, taken in the
   map's order of salience (ties broken by one seeded random order shared by all methods), the pixels are replaced
   in all 4 stacked frames by a baseline stack (deletion), or the baseline stack gets them back (insertion). The
   baseline is the stack blurred with a Gaussian of sigma 3 (Greydanus et al.'s blur, the one perturbation
   saliency uses) or, with ``faithfulness.baseline=mean``, the per-pixel mean of the drawn frames. Recorded per
   step: the probability of the explained action and whether the greedy action is still that action. The area
   under each curve over the fraction of pixels (trapezoid rule, 0..1) summarises it: deletion lower is better,
   insertion higher. A random order (seeded) and a centre-prior order (fls.gaze.baselines) are scored by the same
   code as the methods.
4. **Sanity checks** (:mod:`fls.evaluation.sanity`): cascading randomisation of the weights, Spearman rank
   correlation and SSIM of each method's maps before and after every step.

Outputs, in ``<run>/eval/<checkpoint>/faithfulness/``: ``faithfulness.csv`` (per method and frame),
``curves.csv`` (mean curves), ``sanity.csv`` (per method, step and frame), ``faithfulness.md``, ``summary.json``
(what ``task=report`` collects), ``deletion.png``, ``insertion.png``, ``sanity.png``, and a W&B run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.nn import functional as F
from tqdm import tqdm

from fls.errors import ConfigError
from fls.evaluation.report_tables import csv_text
from fls.gaze.baselines import CENTER_PRIOR, RANDOM, center_prior
from fls.locks import LOCK_FILE, hold, remove_orphans
from fls.rundir import atomic_path, atomic_write_text, make_dirs

if TYPE_CHECKING:
    from fls.evaluation.agent import Agent
    from fls.evaluation.loading import Loaded
    from fls.evaluation.sanity import SanityResult

BASELINE_STACKS = ("blur", "mean")
BASELINE_ORDERS = (RANDOM, CENTER_PRIOR)
CURVES = ("deletion", "insertion")
ScoreFunction = Callable[[torch.Tensor], torch.Tensor]
"""(B, 4, 84, 84) floats in 0..255 -> (B, A) action logits (any additive normalisation)."""


# ----------------------------------------------------------------------------------------------------------------
# Drawing frames from the evaluation games


@dataclass
class DrawnFrames:
    """Network inputs drawn from evaluation games, with where each came from."""

    observations: np.ndarray
    """(N, 4, 84, 84) uint8."""
    episodes: np.ndarray
    """Evaluation episode index of each frame (episode i = game 0 of stream i)."""
    steps: np.ndarray
    """Agent step of the game at which the frame was the input."""
    seen: int
    """How many inputs the frames were drawn from."""
    lengths: np.ndarray
    """Agent steps played of each game (its full length unless ``max_steps`` stopped it; see ``finished``)."""
    finished: np.ndarray
    """Whether each game reached its end (game over or the evaluation time limit)."""


def draw_frames(
    agent: Agent,
    game: Any,
    frames: int,
    *,
    games: int,
    base_seed: int,
    max_episode_steps: int | None,
    seed: int,
    deterministic: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> DrawnFrames:
    """Play evaluation episodes 0..games-1 (the first game of streams 0..games-1, as :func:`run_episodes` plays
    them) and draw ``frames`` of their inputs uniformly (reservoir sampling; fewer if the games are shorter).

    ``max_steps`` stops after that many inputs in all (None: the games are played to their end).
    """
    from fls.envs import make_vec_env
    from fls.evaluation.runner import choose_actions, episode_rng

    env = make_vec_env(
        game,
        num_envs=games,
        seed=base_seed,
        clip_rewards=False,
        episodic_life=True,
        max_episode_steps=max_episode_steps,
    )
    reservoir = np.empty((frames, *env.observation_space.shape), np.uint8)
    where = np.zeros((frames, 2), np.int64)
    pick = np.random.default_rng([int(seed), 0])
    rngs = [episode_rng(base_seed, stream) for stream in range(games)]
    playing = np.ones(games, bool)
    steps = np.zeros(games, np.int64)
    sample = agent.stochastic and not deterministic
    seen = 0
    bar = tqdm(desc="draw frames", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        env.reset()  # the runner's sequence: reset everything, then seed every stream
        obs = env.reset_games(np.ones(games, bool), [base_seed + stream for stream in range(games)])
        while playing.any() and (max_steps is None or seen < max_steps):
            for j in np.flatnonzero(playing):
                slot = seen if seen < frames else int(pick.integers(0, seen + 1))
                if slot < frames:
                    reservoir[slot] = obs[j]
                    where[slot] = (j, steps[j])
                seen += 1
            scores = agent.scores(obs).float().cpu().numpy()
            actions = choose_actions(scores, [r if p else None for r, p in zip(rngs, playing, strict=True)], sample)
            obs, _, _, infos = env.step(actions)
            bar.update(int(playing.sum()))
            steps += playing
            for j, info in enumerate(infos):
                if playing[j] and "episode" in info:
                    playing[j] = False
    finally:
        bar.close()
        env.close()
    kept = min(frames, seen)
    return DrawnFrames(reservoir[:kept], where[:kept, 0], where[:kept, 1], seen, steps, ~playing)


# ----------------------------------------------------------------------------------------------------------------
# Orders and curves


def tie_keys(frames: int, size: int, seed: int) -> np.ndarray:
    """(frames, size) seeded random keys that break ties in every map's order the same way for all methods."""
    return np.random.default_rng([int(seed), 1]).random((frames, size))


def pixel_ranks(maps: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(N, H*W) rank of each pixel in its map's descending order of salience (0 = most salient).

    Equal values are ordered by ``keys`` (so a flat region is not removed row by row from the top); NaN counts
    as least salient.
    """
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    flat = np.where(np.isnan(flat), -np.inf, flat)
    order = np.lexsort((keys, -flat), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None].repeat(len(flat), 0), axis=-1)
    return ranks


def baseline_orders(frames: int, size: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    """Maps whose order is the random baseline (uniform noise, seeded) and the centre prior, (N, H, W) each."""
    noise = np.random.default_rng([int(seed), 2]).random((frames, *size))
    centre = np.broadcast_to(center_prior(size), (frames, *size))
    return {RANDOM: noise, CENTER_PRIOR: centre}


def percent_steps(step: int) -> np.ndarray:
    """0, step, 2 step, ..., 100 (percent of the pixels)."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= step <= 100 or 100 % step:
        raise ConfigError(
            f"faithfulness.percent_step must be an integer that divides 100 (1, 2, 5, 10, ...), got {step}"
        )
    return np.arange(0, 101, int(step), dtype=np.float64)


def auc(curves: np.ndarray, percents: np.ndarray) -> np.ndarray:
    """Area under each (N, K) curve against the fraction of pixels (0..1), by the trapezoid rule."""
    x = np.asarray(percents, np.float64) / 100.0
    y = np.asarray(curves, np.float64)
    return ((y[:, 1:] + y[:, :-1]) * np.diff(x)[None]).sum(axis=1) / 2.0


@dataclass
class Curves:
    """Deletion and insertion curves of one order on N frames at the K percentages."""

    percents: np.ndarray
    deletion: np.ndarray
    """(N, K) probability of the explained action as pixels are replaced by the baseline."""
    insertion: np.ndarray
    """(N, K) the same as pixels are restored into the baseline."""
    deletion_same: np.ndarray
    """(N, K) whether the greedy action is still the explained one (deletion)."""
    insertion_same: np.ndarray

    def aucs(self) -> dict[str, np.ndarray]:
        """Per-frame areas: ``deletion_auc``, ``insertion_auc`` and the same-action fractions' areas."""
        return {
            "deletion_auc": auc(self.deletion, self.percents),
            "insertion_auc": auc(self.insertion, self.percents),
            "deletion_same_auc": auc(self.deletion_same, self.percents),
            "insertion_same_auc": auc(self.insertion_same, self.percents),
        }


def explained_actions(score_fn: ScoreFunction, observations: torch.Tensor, batch_size: int) -> tuple[Any, Any]:
    """(greedy action, its probability) on the clean frames."""
    actions, probs = [], []
    with torch.no_grad():
        for start in range(0, len(observations), batch_size):
            logp = F.log_softmax(score_fn(observations[start : start + batch_size]).float(), dim=1)
            best = logp.argmax(dim=1)
            actions.append(best)
            probs.append(logp.gather(1, best[:, None])[:, 0].exp())
    return torch.cat(actions), torch.cat(probs)


def perturbation_curves(
    score_fn: ScoreFunction,
    observations: torch.Tensor,
    baseline: torch.Tensor,
    ranks: torch.Tensor | np.ndarray,
    actions: torch.Tensor,
    percents: np.ndarray,
    *,
    batch_size: int = 256,
    on_batch: Callable[[int], None] = lambda _: None,
) -> Curves:
    """Deletion and insertion curves of the pixel order ``ranks`` (N, H*W) on ``observations`` (N, C, H, W).

    ``baseline`` is (N, C, H, W) or (1, C, H, W); pixel (i, j) is replaced in every channel (the stacked frames)
    at once. The 2 K perturbed stacks of a frame are built together and evaluated ``batch_size`` at a time;
    ``on_batch(n)`` is called after each forward pass of n stacks.
    """
    n, c, h, w = observations.shape
    device = observations.device
    ranks = torch.as_tensor(np.asarray(ranks), device=device).view(n, 1, 1, h, w)
    counts = torch.as_tensor(np.rint(np.asarray(percents) / 100.0 * h * w).astype(np.int64), device=device)
    k = len(counts)
    probs = torch.empty(n, 2 * k, device=device)
    same = torch.empty(n, 2 * k, dtype=torch.bool, device=device)
    per_chunk = max(1, batch_size // (2 * k))
    with torch.no_grad():
        for start in range(0, n, per_chunk):
            stop = min(start + per_chunk, n)
            x = observations[start:stop, None]  # (m, 1, C, H, W)
            b = baseline[start:stop, None] if len(baseline) == n else baseline[:, None]
            masks = ranks[start:stop] < counts.view(1, k, 1, 1, 1)  # (m, K, 1, H, W): removed / restored pixels
            stacks = torch.cat([torch.where(masks, b, x), torch.where(masks, x, b)], dim=1).reshape(-1, c, h, w)
            target = actions[start:stop].repeat_interleave(2 * k)
            for part in range(0, len(stacks), batch_size):
                logits = score_fn(stacks[part : part + batch_size]).float()
                rows = slice(part, part + len(logits))
                logp = F.log_softmax(logits, dim=1).gather(1, target[rows, None])[:, 0]
                probs.view(-1)[start * 2 * k + part : start * 2 * k + part + len(logits)] = logp.exp()
                same.view(-1)[start * 2 * k + part : start * 2 * k + part + len(logits)] = (
                    logits.argmax(dim=1) == target[rows]
                )
                on_batch(len(logits))
    p, s = probs.cpu().numpy(), same.cpu().numpy()
    return Curves(np.asarray(percents, np.float64), p[:, :k], p[:, k:], s[:, :k], s[:, k:])


def baseline_stack(observations: torch.Tensor, kind: str, sigma: float = 3.0) -> torch.Tensor:
    """The stack pixels are replaced with: each stack blurred (Gaussian ``sigma``), or the per-pixel mean frame."""
    from fls.saliency.perturbation import gaussian_blur

    if kind == "blur":
        return gaussian_blur(observations, sigma)
    if kind == "mean":
        return observations.mean(dim=0, keepdim=True)
    raise ConfigError(f"faithfulness.baseline must be one of {', '.join(BASELINE_STACKS)}, got '{kind}'")


# ----------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class FaithfulnessResult:
    """Everything one faithfulness evaluation measured."""

    frames: DrawnFrames
    actions: np.ndarray
    probs: np.ndarray
    curves: dict[str, Curves]
    """By method name (methods first, then the random and centre-prior baselines)."""
    sanity: list[SanityResult]
    sanity_frames: int

    def kind(self, name: str) -> str:
        """``baseline`` for the random and centre-prior orders, else ``method``."""
        return "baseline" if name in BASELINE_ORDERS else "method"

    def summary(self) -> dict[str, dict[str, float]]:
        """Per order: mean and std (over frames, population) of each AUC."""
        out = {}
        for name, curves in self.curves.items():
            row: dict[str, Any] = {"kind": self.kind(name), "frames": len(curves.deletion)}
            for key, values in curves.aucs().items():
                row[key], row[f"{key}_std"] = float(values.mean()), float(values.std())
            out[name] = row
        return out

    def sanity_steps(self) -> list[str]:
        """The randomisation steps in cascade order."""
        steps: list[str] = []
        for r in self.sanity:
            if r.step not in steps:
                steps.append(r.step)
        return steps

    def sanity_summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per method and step: mean and std over frames of Spearman and SSIM, and how many frames had an
        undefined correlation (a constant map)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for r in self.sanity:
            finite = r.spearman[np.isfinite(r.spearman)]
            out.setdefault(r.method, {})[r.step] = {
                "spearman": float(finite.mean()) if len(finite) else math.nan,
                "spearman_std": float(finite.std()) if len(finite) else math.nan,
                "ssim": float(r.ssim.mean()),
                "ssim_std": float(r.ssim.std()),
                "undefined": int(len(r.spearman) - len(finite)),
            }
        return out


FRAME_COLUMNS = (
    "method",
    "kind",
    "frame",
    "episode",
    "step",
    "action",
    "action_prob",
    "deletion_auc",
    "insertion_auc",
    "deletion_same_auc",
    "insertion_same_auc",
)


def frames_csv(result: FaithfulnessResult) -> str:
    """faithfulness.csv: one row per (method, frame)."""
    rows = []
    for name, curves in result.curves.items():
        aucs = curves.aucs()
        for i in range(len(curves.deletion)):
            rows.append(
                {
                    "method": name,
                    "kind": result.kind(name),
                    "frame": i,
                    "episode": int(result.frames.episodes[i]),
                    "step": int(result.frames.steps[i]),
                    "action": int(result.actions[i]),
                    "action_prob": float(result.probs[i]),
                    **{key: float(values[i]) for key, values in aucs.items()},
                }
            )
    return csv_text(rows, FRAME_COLUMNS)


def curves_csv(result: FaithfulnessResult) -> str:
    """curves.csv: the mean (and std over frames) of each curve at each percentage, per method."""
    rows = []
    for name, curves in result.curves.items():
        for j, percent in enumerate(curves.percents):
            row: dict[str, Any] = {"method": name, "kind": result.kind(name), "percent": float(percent)}
            for curve in CURVES:
                values = getattr(curves, curve)[:, j]
                row[f"{curve}_mean"], row[f"{curve}_std"] = float(values.mean()), float(values.std())
                row[f"{curve}_same"] = float(getattr(curves, f"{curve}_same")[:, j].mean())
            rows.append(row)
    columns = ["method", "kind", "percent"] + [f"{c}_{s}" for c in CURVES for s in ("mean", "std", "same")]
    return csv_text(rows, columns)


def sanity_csv(result: FaithfulnessResult) -> str:
    """sanity.csv: Spearman and SSIM per (method, randomisation step, frame)."""
    rows = [
        {"method": r.method, "step": r.step, "frame": i, "spearman": float(rho), "ssim": float(s)}
        for r in result.sanity
        for i, (rho, s) in enumerate(zip(r.spearman, r.ssim, strict=True))
    ]
    return csv_text(rows, ("method", "step", "frame", "spearman", "ssim"))


STEP_LABELS = {"heads": "heads", "hidden": "hidden 512", "attention": "attention", "full": "all (independent)"}


def _fmt(mean: float, std: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.3f} ± {std:.3f}"


def faithfulness_markdown(result: FaithfulnessResult, setting: Mapping[str, Any]) -> str:
    """faithfulness.md: the AUC table (methods beside the baselines) and the sanity-check tables."""
    summary = result.summary()
    n = len(result.frames.observations)
    lines = [
        f"# Faithfulness: {setting['game']}, `{setting['checkpoint']}`",
        "",
        f"{n} frames drawn from {setting['games']} evaluation games ({result.frames.seen} inputs, seed "
        f"{setting['seed']}); pixels replaced by the {setting['baseline_text']}; k = 0, {setting['percent_step']}, …, "
        "100 % of the 84×84 pixels (all 4 stacked frames). AUC over the fraction of pixels of the probability of the "
        "action the policy prefers on the clean frame; mean ± std over frames.",
        "",
        "| Method | Deletion AUC ↓ | Insertion AUC ↑ | Deletion, same action ↓ | Insertion, same action ↑ |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        label = {RANDOM: "*random order*", CENTER_PRIOR: "*centre prior*"}.get(name, name)
        cells = [
            _fmt(row[k], row[f"{k}_std"])
            for k in ("deletion_auc", "insertion_auc", "deletion_same_auc", "insertion_same_auc")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "'Same action': area under the fraction of frames whose greedy action is still the explained one.",
        "",
    ]
    if result.sanity:
        steps = result.sanity_steps()
        sanity = result.sanity_summary()
        header = "| Method | " + " | ".join(STEP_LABELS.get(s, s) for s in steps) + " |"
        rule = "|---|" + "---:|" * len(steps)
        lines += [
            "## Sanity checks (cascading randomisation)",
            "",
            f"{result.sanity_frames} frames. Each column re-initialises one more layer group, from the heads down "
            "(cumulative); the last column is a fully and independently randomised network. A map that does not "
            "change when the weights are destroyed (values near 1) does not explain what the agent learned.",
            "",
            "Spearman rank correlation with the trained network's maps (mean ± std over frames):",
            "",
            header,
            rule,
        ]
        for method, by_step in sanity.items():
            cells = []
            for s in steps:
                cell = _fmt(by_step[s]["spearman"], by_step[s]["spearman_std"])
                if by_step[s]["undefined"]:
                    cell += f" ({by_step[s]['undefined']} constant)"
                cells.append(cell)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "SSIM (Gaussian window 11, σ 1.5, maps in [0, 1]):", "", header, rule]
        for method, by_step in sanity.items():
            lines.append(
                f"| {method} | " + " | ".join(_fmt(by_step[s]["ssim"], by_step[s]["ssim_std"]) for s in steps) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def plot_curves(result: FaithfulnessResult, curve: str, path: Path) -> None:
    """Mean deletion or insertion curve, one line per method (baselines dashed), AUC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    summary = result.summary()
    for i, (name, curves) in enumerate(result.curves.items()):
        style = {"linestyle": "--", "color": "0.35" if name == RANDOM else "0.65"} if name in BASELINE_ORDERS else {}
        if not style:
            style = {"color": plt.get_cmap("tab10")(i % 10)}
        mean = getattr(curves, curve).mean(axis=0)
        ax.plot(curves.percents, mean, label=f"{name} (AUC {summary[name][f'{curve}_auc']:.3f})", **style)
    ax.set_xlabel("pixels " + ("removed" if curve == "deletion" else "restored") + " (%)")
    ax.set_ylabel("probability of the explained action")
    ax.set_title(f"{curve.capitalize()} ({'lower' if curve == 'deletion' else 'higher'} AUC is better)")
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)


def plot_sanity(result: FaithfulnessResult, path: Path) -> None:
    """Mean Spearman and SSIM against the randomisation step (the trained network first, at 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result.sanity_steps()
    sanity = result.sanity_summary()
    labels = ["trained", *(STEP_LABELS.get(s, s) for s in steps)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (method, by_step) in enumerate(sanity.items()):
        color = plt.get_cmap("tab10")(i % 10)
        for ax, key in zip(axes, ("spearman", "ssim"), strict=True):
            ax.plot(range(len(labels)), [1.0, *(by_step[s][key] for s in steps)], marker="o", color=color, label=method)
    for ax, title in zip(axes, ("Spearman rank correlation", "SSIM"), strict=True):
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_title(f"{title} with the trained network's maps")
        ax.set_xlabel("randomised down to")
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# The task


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
    from fls.evaluation.episodes import check_seeds, evaluation_dir
    from fls.evaluation.video_task import saliency_methods

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
        else evaluation_dir(cfg, loaded.checkpoint, loaded.run_dir)
    )
    if not configured:
        out = out / "faithfulness" / faithfulness_folder(list(methods), s["baseline"])
    identity = result_identity(cfg, loaded, s, list(methods))
    make_dirs(out)
    with hold(out / LOCK_FILE, f"faithfulness results in {out}"):  # one writer per results folder
        remove_orphans(out)
        check_same_identity(out, identity)
        return _compute_and_write(cfg, loaded, s, methods, out)


# settings that change how the work is batched, not its numbers: a folder's results may be recomputed with others
_BATCHING = ("batch_size", "map_batch_size")


def faithfulness_folder(methods: list[str], baseline: str) -> str:
    """The default folder below <eval dir>/faithfulness/, named by what it scores so that another set of methods
    or another baseline never replaces it: ``attention-gradcam_blur``."""
    return f"{'-'.join(methods)}_{baseline}"


def result_identity(cfg: DictConfig, loaded: Loaded, s: Mapping[str, Any], methods: list[str]) -> dict[str, Any]:
    """What the numbers of a faithfulness result depend on (kept in its summary.json)."""
    return {
        "checkpoint": str(loaded.checkpoint),
        "digest": loaded.agent.digest,
        "game": loaded.game,
        "eval_seed": int(cfg.eval.seed),
        "deterministic": bool(cfg.eval.deterministic),
        **{k: v for k, v in s.items() if k not in _BATCHING},
        "methods": methods,
        "target": "action",
        "gradcam_rectified": bool(cfg.saliency.get("gradcam_rectified", False)),
        "layer": cfg.saliency.layer,
    }


def check_same_identity(out: Path, identity: Mapping[str, Any]) -> None:
    """Refuse to replace results in ``out`` made from another model or with other settings."""
    path = out / "summary.json"
    if not path.is_file():
        return
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        earlier = None
    if not isinstance(earlier, dict):
        differs = "results of an unknown set-up"
    else:
        key = next((k for k in identity if earlier.get(k) != identity[k]), None)
        if key is None:
            return  # the same computation again: it gives the same numbers
        differs = f"results with {key}={earlier.get(key)!r}, not {identity[key]!r}"
    raise ConfigError(
        f"{out} already holds faithfulness {differs}; give faithfulness.out=<another folder> to keep both, "
        f"or delete {out} to replace them"
    )


def _compute_and_write(cfg: DictConfig, loaded: Loaded, s: dict[str, Any], methods: dict, out: Path) -> Path:
    """The work of :func:`faithfulness_task` once its output folder is held."""
    from fls.evaluation.sanity import cascading_randomisation, randomisation_groups

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
    )
    n = len(drawn.observations)
    if n < s["frames"]:
        print(f"the games had only {n} inputs: using all of them", flush=True)
    obs = torch.as_tensor(drawn.observations, device=device)
    stacks = obs.float()

    def score_fn(x: torch.Tensor) -> torch.Tensor:
        return agent.scores(x)

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
    baseline_text = (
        f"blurred stack (Gaussian σ {s['blur_sigma']:g})" if s["baseline"] == "blur" else "per-pixel mean frame"
    )
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


def write_outputs(result: FaithfulnessResult, setting: Mapping[str, Any], out: Path) -> None:
    """Every file of a faithfulness evaluation, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "faithfulness.csv", frames_csv(result))
    atomic_write_text(out / "curves.csv", curves_csv(result))
    atomic_write_text(out / "faithfulness.md", faithfulness_markdown(result, setting))
    summary = {**setting, "results": result.summary(), "sanity": result.sanity_summary()}
    summary["sanity_steps"] = result.sanity_steps()
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=True) + "\n")
    plot_curves(result, "deletion", out / "deletion.png")
    plot_curves(result, "insertion", out / "insertion.png")
    if result.sanity:
        atomic_write_text(out / "sanity.csv", sanity_csv(result))
        plot_sanity(result, out / "sanity.png")


def log_to_wandb(result: FaithfulnessResult, setting: Mapping[str, Any], out: Path, *, mode: str, project: str) -> None:
    """The AUC and sanity tables and the three figures as a W&B run (job_type=faithfulness)."""
    import wandb

    from fls.logging import init_wandb

    run = init_wandb(
        out,
        mode=mode,
        project=project,
        name=f"faithfulness-{setting['game']}-{Path(str(setting['checkpoint'])).stem}",
        config={k: v for k, v in setting.items() if k not in ("percents", "baseline_text")},
        tags=[f"env:{setting['game']}", "faithfulness"],
        job_type="faithfulness",
    )
    columns = ["method", "kind", "deletion_auc", "deletion_auc_std", "insertion_auc", "insertion_auc_std", "frames"]
    rows = [[name, *(row[c] for c in columns[1:])] for name, row in result.summary().items()]
    logged: dict[str, Any] = {
        "faithfulness/table": wandb.Table(columns=columns, data=rows),
        "faithfulness/deletion": wandb.Image(str(out / "deletion.png")),
        "faithfulness/insertion": wandb.Image(str(out / "insertion.png")),
    }
    if result.sanity:
        sanity_rows = [
            [method, step, v["spearman"], v["spearman_std"], v["ssim"], v["ssim_std"], v["undefined"]]
            for method, by_step in result.sanity_summary().items()
            for step, v in by_step.items()
        ]
        sanity_columns = ["method", "step", "spearman", "spearman_std", "ssim", "ssim_std", "undefined"]
        logged["faithfulness/sanity_table"] = wandb.Table(columns=sanity_columns, data=sanity_rows)
        logged["faithfulness/sanity"] = wandb.Image(str(out / "sanity.png"))
    run.log(logged)
    run.summary.update(
        {
            f"faithfulness/{name}/{key}": row[key]
            for name, row in result.summary().items()
            for key in ("deletion_auc", "insertion_auc")
        }
    )
    run.finish()
