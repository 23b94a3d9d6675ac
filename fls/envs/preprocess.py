"""The Python halves of the Atari stack, shared by the native vector env and the single env.

Both paths (``vector.py`` over ale-py's C++ ``AtariVectorEnv`` and ``single.py`` over ``ale_py.AtariEnv``)
get the per-step output of one *core* — frame skip 4, max-pool of the last two raw grayscale frames,
84x84 INTER_AREA resize, a 4-frame stack that only resets on a real game reset, raw rewards, the
"life lost or game over" flag, the raw-frame time limit and SameStep auto-reset — and hand it to
:class:`EpisodeLogic`, which adds everything the C++ env cannot do. So each step is defined once:

* the core: in C++ for the vector env; :func:`resize_frame` and :class:`NoopSampler` are the Python
  twins used by ``single.py`` (the grayscale conversion is ALE's own palette on both paths);
* the learner view: :class:`EpisodeLogic`, vectorised numpy over the batch, used by both paths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from fls.errors import ConfigError

__all__ = [
    "FRAME_SIZE",
    "FRAME_SKIP",
    "FRAME_STACK",
    "NOOP_MAX",
    "EpisodeLogic",
    "NoopSampler",
    "StepOutput",
    "c_seed",
    "check_sticky",
    "fire_reset_actions",
    "resize_frame",
    "rgb_to_gray",
    "zero_stale_frames",
]

FRAME_SIZE = 84
FRAME_SKIP = 4
FRAME_STACK = 4
NOOP_MAX = 30

_FRAME_INDEX = np.arange(FRAME_STACK)
_MASK32 = 0xFFFFFFFF


def resize_frame(gray: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Resize one max-pooled 210x160 grayscale frame to 84x84 with ``cv2.INTER_AREA``.

    This is the Python twin of the ``cv::resize(..., cv::INTER_AREA)`` in ale-py's C++ env; the two
    builds of OpenCV agree to the pixel tolerance measured in ``tests/test_envs.py``.
    """
    return cv2.resize(gray, (FRAME_SIZE, FRAME_SIZE), dst=out, interpolation=cv2.INTER_AREA)


def rgb_to_gray(frame: np.ndarray) -> np.ndarray:
    """Convert one RGB (210, 160, 3) uint8 frame to the (210, 160) uint8 grayscale frame ALE would return.

    ALE's grayscale palette equals ``cv2.COLOR_RGB2GRAY`` of its RGB frame exactly (see ``vector.py``), so
    frames recorded as RGB (Atari-HEAD's PNGs) go through this to match what the agents were trained on.
    """
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class NoopSampler:
    """Draws the number of reset no-ops exactly as ale-py's C++ env does.

    The C++ env uses ``std::mt19937`` seeded with the env seed and
    ``std::uniform_int_distribution<int>(0, noop_max - 1)``; libstdc++ maps a 32-bit engine to a
    small range with Lemire's multiply-shift rejection, reproduced here on numpy's MT19937, whose
    legacy seeding is the same ``init_genrand`` as ``std::mt19937(seed)``. Same seed, same no-ops.
    """

    def __init__(self, noop_max: int = NOOP_MAX, seed: int | None = None) -> None:
        """Create a sampler of no-op counts in ``[0, noop_max - 1]`` (always 0 if ``noop_max <= 1``)."""
        self._range = max(noop_max, 1)
        self._threshold = (1 << 32) % self._range
        self._bits = np.random.MT19937()
        self.seed(int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else seed)

    def seed(self, seed: int) -> None:
        """Restart the stream as ``std::mt19937(seed)`` would (seed in ``[0, 2**32)``)."""
        state = np.random.RandomState(seed).get_state(legacy=False)
        self._bits.state = {"bit_generator": "MT19937", "state": state["state"]}

    def draw(self) -> int:
        """Return the next no-op count."""
        while True:
            product = int(self._bits.random_raw()) * self._range
            if product & _MASK32 >= self._threshold:
                return product >> 32


def c_seed(seed: int) -> int:
    """Map any integer seed to the C ``int`` seed of the C++ env: ``seed mod 2**31`` (negative = unseeded there)."""
    return int(seed) % (1 << 31)


def check_sticky(repeat_action_probability: float) -> float:
    """ALE's ``repeat_action_probability`` (sticky actions, Machado et al. 2018) as a float, checked in [0, 1]."""
    p = float(repeat_action_probability)
    if not 0.0 <= p <= 1.0:  # also refuses nan
        raise ConfigError(f"repeat_action_probability={repeat_action_probability}: a number >= 0 and <= 1")
    return p


def fire_reset_actions(action_names: Sequence[str]) -> tuple[int, ...]:
    """Action indices pressed at the start of every learner episode: ``(1, 2)`` for FIRE games, else ``()``.

    Same test as baselines' ``FireResetEnv``: action 1 is FIRE and there are at least 3 actions.
    """
    if len(action_names) >= 3 and action_names[1] == "FIRE":
        return (1, 2)
    return ()


def zero_stale_frames(obs: np.ndarray, age: np.ndarray) -> None:
    """Zero, in place, the stacked frames of ``obs`` (B, 4, H, W) older than each env's episode start.

    ``age[i]`` is how many of the newest frames of env ``i`` belong to its current learner episode,
    which is what a frame stack that is zeroed on every done (life loss included) would hold.
    """
    stale = _FRAME_INDEX[None, :] < (FRAME_STACK - age)[:, None]
    if stale.any():
        obs[stale] = 0


@dataclass
class StepOutput:
    """What the learner sees after one step of a batch of envs (see :meth:`EpisodeLogic.end_step`)."""

    obs: np.ndarray
    """(B, 4, 84, 84) uint8; where ``dones``, the first observation of the next learner episode."""
    rewards: np.ndarray
    """(B,) float32 learner rewards: sign of the raw reward when clipping, else the raw reward."""
    raw_rewards: np.ndarray
    """(B,) raw game rewards."""
    dones: np.ndarray
    """(B,) bool: the learner episode ended (a life loss with episodic life, or the game ended)."""
    truncated: np.ndarray
    """(B,) bool: the episode ended by a time limit (raw frames or agent steps), not by the game."""
    game_over: np.ndarray
    """(B,) bool: the whole game ended (the env was really reset)."""
    life_lost: np.ndarray
    """(B,) bool: a life was lost and the game goes on."""
    lives: np.ndarray
    """(B,) lives in the state that ``obs`` shows (after the reset where the game ended)."""
    terminal_obs: dict[int, np.ndarray] = field(default_factory=dict)
    """env index -> last observation of the learner episode that ended at this step."""
    episodes: dict[int, dict[str, float]] = field(default_factory=dict)
    """env index -> SB3 Monitor record ``{"r", "l", "t"}`` of the game that ended at this step."""


class EpisodeLogic:
    """Everything between the core env and the learner, vectorised over a batch of ``num_envs`` envs.

    * FIRE reset: in FIRE games the first two actions of every learner episode (after a reset *and*
      after a life loss) are replaced by FIRE and action 2, as baselines' ``FireResetEnv`` does (there
      as two hidden steps; the synchronous C++ env cannot step one sub-env alone, so here they are
      the episode's first two agent steps);
    * episodic life: a life loss ends the learner episode without resetting the game;
    * frame stack: frames older than the learner episode are zeroed;
    * statistics: unclipped return and agent-step length of the whole game, in SB3 Monitor format;
    * optional agent-step time limit (evaluation), which really resets the game;
    * reward clipping to the sign of the raw reward.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        fire_actions: tuple[int, ...],
        clip_rewards: bool,
        episodic_life: bool,
        max_episode_steps: int | None,
    ) -> None:
        """Set up the state of ``num_envs`` envs; call :meth:`begin` after resetting them."""
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        self.num_envs = num_envs
        self.fire_actions = fire_actions
        self.clip_rewards = clip_rewards
        self.episodic_life = episodic_life
        self.max_episode_steps = max_episode_steps
        self._t_start = time.time()
        self._return = np.zeros(num_envs, np.float64)
        self._length = np.zeros(num_envs, np.int64)
        self._age = np.ones(num_envs, np.int64)
        self._forced = np.zeros(num_envs, np.int64)  # 0: agent acts, k: fire_actions[k - 1] comes next
        self.forced = np.zeros(num_envs, bool)
        """Envs whose last :meth:`actions` call replaced the agent's action (FIRE reset): the learner must not
        train its policy on those steps, since the action it sampled was never executed."""
        self._lives = np.zeros(num_envs, np.int64)
        self._frames = np.zeros(num_envs, np.int64)

    def begin(self, obs: np.ndarray, lives: np.ndarray, frames: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Start new games in the envs of ``mask`` (all if None) from their reset observations (modified in place).

        ``frames`` is ALE's episode frame number, used to tell a life loss from a reset in :meth:`end_step`.
        """
        mask = np.ones(self.num_envs, bool) if mask is None else mask
        self._return[mask] = 0.0
        self._length[mask] = 0
        self._age[mask] = 1
        self._forced[mask] = 1 if self.fire_actions else 0
        self._lives[mask] = lives[mask]
        self._frames[mask] = frames[mask]
        zero_stale_frames(obs, self._age)

    def actions(self, actions: np.ndarray) -> np.ndarray:
        """Return the actions to execute: the agent's, or FIRE / action 2 at the start of a learner episode."""
        if not self.fire_actions or not self._forced.any():
            self.forced = np.zeros(self.num_envs, bool)
            return actions
        forced = self._forced
        self.forced = forced != 0
        executed = np.where(forced == 1, self.fire_actions[0], np.where(forced == 2, self.fire_actions[1], actions))
        self._forced = np.where(forced == 1, 2, 0)
        return executed.astype(actions.dtype, copy=False)

    def end_step(
        self,
        obs: np.ndarray,
        final_obs: np.ndarray | None,
        raw_rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        lives: np.ndarray,
        frames: np.ndarray,
        reset_envs: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> StepOutput:
        """Turn one core step of the batch into what the learner sees.

        Args:
            obs: (B, 4, 84, 84) core observations (modified in place); where the core's game ended,
                the core has already reset (SameStep) and this is the new game's first stack.
            final_obs: the core's last stacks of the games that ended (rows of ended envs are read).
            raw_rewards, terminated, truncated: the core's raw reward, "life lost or game over" flag
                and raw-frame time-limit flag.
            lives, frames: ALE lives and episode frame number of the state ``obs`` shows.
            reset_envs: really resets the envs of a mask and returns their ``(obs, lives, frames)``;
                called for envs that hit the agent-step time limit.
        """
        # A core step that ran the full frame skip without resetting advances the episode frame number
        # by exactly FRAME_SKIP; a reset restarts it below NOOP_MAX. Lives alone could mislead when a
        # game ends with more lives than it starts with.
        continued = frames == self._frames + FRAME_SKIP
        life_lost = terminated & continued & (lives < self._lives)
        real_end = (terminated | truncated) & ~life_lost
        self._return += raw_rewards
        self._length += 1
        timeout = np.zeros(self.num_envs, bool)
        if self.max_episode_steps is not None:
            timeout = (self._length >= self.max_episode_steps) & ~real_end
        game_over = real_end | timeout
        dones = game_over | life_lost if self.episodic_life else game_over
        time_limited = ((truncated & real_end) | timeout) & dones
        age = np.minimum(self._age + 1, FRAME_STACK)
        out = StepOutput(
            obs=obs,
            rewards=(np.sign(raw_rewards) if self.clip_rewards else raw_rewards).astype(np.float32),
            raw_rewards=raw_rewards,
            dones=dones,
            truncated=time_limited,
            game_over=game_over,
            life_lost=life_lost,
            lives=lives,
        )
        if dones.any():
            for i in np.flatnonzero(dones):
                last = (final_obs[i] if real_end[i] else obs[i]).copy()
                zero_stale_frames(last[None], age[i : i + 1])
                out.terminal_obs[int(i)] = last
            if timeout.any():
                obs[timeout], lives[timeout], frames[timeout] = reset_envs(timeout)
            elapsed = round(time.time() - self._t_start, 6)
            for i in np.flatnonzero(game_over):
                out.episodes[int(i)] = {"r": round(float(self._return[i]), 6), "l": int(self._length[i]), "t": elapsed}
            self._return[game_over] = 0.0
            self._length[game_over] = 0
            age[dones] = 1
            if self.fire_actions:
                self._forced[dones] = 1
        zero_stale_frames(obs, age)
        self._age = age
        self._lives = lives.astype(np.int64)
        self._frames = frames.astype(np.int64)
        return out
