"""One Atari env in Python with the same semantics as :mod:`fls.envs.vector`, plus the raw RGB frames.

Used where the agent's view must be shown next to the real screen (videos of saliency maps). The stack,
innermost first:

1. ``ale_py.AtariEnv`` — ``frameskip=1``, sticky actions as asked (``repeat_action_probability``, default 0),
   minimal action set, no ALE frame limit;
   only its ``reset`` (ROM load and seeding) and its ``ale`` handle are used.
2. :class:`AtariCore` — a step-for-step Python twin of ale-py's C++ ``PreprocessedEnv`` as the vector env
   configures it: no-op reset drawn by :class:`~fls.envs.preprocess.NoopSampler` (the same generator as
   C++, so the same seed gives the same no-ops), frame skip 4 with the max-pool of the last two raw
   grayscale frames (ALE's grayscale palette, as in C++), :func:`~fls.envs.preprocess.resize_frame`, a
   4-frame stack, raw-frame time limit, and ``info["rgb"]``; for ``BreakoutInfinite`` also the score wrap
   of :mod:`fls.envs.breakout`, applied before every raw frame of the frame skip.
3. :class:`AtariLearnerEnv` — :class:`~fls.envs.preprocess.EpisodeLogic` for a batch of one: FIRE reset,
   episodic life, stack zeroing, Monitor statistics, agent-step time limit, reward clipping.

Gymnasium conventions: after ``terminated or truncated`` call ``reset()``; after a life loss (episodic
life) that continues the same game with a zeroed stack, after a game over it starts a new game. The
observation returned by that ``reset()`` is the one the vector env returns at the done step.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from ale_py import Action, AtariEnv

from fls.envs.breakout import ScoreWrap
from fls.envs.games import GameSpec, get_game
from fls.envs.preprocess import (
    FRAME_SIZE,
    FRAME_SKIP,
    FRAME_STACK,
    NOOP_MAX,
    EpisodeLogic,
    NoopSampler,
    c_seed,
    check_sticky,
    fire_reset_actions,
    resize_frame,
)

__all__ = ["AtariCore", "AtariLearnerEnv", "make_core", "make_single_env"]

_CORE_INFO_KEYS = ("lives", "episode_frame_number", "rgb", "ram")
_OBS_SPACE = gymnasium.spaces.Box(0, 255, (FRAME_STACK, FRAME_SIZE, FRAME_SIZE), np.uint8)


class AtariCore(gymnasium.Wrapper):
    """Python twin of the C++ core of ``ale_py.vector_env.AtariVectorEnv`` for one env.

    Configured like :func:`fls.envs.vector.make_vec_env` configures the C++ env: ``noop_max=30``,
    ``use_fire_reset=False``, ``episodic_life=False``, ``life_loss_info=True``, ``reward_clipping=False``.
    ``terminated`` means "game over or life lost", ``truncated`` means the raw-frame limit, and
    :attr:`episode_over` says whether the game must be reset (game over or frame limit).

    With ``score_wrap`` (Breakout only) the score is rewritten 864 -> 432 before the raw frame that follows
    it reaching 864, and that frame's reward is corrected by +432 (see :mod:`fls.envs.breakout`).
    ``rgb=False`` leaves ``info["rgb"]`` and ``info["ram"]`` (the console's 128 bytes of RAM after the step's last
    raw frame, which :mod:`fls.objects` decodes) out (the vector env over these cores does not need them).
    """

    def __init__(
        self,
        env: AtariEnv,
        *,
        max_frames: int,
        noop_max: int = NOOP_MAX,
        score_wrap: bool = False,
        rgb: bool = True,
    ) -> None:
        """Wrap a ``frameskip=1`` AtariEnv; ``max_frames`` counts raw frames after the reset no-ops."""
        super().__init__(env)
        self.ale = env.unwrapped.ale
        self.max_frames = max_frames
        self.score_wrap: ScoreWrap | None = ScoreWrap(self.ale) if score_wrap else None
        self._rgb = rgb
        self.action_set: list[Action] = list(self.ale.getMinimalActionSet())
        self.action_names: list[str] = [a.name for a in self.action_set]
        self.observation_space = _OBS_SPACE
        self.action_space = gymnasium.spaces.Discrete(len(self.action_set))
        height, width = self.ale.getScreenDims()
        self._noops = NoopSampler(noop_max)
        self._raw = np.zeros((2, height, width), np.uint8)
        self._stack = np.zeros(_OBS_SPACE.shape, np.uint8)
        self._elapsed = 0
        self._lives = 0
        self._game_over = False

    @property
    def episode_over(self) -> bool:
        """Whether the C++ env would reset now: the game is over or the raw-frame limit was reached."""
        return self._game_over or self._elapsed >= self.max_frames

    @property
    def score_wraps(self) -> int:
        """Score rewrites in the current game (0 without ``score_wrap``): true score = shown + 432 * this."""
        return 0 if self.score_wrap is None else self.score_wrap.wraps

    @property
    def stack(self) -> np.ndarray:
        """A copy of the current frame stack: the observation of the last ``reset`` or ``step``."""
        return self._stack.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Reset the game (reseeding the no-op generator when ``seed`` is given) and do the reset no-ops.

        The ALE seed itself does not matter without sticky actions (checked: identical play across ALE
        seeds in all registered games), so AtariEnv's own derivation of it from ``seed`` is harmless. With sticky
        actions it drives ALE's repeats: reproducible per seed, but not the C++ env's play for the same seed.
        """
        if seed is not None:
            self._noops.seed(seed)
        self.env.reset(seed=seed, options=options)
        if self.score_wrap is not None:
            self.score_wrap.reset()
        for _ in range(self._noops.draw()):
            self.ale.act(Action.NOOP)
            if self.ale.game_over(with_truncation=False):
                self.ale.reset_game()
        self._stack[:] = 0
        self.ale.getScreenGrayscale(self._raw[0])
        self._raw[1] = 0
        self._push_frame()
        self._elapsed = 0
        self._lives = self.ale.lives()
        self._game_over = False
        return self._stack.copy(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Repeat ``action`` for 4 raw frames (fewer if the game or the frame budget ends first)."""
        ale_action = self.action_set[int(action)]
        reward = 0
        game_over = False
        for skip_id in range(FRAME_SKIP, 0, -1):
            if self.score_wrap is not None:
                reward += self.score_wrap.before_act()
            reward += self.ale.act(ale_action)
            game_over = self.ale.game_over(with_truncation=False)
            self._elapsed += 1
            # Like C++, stop before grabbing the frame: the pooled frame is then partly the previous one.
            if game_over or self._elapsed >= self.max_frames:
                break
            if skip_id <= 2:
                self.ale.getScreenGrayscale(self._raw[skip_id - 1])
        self._push_frame()
        lives = self.ale.lives()
        terminated = game_over or 0 < lives < self._lives
        truncated = self._elapsed >= self.max_frames and not terminated
        self._lives = lives
        self._game_over = game_over
        return self._stack.copy(), float(reward), terminated, truncated, self._info()

    def _push_frame(self) -> None:
        np.maximum(self._raw[0], self._raw[1], out=self._raw[0])
        self._stack[:-1] = self._stack[1:]
        resize_frame(self._raw[0], out=self._stack[-1])

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"lives": self.ale.lives(), "episode_frame_number": self.ale.getEpisodeFrameNumber()}
        if self._rgb:
            info["rgb"] = self.ale.getScreenRGB()
            info["ram"] = self.ale.getRAM()
        return info


class AtariLearnerEnv(gymnasium.Wrapper):
    """The learner's view of an :class:`AtariCore`, through the same :class:`EpisodeLogic` as the vector env.

    ``info`` holds ``rgb`` (the last raw 210x160x3 frame of the step), ``lives``, ``game_over`` and, when
    a game ends, ``episode`` (``{"r": unclipped return, "l": agent steps, "t": seconds}``).
    """

    def __init__(
        self,
        core: AtariCore,
        *,
        seed: int | None = None,
        clip_rewards: bool = False,
        episodic_life: bool = True,
        max_episode_steps: int | None = None,
    ) -> None:
        """Wrap ``core``; ``seed`` is applied at the first ``reset()`` that does not pass its own."""
        super().__init__(core)
        self.core = core
        self.action_meanings = core.action_names
        self._logic = EpisodeLogic(
            1,
            fire_actions=fire_reset_actions(core.action_names),
            clip_rewards=clip_rewards,
            episodic_life=episodic_life,
            max_episode_steps=max_episode_steps,
        )
        self._seed = seed
        self._pending: tuple[np.ndarray, dict] | None = None
        self._time_limit_info: dict | None = None

    def get_action_meanings(self) -> list[str]:
        """Names of the minimal action set, by action index."""
        return list(self.action_meanings)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start the next learner episode: continue the game after a life loss, else reset the game."""
        if seed is None and self._pending is not None:
            obs, info = self._pending
            self._pending = None
            return obs, info
        if seed is None:
            seed, self._seed = self._seed, None
        else:
            seed = c_seed(seed)
        self._pending = None
        obs, info = self.core.reset(seed=seed, options=options)
        batch = obs[None]
        self._logic.begin(batch, np.array([info["lives"]]), np.array([info["episode_frame_number"]]))
        info["game_over"] = False
        return batch[0], info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Step the game; on a done, ``obs``/``info`` describe the last frame and ``reset()`` gives the next."""
        self._pending = None
        executed = int(self._logic.actions(np.array([action], np.int64))[0])
        obs, reward, terminated, truncated, step_info = self.core.step(executed)
        next_info = step_info
        final_obs = None
        if self.core.episode_over:
            # Reset right away, as the C++ env does in SameStep mode, so both paths draw no-ops alike.
            final_obs = obs[None]
            obs, next_info = self.core.reset()
        self._time_limit_info = None
        out = self._logic.end_step(
            obs[None],
            final_obs,
            np.array([reward]),
            np.array([terminated]),
            np.array([truncated]),
            np.array([next_info["lives"]]),
            np.array([next_info["episode_frame_number"]]),
            self._reset_for_time_limit,
        )
        if self._time_limit_info is not None:
            next_info = self._time_limit_info
        step_info["game_over"] = bool(out.game_over[0])
        step_info["executed_action"] = executed
        step_info["action_forced"] = bool(self._logic.forced[0])
        if 0 in out.episodes:
            step_info["episode"] = out.episodes[0]
        if not out.dones[0]:
            return out.obs[0], float(out.rewards[0]), False, False, step_info
        reset_info = {k: next_info[k] for k in _CORE_INFO_KEYS if k in next_info}
        self._pending = (out.obs[0], {**reset_info, "game_over": False})
        is_truncated = bool(out.truncated[0])
        return out.terminal_obs[0], float(out.rewards[0]), not is_truncated, is_truncated, step_info

    def _reset_for_time_limit(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, info = self.core.reset()
        self._time_limit_info = info
        return obs[None], np.array([info["lives"]]), np.array([info["episode_frame_number"]])


def make_single_env(
    game: str | GameSpec,
    seed: int,
    *,
    clip_rewards: bool = False,
    episodic_life: bool = True,
    max_episode_steps: int | None = None,
    repeat_action_probability: float = 0.0,
) -> gymnasium.Env:
    """Make one Atari env with the semantics of :func:`fls.envs.vector.make_vec_env` and RGB frames in ``info``.

    Args:
        game: registered game name, e.g. ``"Breakout"`` (see :data:`fls.envs.games.GAMES`), or a spec;
            ``"BreakoutInfinite"`` rewrites the score 864 -> 432 between raw frames (see :mod:`fls.envs.breakout`).
        seed: applied at the first ``reset()``; equals env ``i`` of ``make_vec_env(game, seed=seed - i)``.
        clip_rewards: return ``sign(reward)`` (statistics stay unclipped).
        episodic_life: a life loss ends the learner episode (the game goes on).
        max_episode_steps: agent-step limit of a game (evaluation), None for none.
        repeat_action_probability: sticky actions (ALE's; 0: the baselines protocol, Machado et al.: 0.25).

    Returns:
        A gymnasium env with (4, 84, 84) uint8 observations and ``info["rgb"]``, ``info["lives"]``,
        ``info["game_over"]`` and, when a game ends, ``info["episode"]``.
    """
    core = make_core(game, repeat_action_probability=repeat_action_probability)
    return AtariLearnerEnv(
        core,
        seed=c_seed(seed),
        clip_rewards=clip_rewards,
        episodic_life=episodic_life,
        max_episode_steps=max_episode_steps,
    )


def make_core(game: str | GameSpec, *, rgb: bool = True, repeat_action_probability: float = 0.0) -> AtariCore:
    """Make the :class:`AtariCore` of ``game`` (unseeded until its first ``reset(seed=...)``).

    ``rgb`` keeps the raw RGB frame in ``info["rgb"]`` and ``render()``; the Python vector env turns it off.
    ``repeat_action_probability``: ALE's sticky actions, checked in [0, 1].
    """
    spec = game if isinstance(game, GameSpec) else get_game(game)
    base = AtariEnv(
        game=spec.rom,
        obs_type="rgb",
        frameskip=1,
        repeat_action_probability=check_sticky(repeat_action_probability),
        full_action_space=False,
        max_num_frames_per_episode=None,
        render_mode="rgb_array" if rgb else None,
    )
    return AtariCore(base, max_frames=spec.max_frames, score_wrap=spec.score_wrap, rgb=rgb)
