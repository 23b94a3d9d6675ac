"""The batched episode runner: many games in the native vector env, one forward pass per step for all of them.

Every episode has its own seed (``base_seed + index``) and its own action-sampling generator, and is played from
its reset to the end of the whole game, so an episode's outcome does not depend on which env slot played it, on
the batch it was in, or on the order episodes were run. That is what makes evaluation resumable and shardable
without bias: the set of episodes is fixed before any is played, and all of them are played to the end
(stopping when "N episodes have finished" would favour short games).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from fls.envs import make_vec_env
from fls.envs.games import GameSpec
from fls.evaluation.agent import Agent
from fls.evaluation.records import Episode


def episode_rng(base_seed: int, index: int) -> np.random.Generator:
    """The action-sampling generator of one episode."""
    return np.random.default_rng([int(base_seed), int(index)])


def choose_actions(scores: np.ndarray, rngs: Sequence[np.random.Generator | None], sample: bool) -> np.ndarray:
    """Greedy actions, or samples from softmax(scores) by the Gumbel-max trick with each row's own generator."""
    if not sample:
        return scores.argmax(axis=1)
    noisy = scores.astype(np.float64, copy=True)
    for row, rng in enumerate(rngs):
        if rng is not None:
            noisy[row] += rng.gumbel(size=scores.shape[1])
    return noisy.argmax(axis=1)


def run_episodes(
    agent: Agent,
    game: str | GameSpec,
    indices: Sequence[int],
    *,
    base_seed: int,
    num_envs: int = 16,
    deterministic: bool = False,
    max_episode_steps: int | None = None,
    on_episode: Callable[[Episode], None] = lambda _: None,
    progress: bool = True,
    num_threads: int = 0,
) -> list[Episode]:
    """Play the episodes ``indices`` (seed = base_seed + index) and return their records in finishing order.

    ``on_episode`` is called as each episode ends (evaluation appends it to the records file there).
    """
    pending = list(indices)
    finished: list[Episode] = []
    if not pending:
        return finished
    n = min(num_envs, len(pending))
    env = make_vec_env(
        game,
        num_envs=n,
        seed=base_seed,
        clip_rewards=False,
        episodic_life=True,
        max_episode_steps=max_episode_steps,
        num_threads=num_threads,
    )
    sample = agent.stochastic and not deterministic
    slots: list[int | None] = [None] * n
    rngs: list[np.random.Generator | None] = [None] * n
    bar = tqdm(
        total=len(pending), unit="episode", desc="evaluate", dynamic_ncols=True, disable=not progress, smoothing=0.05
    )
    try:
        env.reset()
        start = np.zeros(n, bool)
        seeds = []
        for slot in range(n):
            slots[slot] = pending.pop(0)
            rngs[slot] = episode_rng(base_seed, slots[slot])
            start[slot] = True
            seeds.append(base_seed + slots[slot])
        obs = env.reset_games(start, seeds)
        steps = 0
        while any(s is not None for s in slots):
            scores = agent.scores(obs).float().cpu().numpy()
            obs, _, _, infos = env.step(choose_actions(scores, rngs, sample))
            steps += n
            start[:] = False
            seeds = []
            for slot, info in enumerate(infos):
                if slots[slot] is None or "episode" not in info:
                    continue
                index = slots[slot]
                episode = Episode(
                    index=index,
                    seed=base_seed + index,
                    score=float(info["episode"]["r"]),
                    length=int(info["episode"]["l"]),
                    truncated=bool(info.get("TimeLimit.truncated")),
                    digest=agent.digest,
                )
                finished.append(episode)
                on_episode(episode)
                bar.update(1)
                if pending:
                    slots[slot] = pending.pop(0)
                    rngs[slot] = episode_rng(base_seed, slots[slot])
                    start[slot] = True
                    seeds.append(base_seed + slots[slot])
                else:
                    slots[slot], rngs[slot] = None, None
            if seeds:
                obs = env.reset_games(start, seeds)
            if finished and bar.n % 8 == 0:
                bar.set_postfix(mean_score=f"{np.mean([e.score for e in finished]):.1f}", steps=steps, refresh=False)
    finally:
        bar.close()
        env.close()
    return finished
