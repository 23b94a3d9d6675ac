"""SB3 vector env over ale-py's native C++ ``AtariVectorEnv`` (faster per step than Python wrappers).

The C++ env is configured as a *core* (``episodic_life=False, life_loss_info=True, reward_clipping=False,
use_fire_reset=False, noop_max=30, autoreset_mode="SameStep"``) and the rest of the baselines Atari
protocol is :class:`fls.envs.preprocess.EpisodeLogic`, vectorised numpy shared with ``single.py``.

Semantics checked against ale-py 0.12.1 with probe scripts (what can be pinned is in tests/test_envs.py):

* ``episodic_life=True`` in C++ fully resets the game on a life loss (lives stay at 5 under random
  Breakout play), so it is off; ``life_loss_info=True`` sets ``terminated`` on a life loss *without*
  resetting (lives go 5, 4, 3, ...) but does not zero the frame stack -> zeroing is done in Python.
  A life loss is told from a game over by the episode frame number (+4 without a reset) and lives.
* ``reward_clipping=True`` would clip the only reward we get -> off; clipping is done in Python and the
  raw reward feeds the episode statistics.
* FIRE: ``use_fire_reset`` presses FIRE for one raw frame on a real reset only; after a life loss a
  NOOP-only Breakout agent is never served again (lives stay at 4 for 600 steps) -> off; FIRE then
  action 2 are forced in Python at the start of every learner episode. The C++ env steps all sub-envs
  together, so these are the episode's first two agent steps (the agent's actions there are replaced),
  not baselines' hidden steps; they count in the episode length, as baselines' Monitor counts them.
* No-ops: ``std::uniform_int_distribution(0, noop_max - 1)`` on ``std::mt19937(seed)``, i.e. 0..29 raw
  NOOPs with noop_max=30 (baselines: 1..30), drawn at every real reset from the env's seeded generator;
  ``NoopSampler`` reproduces it bit-exactly (2,560 draws matched), so both paths do the same no-ops.
* Max-pool of the last two raw frames, in grayscale *before* the resize. ALE's grayscale palette equals
  ``cv2.cvtColor(RGB2GRAY)`` of the RGB frame (difference 0), but baselines pools the RGB frames first:
  where the two frames differ in colour (flicker) the pooled pixel differs by up to 43 levels (measured).
* Resize: ``cv::resize(INTER_AREA)`` to 84x84; Python ``cv2.resize(INTER_AREA)`` of the same frame gave
  a max abs difference of 0 over thousands of steps of all eight registered games (tests allow 1).
* ``max_num_frames_per_episode`` counts raw frames after the reset no-ops; a step that ends the game
  early (game over or frame limit) keeps part of the previous pooled frame (mirrored in Python).
* SameStep autoreset returns the new game's first stack with ``info["final_obs"]`` holding the last one:
  SB3's convention at no extra cost (NextStep would cost a second call per reset and return the reset
  as a separate step); ``lives`` is then the new game's. ``reset(options={"reset_mask": m})`` resets only
  the envs of ``m`` (used by the agent-step limit) and reports the others unchanged.
* Emulation does not depend on the ALE seed without sticky actions (identical play across ALE seeds in
  all registered games), so only the no-op generator has to match across the two paths. With sticky actions
  (``repeat_action_probability > 0``, Machado et al. 2018) ALE draws from its own seeded generator at every raw
  frame: play is still reproducible per seed, but the two paths seed ALE differently, so they no longer match.
* Env ``i`` is seeded ``seed + i`` (mod 2**31: the C++ seed is an ``int`` and negative means unseeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import gymnasium
import numpy as np
from ale_py.vector_env import AtariVectorEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from fls.envs.games import GameSpec, get_game
from fls.envs.preprocess import (
    FRAME_SIZE,
    FRAME_SKIP,
    FRAME_STACK,
    NOOP_MAX,
    EpisodeLogic,
    c_seed,
    check_sticky,
    fire_reset_actions,
)
from fls.envs.python_vector import PythonAtariVecEnv, make_python_vec_env
from fls.envs.vec_base import AtariVecEnvBase
from fls.errors import ConfigError

__all__ = ["AtariVecEnv", "make_vec_env"]


class AtariVecEnv(AtariVecEnvBase):
    """``num_envs`` Atari games stepped in C++ threads, with the OpenAI-baselines Atari protocol.

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
        num_threads: int = 0,
        repeat_action_probability: float = 0.0,
    ) -> None:
        """Create the C++ envs (unseeded until :meth:`seed`; seeds are applied at the next :meth:`reset`)."""
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.game = game
        self.num_threads = num_threads  # as asked: 0 lets ale-py choose min(num_envs, cores)
        self.repeat_action_probability = check_sticky(repeat_action_probability)
        self._venv = AtariVectorEnv(
            game.rom,
            num_envs,
            num_threads=num_threads,
            max_num_frames_per_episode=game.max_frames,
            repeat_action_probability=self.repeat_action_probability,
            full_action_space=False,
            autoreset_mode="SameStep",
            img_height=FRAME_SIZE,
            img_width=FRAME_SIZE,
            grayscale=True,
            stack_num=FRAME_STACK,
            frameskip=FRAME_SKIP,
            maxpool=True,
            noop_max=NOOP_MAX,
            episodic_life=False,
            life_loss_info=True,
            reward_clipping=False,
            use_fire_reset=False,
        )
        self.action_meanings: list[str] = [a.name for a in self._venv.ale.get_action_set()]
        self._logic = EpisodeLogic(
            num_envs,
            fire_actions=fire_reset_actions(self.action_meanings),
            clip_rewards=clip_rewards,
            episodic_life=episodic_life,
            max_episode_steps=max_episode_steps,
        )
        self._paddle = np.ones(num_envs, np.float32)
        self._env_attrs: list[dict[str, Any]] = [{"render_mode": None} for _ in range(num_envs)]
        self._started = False
        super().__init__(
            num_envs,
            gymnasium.spaces.Box(0, 255, (FRAME_STACK, FRAME_SIZE, FRAME_SIZE), np.uint8),
            gymnasium.spaces.Discrete(len(self.action_meanings)),
        )

    def reset(self) -> VecEnvObs:
        """Really reset every game (applying pending seeds) and return the first observations."""
        if any(s is not None for s in self._seeds):
            seeds = np.array([-1 if s is None else c_seed(s) for s in self._seeds], np.int64)
            obs, info = self._venv.reset(seed=seeds)
        else:
            obs, info = self._venv.reset()
        self._reset_seeds()
        self._reset_options()
        self._logic.begin(obs, info["lives"], info["episode_frame_number"])
        self.reset_infos = [{"lives": int(n), "game_over": False} for n in info["lives"]]
        self._started = True
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions to the C++ threads (they run while the caller does other work)."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64, copy=False)
        self._venv.ale.send(self._logic.actions(actions), self._paddle)

    def step_wait(self) -> VecEnvStepReturn:
        """Wait for the C++ step and return ``(obs, rewards float32, dones bool, infos)``."""
        obs, raw_rewards, terminated, truncated, info = self._venv.ale.recv()
        out = self._logic.end_step(
            obs,
            info.get("final_obs"),
            raw_rewards.astype(np.float64),
            terminated,
            truncated,
            info["lives"],
            info["episode_frame_number"],
            self._reset_envs,
        )
        infos: list[dict[str, Any]] = [
            {"lives": int(lives), "game_over": bool(over)} for lives, over in zip(out.lives, out.game_over, strict=True)
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
        order) or, with ``seeds=None``, continuing their no-op generators (each reset draws one no-op count).

        Other games go on untouched. Returns the observations of all envs. A reseed reloads the ROM in ALE
        (about 200 ms); an unseeded reset costs about 10 ms.
        """
        mask = np.asarray(mask, bool).reshape(self.num_envs)
        if seeds is not None and len(seeds) != int(mask.sum()):
            raise ValueError(f"{int(mask.sum())} games selected but {len(seeds)} seeds given")
        if not self._started:
            self.reset()
        if seeds is None:
            obs, info = self._venv.reset(options={"reset_mask": mask})
        else:
            seed_array = np.array([c_seed(int(s)) for s in seeds], np.int64)
            obs, info = self._venv.reset(seed=seed_array, options={"reset_mask": mask})
        self._logic.begin(obs, info["lives"], info["episode_frame_number"], mask)
        return obs

    def _reset_envs(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, info = self._venv.reset(options={"reset_mask": mask})
        return obs[mask], info["lives"][mask], info["episode_frame_number"][mask]

    def close(self) -> None:
        """Stop the C++ threads."""
        if self._venv is not None:
            self._venv.close()
            self._venv = None


def make_vec_env(
    game: str | GameSpec,
    num_envs: int = 8,
    seed: int = 0,
    *,
    clip_rewards: bool = True,
    episodic_life: bool = True,
    max_episode_steps: int | None = None,
    num_threads: int = 0,
    backend: Literal["auto", "native", "python"] = "auto",
    repeat_action_probability: float = 0.0,
) -> AtariVecEnv | PythonAtariVecEnv:
    """Make ``num_envs`` copies of ``game`` with the baselines Atari protocol, env ``i`` seeded ``seed + i``.

    Games the C++ env cannot run (``BreakoutInfinite``, see :attr:`GameSpec.native`) get the
    :class:`~fls.envs.python_vector.PythonAtariVecEnv`, with the same interface and semantics.

    Args:
        game: registered game name, e.g. ``"Breakout"`` (see :data:`fls.envs.games.GAMES`), or a spec.
        num_envs: number of parallel games.
        seed: seed of env 0; applied at the first ``reset()``.
        clip_rewards: learner rewards are ``sign(reward)`` (statistics stay unclipped).
        episodic_life: a life loss ends the learner episode (the game goes on).
        max_episode_steps: agent-step limit of a game (evaluation), None for none.
        num_threads: C++ worker threads, 0 for ``min(num_envs, cores)`` (unused on the Python path).
        backend: ``"auto"`` (native C++ when the game allows), ``"native"`` or ``"python"``.
        repeat_action_probability: sticky actions: the chance that ALE repeats the previous raw-frame action
            instead of the chosen one, at every raw frame (0: the baselines protocol; Machado et al.: 0.25).

    Raises:
        ConfigError (a ValueError): ``backend="native"`` for a game that needs the Python path, an unknown backend,
        a negative ``num_threads`` or a ``repeat_action_probability`` outside [0, 1].
    """
    spec = game if isinstance(game, GameSpec) else get_game(game)
    if backend not in ("auto", "native", "python"):
        raise ConfigError(f"backend must be 'auto', 'native' or 'python', got {backend!r}")
    if num_threads < 0:
        raise ConfigError(f"num_threads must be >= 0 (0: min(num_envs, cores)), got {num_threads}")
    if backend == "native" and not spec.native:
        raise ConfigError(f"{spec.name} needs RAM access, which the native vector env lacks: use backend='python'")
    if backend == "python" or not spec.native:
        return make_python_vec_env(
            spec,
            num_envs,
            seed,
            clip_rewards=clip_rewards,
            episodic_life=episodic_life,
            max_episode_steps=max_episode_steps,
            repeat_action_probability=repeat_action_probability,
        )
    env = AtariVecEnv(
        spec,
        num_envs,
        clip_rewards=clip_rewards,
        episodic_life=episodic_life,
        max_episode_steps=max_episode_steps,
        num_threads=num_threads,
        repeat_action_probability=repeat_action_probability,
    )
    env.seed(seed)
    return env
