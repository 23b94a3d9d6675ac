"""Where each object of a game is, read from the console's RAM.

A game's decoder (one module per game in :mod:`fls.objects.games`) turns the 128 RAM bytes of one frame into
:class:`GameObject` boxes in raw-frame pixels (210 rows x 160 columns; ``x`` from the left, ``y`` from the top). The
RAM addresses and offsets follow OCAtari (Delfosse et al. 2023, ``ocatari/ram/<game>.py``), the object categories
keep its names; every decoder is tested against the objects' own pixels in seeded play.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import numpy as np

from fls.errors import ConfigError

__all__ = [
    "FRAME_HEIGHT",
    "FRAME_WIDTH",
    "GameObject",
    "categories",
    "decoder",
    "detect",
    "games_with_decoder",
    "object_at",
]

FRAME_HEIGHT, FRAME_WIDTH = 210, 160

# Registered game name -> module of fls.objects.games. BreakoutInfinite is Breakout with a rewritten score.
_DECODERS: dict[str, str] = {
    "BeamRider": "beam_rider",
    "Breakout": "breakout",
    "BreakoutInfinite": "breakout",
    "Enduro": "enduro",
    "Frostbite": "frostbite",
    "MsPacman": "ms_pacman",
    "Pong": "pong",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}


@dataclass(frozen=True)
class GameObject:
    """One object on screen: its category (OCAtari's name, e.g. ``"Ball"``) and its box in raw-frame pixels.

    The box covers columns ``x .. x + w - 1`` and rows ``y .. y + h - 1`` of the 210x160 frame.
    """

    category: str
    x: int
    y: int
    w: int
    h: int

    @property
    def center(self) -> tuple[float, float]:
        """``(x, y)`` of the box's centre, in pixels."""
        return self.x + self.w / 2, self.y + self.h / 2

    def clipped(self) -> GameObject | None:
        """The box cut to the frame, or None when nothing of it is on screen."""
        x0, y0 = max(self.x, 0), max(self.y, 0)
        x1, y1 = min(self.x + self.w, FRAME_WIDTH), min(self.y + self.h, FRAME_HEIGHT)
        if x1 <= x0 or y1 <= y0:
            return None
        return GameObject(self.category, x0, y0, x1 - x0, y1 - y0)

    def contains(self, x: float, y: float, tolerance: float = 0.0) -> bool:
        """Whether pixel ``(x, y)`` lies in the box grown by ``tolerance`` pixels on every side."""
        return (
            self.x - tolerance <= x < self.x + self.w + tolerance
            and self.y - tolerance <= y < self.y + self.h + tolerance
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"category", "x", "y", "w", "h"}``."""
        return asdict(self)


def games_with_decoder() -> list[str]:
    """The registered games whose objects :func:`detect` can read, sorted."""
    return sorted(_DECODERS)


def decoder(game: str) -> ModuleType:
    """The decoder module of ``game``; :class:`~fls.errors.ConfigError` naming the games that have one otherwise."""
    try:
        name = _DECODERS[game]
    except KeyError:
        raise ConfigError(
            f"no object decoder for game {game!r} (games with one: {', '.join(games_with_decoder())})"
        ) from None
    return importlib.import_module(f"fls.objects.games.{name}")


def categories(game: str) -> tuple[str, ...]:
    """The object categories ``game``'s decoder can report, in a fixed order (for tables and legends)."""
    return tuple(decoder(game).CATEGORIES)


def detect(game: str, ram: np.ndarray) -> list[GameObject]:
    """The objects on screen in ``game`` given its 128 RAM bytes, as boxes cut to the 210x160 frame.

    Args:
        game: a registered game name, e.g. ``"Breakout"`` (:func:`games_with_decoder` lists them).
        ram: the console's RAM, 128 unsigned bytes (``info["ram"]`` of :func:`fls.envs.make_single_env`,
            ``ale.getRAM()``).

    Raises:
        ConfigError: for a game without a decoder or RAM that is not 128 bytes.
    """
    module = decoder(game)
    memory = np.asarray(ram)
    if memory.shape != (128,):
        raise ConfigError(f"ram must be the console's 128 bytes, got shape {memory.shape}")
    boxes = (obj.clipped() for obj in module.detect(memory.astype(np.int64)))
    return [box for box in boxes if box is not None]


def object_at(objects: Sequence[GameObject], x: float, y: float) -> GameObject | None:
    """The object whose box holds the point ``(x, y)`` (continuous raw-frame coordinates: pixel ``i`` spans
    ``[i, i + 1)``), the smallest when boxes overlap (the first of equal ones); None when it is in none."""
    holding = [obj for obj in objects if obj.contains(x, y)]
    return min(holding, key=lambda obj: obj.w * obj.h, default=None)
