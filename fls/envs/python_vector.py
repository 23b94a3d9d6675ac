"""SB3 vector env over Python :class:`~fls.envs.single.AtariCore` envs: the twin of :class:`AtariVecEnv` in Python.

For games the native C++ vector env cannot run: ``BreakoutInfinite`` rewrites RAM between raw frames, and
ale-py's ``ALEVectorInterface`` has no RAM access (only reset/send/recv/get_action_set). It works for every
registered game, and for a game both can run it gives the same trajectories as :class:`AtariVecEnv` (same
seeds and actions -> same observations, rewards, dones and infos; see ``tests/test_envs_infinite.py``):

* each :class:`~fls.envs.single.AtariCore` is the Python twin of one C++ sub-env (same no-op generator,
  frame skip, max-pool, resize and frame stack), reset right away when its game ends (SameStep);
* the batch goes through the same :class:`~fls.envs.preprocess.EpisodeLogic` as in :class:`AtariVecEnv`, so
  FIRE reset, episodic life, stack zeroing, statistics, time limits and clipping are shared code.

The envs are stepped one after another in the calling thread (``num_threads`` is accepted and ignored),
about as fast per env as :func:`~fls.envs.single.make_single_env`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from fls.envs.games import GameSpec, get_game
from fls.envs.preprocess import FRAME_SIZE, FRAME_STACK, EpisodeLogic, c_seed, check_sticky, fire_reset_actions
from fls.envs.single import AtariCore, make_core
from fls.envs.vec_base import AtariVecEnvBase

__all__ = ["PythonAtariVecEnv"]


class PythonAtariVecEnv(AtariVecEnvBase):
    """``num_envs`` Atari games stepped in Python, with the interface and semantics of :class:`AtariVecEnv`.

    Observations are (num_envs, 4, 84, 84) uint8 (newest frame last). ``step_wait`` follows SB3: on a done
    the returned observation starts the next learner episode and ``infos[i]["terminal_observation"]``
    is the last one; ``infos[i]`` always has ``lives`` and ``game_over``, and ``TimeLimit.truncated`` on
    dones, ``episode`` (SB3 Monitor format, unclipped whole-game return) when a game ends, and
    ``action_forced: True`` on the steps where the FIRE reset replaced the agent's action.
    """

    def __init__(
        self,
        game: GameSpec,
        num_envs: int,
        *,
        clip_rewards: bool = True,
        episodic_life: bool = True,
        max_episode_steps: int | None = None,
        repeat_action_probability: float = 0.0,
    ) -> None:
        """Create the envs (unseeded until :meth:`seed`; seeds are applied at the next :meth:`reset`)."""
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.game = game
        self.repeat_action_probability = check_sticky(repeat_action_probability)
        self.cores: list[AtariCore] = [
            make_core(game, rgb=False, repeat_action_probability=self.repeat_action_probability)
            for _ in range(num_envs)
        ]
        self.action_meanings: list[str] = list(self.cores[0].action_names)
        self._logic = EpisodeLogic(
            num_envs,
            fire_actions=fire_reset_actions(self.action_meanings),
            clip_rewards=clip_rewards,
            episodic_life=episodic_life,
            max_episode_steps=max_episode_steps,
        )
        self._actions = np.zeros(num_envs, np.int64)
        self._env_attrs: list[dict[str, Any]] = [{"render_mode": None} for _ in range(num_envs)]
        self._started = False
        super().__init__(
            num_envs,
            gymnasium.spaces.Box(0, 255, (FRAME_STACK, FRAME_SIZE, FRAME_SIZE), np.uint8),
            gymnasium.spaces.Discrete(len(self.action_meanings)),
        )

    def reset(self) -> VecEnvObs:
        """Really reset every game (applying pending seeds) and return the first observations."""
        for core, seed in zip(self.cores, self._seeds, strict=True):
            core.reset(seed=None if seed is None else c_seed(seed))
        self._reset_seeds()
        self._reset_options()
        obs, lives, frames = self._state()
        self._logic.begin(obs, lives, frames)
        self.reset_infos = [{"lives": int(n), "game_over": False} for n in lives]
        self._started = True
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions; the games are stepped in :meth:`step_wait`."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64, copy=False)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every game by one agent step and return ``(obs, rewards float32, dones bool, infos)``."""
        executed = self._logic.actions(self._actions)
        n = self.num_envs
        obs = np.empty((n, FRAME_STACK, FRAME_SIZE, FRAME_SIZE), np.uint8)
        final_obs: np.ndarray | None = None
        raw_rewards = np.zeros(n, np.float64)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        lives = np.zeros(n, np.int64)
        frames = np.zeros(n, np.int64)
        for i, core in enumerate(self.cores):
            obs[i], raw_rewards[i], terminated[i], truncated[i], info = core.step(int(executed[i]))
            if core.episode_over:  # SameStep autoreset, as the C++ env does
                if final_obs is None:
                    final_obs = np.zeros_like(obs)
                final_obs[i] = obs[i]
                obs[i], info = core.reset()
            lives[i], frames[i] = info["lives"], info["episode_frame_number"]
        out = self._logic.end_step(obs, final_obs, raw_rewards, terminated, truncated, lives, frames, self._reset_envs)
        infos: list[dict[str, Any]] = [
            {"lives": int(n_lives), "game_over": bool(over)}
            for n_lives, over in zip(out.lives, out.game_over, strict=True)
        ]
        for i, last in out.terminal_obs.items():
            infos[i]["terminal_observation"] = last
            infos[i]["TimeLimit.truncated"] = bool(out.truncated[i])
        for i, episode in out.episodes.items():
            infos[i]["episode"] = episode
        for i in np.flatnonzero(self._logic.forced):
            infos[i]["action_forced"] = True
        return out.obs, out.rewards, out.dones, infos

    def reset_games(self, mask: np.ndarray, seeds: Sequence[int] | None = None) -> np.ndarray:
        """Really reset the games selected by ``mask``, reseeding them with ``seeds`` (one per selected env, in
        order) or continuing their no-op generators when ``seeds`` is None (see :meth:`AtariVecEnv.reset_games`).

        Other games go on untouched. Returns the observations of all envs.
        """
        mask = np.asarray(mask, bool).reshape(self.num_envs)
        if seeds is not None and len(seeds) != int(mask.sum()):
            raise ValueError(f"{int(mask.sum())} games selected but {len(seeds)} seeds given")
        if not self._started:
            self.reset()
        chosen = np.flatnonzero(mask)
        for i, seed in zip(chosen, [None] * len(chosen) if seeds is None else seeds, strict=True):
            self.cores[i].reset(seed=None if seed is None else c_seed(int(seed)))
        obs, lives, frames = self._state()
        self._logic.begin(obs, lives, frames, mask)
        return obs

    def _state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame stacks, lives and episode frame numbers of all games, as the C++ env reports them."""
        obs = np.stack([core.stack for core in self.cores])
        lives = np.array([core.ale.lives() for core in self.cores], np.int64)
        frames = np.array([core.ale.getEpisodeFrameNumber() for core in self.cores], np.int64)
        return obs, lives, frames

    def _reset_envs(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        for i in np.flatnonzero(mask):
            self.cores[i].reset()
        obs, lives, frames = self._state()
        return obs[mask], lives[mask], frames[mask]

    def close(self) -> None:
        """Close the emulators."""
        for core in self.cores:
            core.close()
        self.cores = []


def make_python_vec_env(
    game: str | GameSpec,
    num_envs: int = 8,
    seed: int = 0,
    *,
    clip_rewards: bool = True,
    episodic_life: bool = True,
    max_episode_steps: int | None = None,
    repeat_action_probability: float = 0.0,
) -> PythonAtariVecEnv:
    """:func:`fls.envs.vector.make_vec_env` on the Python path: env ``i`` seeded ``seed + i`` at the first reset."""
    env = PythonAtariVecEnv(
        game if isinstance(game, GameSpec) else get_game(game),
        num_envs,
        clip_rewards=clip_rewards,
        episodic_life=episodic_life,
        max_episode_steps=max_episode_steps,
        repeat_action_probability=repeat_action_probability,
    )
    env.seed(seed)
    return env
