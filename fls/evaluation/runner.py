"""The batched episode runner: many games on the native vector env, one forward pass per step for a batch.

Every episode has its own seed (``base_seed + index``) and its own action-sampling generator, and is played from
its reset to the end of the whole game, so an episode's outcome does not depend on which env slot played it, on
the batch it was in, or on the order episodes were run. That is what makes evaluation resumable and shardable
without bias: the set of episodes is fixed before any is played, and all of them are played to the end
(stopping when "N episodes have finished" would favour short games).

The envs are split into two groups stepped in turn: while the C++ threads step one group, the policy runs on the
other group's observations, so env stepping and inference overlap instead of waiting for each other.
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


class _Group:
    """One vector env and the episode each of its slots is playing."""

    def __init__(self, env, base_seed: int):
        self.env = env
        self.base_seed = base_seed
        self.slots: list[int | None] = [None] * env.num_envs
        self.rngs: list[np.random.Generator | None] = [None] * env.num_envs
        self.obs: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return any(slot is not None for slot in self.slots)

    def assign(self, pending: list[int], slots: Sequence[int]) -> None:
        """Start the next pending episodes in ``slots`` (really resetting those games with the episodes' seeds)."""
        mask = np.zeros(self.env.num_envs, bool)
        seeds = []
        for slot in slots:
            if pending:
                index = pending.pop(0)
                self.slots[slot], self.rngs[slot] = index, episode_rng(self.base_seed, index)
                mask[slot] = True
                seeds.append(self.base_seed + index)
            else:
                self.slots[slot], self.rngs[slot] = None, None
        if seeds:
            self.obs = self.env.reset_games(mask, seeds)


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
    sizes = [n] if n < 2 else [n - n // 2, n // 2]
    groups = [
        _Group(
            make_vec_env(
                game,
                num_envs=size,
                seed=base_seed,
                clip_rewards=False,
                episodic_life=True,
                max_episode_steps=max_episode_steps,
                num_threads=num_threads,
            ),
            base_seed,
        )
        for size in sizes
    ]
    sample = agent.stochastic and not deterministic
    bar = tqdm(
        total=len(pending), unit="episode", desc="evaluate", dynamic_ncols=True, disable=not progress, smoothing=0.05
    )

    def act(group: _Group) -> None:
        scores = agent.scores(group.obs).float().cpu().numpy()
        group.env.step_async(choose_actions(scores, group.rngs, sample))

    def collect(group: _Group) -> None:
        group.obs, _, _, infos = group.env.step_wait()
        ended = []
        for slot, info in enumerate(infos):
            index = group.slots[slot]
            if index is None or "episode" not in info:
                continue
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
            ended.append(slot)
        if ended:
            group.assign(pending, ended)
            bar.set_postfix(mean_score=f"{np.mean([e.score for e in finished]):.1f}", refresh=False)

    try:
        for group in groups:
            group.env.reset()
            group.assign(pending, range(group.env.num_envs))
        in_flight = [False] * len(groups)
        while any(group.active for group in groups):
            for g, group in enumerate(groups):
                if in_flight[g]:
                    collect(group)
                    in_flight[g] = False
                if group.active:
                    act(group)  # runs while the other group's games step in their C++ threads
                    in_flight[g] = True
        for g, group in enumerate(groups):
            if in_flight[g]:
                group.env.step_wait()
    finally:
        bar.close()
        for group in groups:
            group.env.close()
    return finished
