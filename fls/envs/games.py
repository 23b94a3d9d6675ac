"""Registry of the Atari games fls supports, with their per-game limits.

The limits follow the OpenAI-baselines protocol: ``<Game>NoFrameskip-v4`` stops an episode after
400,000 raw frames (300,000 for SpaceInvaders), and evaluation cuts an episode after
``eval_max_episode_steps`` agent steps (108,000 by default, 30,000 for Breakout, where a policy
that never presses FIRE after losing a ball would otherwise stall forever).

``BreakoutInfinite`` is Breakout whose wall keeps coming back (see :mod:`fls.envs.breakout`): it needs
RAM access, which the native vector env lacks, so :func:`fls.envs.make_vec_env` runs it in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from fls.errors import ConfigError

__all__ = ["GAMES", "GameSpec", "get_game"]


@dataclass(frozen=True)
class GameSpec:
    """One Atari game.

    Attributes:
        name: CamelCase name used in configs and on the command line, e.g. ``"Breakout"``.
        rom: ale-py ROM id (snake_case), e.g. ``"breakout"``.
        max_frames: raw-frame limit of one episode (the ``NoFrameskip-v4`` time limit).
        eval_max_episode_steps: agent-step limit of one evaluation episode.
        score_wrap: Breakout only: rewrite the score 864 -> 432 in RAM so that the wall respawns forever
            (rewards and returns still count the true score; see :mod:`fls.envs.breakout`).
    """

    name: str
    rom: str
    max_frames: int = 400_000
    eval_max_episode_steps: int = 108_000
    score_wrap: bool = False

    def __post_init__(self) -> None:
        """Reject a score wrap on a game whose RAM layout it does not know."""
        if self.score_wrap and self.rom != "breakout":
            raise ConfigError(f"score_wrap is only defined for the breakout ROM, not {self.rom!r}")

    @property
    def native(self) -> bool:
        """Whether ale-py's native C++ vector env can run this game (it has no RAM access for ``score_wrap``)."""
        return not self.score_wrap


GAMES: dict[str, GameSpec] = {
    spec.name: spec
    for spec in (
        GameSpec("BeamRider", "beam_rider"),
        GameSpec("Breakout", "breakout", eval_max_episode_steps=30_000),
        GameSpec("BreakoutInfinite", "breakout", eval_max_episode_steps=30_000, score_wrap=True),
        GameSpec("Enduro", "enduro"),
        GameSpec("Frostbite", "frostbite"),
        GameSpec("MsPacman", "ms_pacman"),
        GameSpec("Pong", "pong"),
        GameSpec("Seaquest", "seaquest"),
        GameSpec("SpaceInvaders", "space_invaders", max_frames=300_000),
    )
}


def get_game(name: str) -> GameSpec:
    """Return the spec of the game called ``name`` (CamelCase, as in :data:`GAMES`).

    Raises:
        ConfigError (a ValueError): if the game is not registered; the message lists the valid names.
    """
    try:
        return GAMES[name]
    except KeyError:
        raise ConfigError(f"unknown game {name!r} (valid: {', '.join(sorted(GAMES))})") from None
