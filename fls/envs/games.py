"""Registry of the Atari games fls supports, with their per-game limits.

The limits follow the OpenAI-baselines protocol: ``<Game>NoFrameskip-v4`` stops an episode after
400,000 raw frames (300,000 for SpaceInvaders), and evaluation cuts an episode after
``eval_max_episode_steps`` agent steps (108,000 by default, 30,000 for Breakout, where a policy
that never presses FIRE after losing a ball would otherwise stall forever).
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
    """

    name: str
    rom: str
    max_frames: int = 400_000
    eval_max_episode_steps: int = 108_000


GAMES: dict[str, GameSpec] = {
    spec.name: spec
    for spec in (
        GameSpec("BeamRider", "beam_rider"),
        GameSpec("Breakout", "breakout", eval_max_episode_steps=30_000),
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
