"""The batched episode runner: many games on the native vector env, one forward pass per step for a batch.

Episodes are laid out as the paper's protocol (16 envs x the first 512 games of each): episode ``i`` is game
``i // streams`` of stream ``i % streams``, a stream being one env whose no-op generator is seeded once with
``base_seed + stream``; each episode also has its own action-sampling generator. Every episode of the set is
played to the end of the whole game, so no length bias creeps in (stopping when "N episodes have finished"
favours short games), and an episode's outcome is a function of its index alone: a resumed stream reseeds its env
and skips the no-op draws of the games already recorded (an unseeded reset draws one; a reseed reloads the ROM and
costs 20 times more, which is why episodes are not reseeded one by one). Shards split the streams.

Actor-critics sample from their logits; Q-learning agents (DQN, QR-DQN) play ε-greedy as rl-zoo3's ``enjoy`` does
(SB3's ``predict``: with probability ε a uniformly random action), at the ε the archive saved unless told otherwise
(:func:`acting_epsilon`). Either way the draws come from the episode's own generator.

The envs are split into two groups stepped in turn: while the C++ threads step one group, the policy runs on the
other group's observations, so env stepping and inference overlap instead of waiting for each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from fls.agents.agent import Agent, saved_exploration_rate
from fls.envs import make_vec_env
from fls.envs.games import GameSpec
from fls.errors import ConfigError
from fls.evaluation.records import Episode
from fls.model_files import check_finite_scores
from fls.progress import progress_bar


def episode_rng(base_seed: int, index: int) -> np.random.Generator:
    """The action-sampling generator of one episode."""
    return np.random.default_rng([int(base_seed), int(index)])


def acting_epsilon(agent: Agent, deterministic: bool, epsilon: float | None) -> float | None:
    """The ε of an ε-greedy Q-learning agent: 0 when ``deterministic``, else ``epsilon`` if given, else the
    exploration rate saved in the agent's archive (rl-zoo3's ``enjoy``). None for actor-critics, which sample
    from their policy (an ``epsilon`` for them is refused)."""
    if epsilon is not None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0.0 <= float(epsilon) <= 1.0:
            raise ConfigError(f"eval.epsilon must be a probability in [0, 1] or null, got {epsilon!r}")
        if agent.stochastic:
            raise ConfigError(
                f"eval.epsilon applies to Q-learning agents (DQN, QR-DQN); {agent.algorithm} samples its actions "
                "from its policy (eval.deterministic=true for greedy play)"
            )
        if deterministic and float(epsilon) > 0:
            raise ConfigError(f"eval.epsilon={epsilon} contradicts greedy play (deterministic=true): drop one")
    if agent.stochastic:
        return None
    if deterministic:
        return 0.0
    if epsilon is not None:
        return float(epsilon)
    saved = saved_exploration_rate(agent.path)
    if saved is None:
        raise ConfigError(
            f"{agent.path} records no exploration rate: set eval.epsilon=<ε> (rl-zoo3's Atari agents: 0.01) "
            "or eval.deterministic=true"
        )
    return saved


def choose_actions(
    scores: np.ndarray, rngs: Sequence[np.random.Generator | None], sample: bool, epsilon: float = 0.0
) -> np.ndarray:
    """Greedy actions, ε-greedy ones (``epsilon`` > 0), or samples from softmax(scores) by the Gumbel-max trick,
    each row drawing from its own generator (rows without one act greedily)."""
    if epsilon > 0:
        actions = scores.argmax(axis=1)
        for row, rng in enumerate(rngs):
            if rng is not None and rng.random() < epsilon:
                actions[row] = rng.integers(scores.shape[1])
        return actions
    if not sample:
        return scores.argmax(axis=1)
    noisy = scores.astype(np.float64, copy=True)
    for row, rng in enumerate(rngs):
        if rng is not None:
            noisy[row] += rng.gumbel(size=scores.shape[1])
    return noisy.argmax(axis=1)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Temporarily run torch's CPU kernels on ``count`` threads (None: leave as is)."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Group:
    """One vector env; slot j plays the games of stream ``streams[j]`` in order."""

    def __init__(self, env, streams: list[int], todo: dict[int, list[int]], n_streams: int, base_seed: int):
        self.env = env
        self.streams = streams
        self.todo = [set(todo[s]) for s in streams]  # games of each stream still to record
        self.game = [min(todo[s]) for s in streams]  # the game each slot is playing
        self.n_streams = n_streams
        self.base_seed = base_seed
        self.rngs: list[np.random.Generator | None] = [None] * len(streams)
        self.obs: np.ndarray | None = None
        for j in range(len(streams)):
            self._start(j)

    def index(self, j: int) -> int:
        return self.game[j] * self.n_streams + self.streams[j]

    def _start(self, j: int) -> None:
        active = bool(self.todo[j]) and self.game[j] <= max(self.todo[j])
        self.rngs[j] = episode_rng(self.base_seed, self.index(j)) if active else None

    @property
    def active(self) -> bool:
        return any(rng is not None for rng in self.rngs)

    def begin(self) -> None:
        """Seed every stream, then skip the no-op draws of the games before each slot's first game."""
        self.env.reset()
        everyone = np.ones(self.env.num_envs, bool)
        self.obs = self.env.reset_games(everyone, [self.base_seed + s for s in self.streams])
        skip = np.array(self.game)
        for round_ in range(int(skip.max(initial=0))):
            self.obs = self.env.reset_games(skip > round_)

    def next_game(self, j: int) -> int | None:
        """Move slot j to its stream's next game (the env has already reset itself); return the finished index."""
        finished = self.index(j)
        self.todo[j].discard(self.game[j])
        self.game[j] += 1
        self._start(j)
        return finished


def run_episodes(
    agent: Agent,
    game: str | GameSpec,
    indices: Sequence[int],
    *,
    base_seed: int,
    streams: int = 16,
    deterministic: bool = False,
    epsilon: float | None = None,
    max_episode_steps: int | None = None,
    repeat_action_probability: float = 0.0,
    on_episode: Callable[[Episode], None] = lambda _: None,
    progress: bool = True,
    num_threads: int = 0,
    overlap: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Episode]:
    """Play the episodes ``indices`` (episode i: game i // streams of stream i % streams, whose env is seeded
    base_seed + stream) and return their records in finishing order.

    ``epsilon``: the ε of a Q-learning agent (:func:`acting_epsilon`; None: greedy), ignored when ``deterministic``.
    ``repeat_action_probability``: sticky actions (0: the paper's protocol). With sticky actions ALE's repeat draws
    continue across the games of a stream, so a game's outcome also depends on the stream's earlier games: an
    interrupted and resumed evaluation plays other (equally valid) games after the resume point than an
    uninterrupted one.
    ``num_threads``: C++ threads of each vector env (two with ``overlap``); 0: ale-py's min(envs, cores).
    ``on_episode`` is called as each episode ends (evaluation appends it to the records file there).
    ``should_stop`` is asked before each step: once it answers True the episodes in play are dropped and the
    episodes finished so far returned.
    ``overlap`` steps two groups of envs in turn so that inference on one overlaps stepping of the other; on a
    CPU, torch then uses one thread (the other cores are stepping games): small batches lose little from it,
    and torch's spinning thread pool no longer competes with the emulator threads.
    """
    todo: dict[int, list[int]] = {}
    for index in indices:
        todo.setdefault(index % streams, []).append(index // streams)
    finished: list[Episode] = []
    if not todo:
        return finished
    active_streams = sorted(todo)
    n = len(active_streams)
    split = [active_streams] if n < 2 or not overlap else [active_streams[: n - n // 2], active_streams[n - n // 2 :]]
    groups = [
        _Group(
            make_vec_env(
                game,
                num_envs=len(part),
                seed=base_seed,
                clip_rewards=False,
                episodic_life=True,
                max_episode_steps=max_episode_steps,
                num_threads=num_threads,
                repeat_action_probability=repeat_action_probability,
            ),
            part,
            todo,
            streams,
            base_seed,
        )
        for part in split
    ]
    sample = agent.stochastic and not deterministic
    explore = 0.0 if deterministic or agent.stochastic or epsilon is None else float(epsilon)
    total = sum(len(games) for games in todo.values())
    bar = progress_bar(total, "evaluate", "episode", disable=not progress, smoothing=0.05)

    def act(group: _Group) -> None:
        scores = agent.scores(group.obs).float().cpu().numpy()
        if not np.isfinite(scores).all():
            j = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
            kept = " (records of the episodes already finished are kept)"
            check_finite_scores(scores, str(agent.path), f"in episode {group.index(j)}", kept)
        group.env.step_async(choose_actions(scores, group.rngs, sample, explore))

    def collect(group: _Group) -> None:
        group.obs, _, _, infos = group.env.step_wait()
        for j, info in enumerate(infos):
            if group.rngs[j] is None or "episode" not in info:
                continue
            wanted = group.game[j] in group.todo[j]
            stream, index = group.streams[j], group.next_game(j)
            if not wanted:
                continue
            episode = Episode(
                index=index,
                seed=base_seed + stream,
                game=index // streams,
                score=float(info["episode"]["r"]),
                length=int(info["episode"]["l"]),
                truncated=bool(info.get("TimeLimit.truncated")),
                digest=agent.digest,
            )
            finished.append(episode)
            on_episode(episode)
            bar.update(1)
            bar.set_postfix(mean_score=f"{np.mean([e.score for e in finished]):.1f}", refresh=False)

    cpu_threads = 1 if len(groups) > 1 and agent.device.type == "cpu" else None
    try:
        with torch_threads(cpu_threads):
            for group in groups:
                group.begin()
            in_flight = [False] * len(groups)
            while any(group.active for group in groups) and not should_stop():
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
