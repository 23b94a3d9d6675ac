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
   saliency uses) or, with ``faithfulness.baseline=mean``, the per-pixel mean of the other drawn frames
   (leave-one-out). Recorded per
   step: the probability of the explained action and whether the greedy action is still that action. The area
   under each curve over the fraction of pixels (trapezoid rule, 0..1) summarises it: deletion lower is better,
   insertion higher. A random order (seeded) and a centre-prior order (fls.gaze.baselines) are scored by the same
   code as the methods.
4. **Sanity checks** (:mod:`fls.saliency.metrics.sanity`): cascading randomisation of the weights, Spearman rank
   correlation and SSIM of each method's maps before and after every step.

This module measures (frames, orders, curves); :mod:`fls.saliency.metrics.faithfulness_results` holds and writes the
results, :mod:`fls.tasks.faithfulness` is ``evaluate.py task=faithfulness``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from fls.errors import ConfigError
from fls.gaze.baselines import CENTER_PRIOR, RANDOM, center_prior

if TYPE_CHECKING:
    from fls.agents.agent import Agent
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
    repeat_action_probability: float = 0.0,
) -> DrawnFrames:
    """Play evaluation episodes 0..games-1 (the first game of streams 0..games-1, as :func:`run_episodes` plays
    them) and draw ``frames`` of their inputs uniformly (reservoir sampling; fewer if the games are shorter).

    ``max_steps`` stops after that many inputs in all (None: the games are played to their end).
    ``repeat_action_probability``: sticky actions, as the evaluation plays them.
    """
    from fls.envs import make_vec_env
    from fls.evaluation.runner import choose_actions, episode_rng
    from fls.model_files import check_finite_scores

    env = make_vec_env(
        game,
        num_envs=games,
        seed=base_seed,
        clip_rewards=False,
        episodic_life=True,
        max_episode_steps=max_episode_steps,
        repeat_action_probability=repeat_action_probability,
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
            check_finite_scores(scores[playing], str(agent.path), f"at step {int(steps.max())} of the drawn games")
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


MEAN_MIN_FRAMES = 2
"""The mean baseline of a frame is the mean of the other frames: it needs at least one other."""


def baseline_stack(observations: torch.Tensor, kind: str, sigma: float = 3.0) -> torch.Tensor:
    """The (N, C, H, W) stacks pixels are replaced with: each stack blurred (Gaussian ``sigma``), or, for ``mean``,
    the per-pixel mean of the other N - 1 stacks (leave-one-out: a frame is never part of its own baseline, which
    would leave a single frame unperturbed)."""
    from fls.saliency.perturbation import gaussian_blur

    if kind == "blur":
        return gaussian_blur(observations, sigma)
    if kind == "mean":
        n = len(observations)
        if n < MEAN_MIN_FRAMES:
            raise ConfigError(
                f"faithfulness.baseline=mean replaces a frame's pixels by the mean of the other frames; "
                f"{n} frame has none (draw at least {MEAN_MIN_FRAMES} frames, or use faithfulness.baseline=blur)"
            )
        total = observations.sum(dim=0, keepdim=True, dtype=torch.float64)
        return ((total - observations.double()) / (n - 1)).to(observations.dtype)
    raise ConfigError(f"faithfulness.baseline must be one of {', '.join(BASELINE_STACKS)}, got '{kind}'")
