"""Pong: the agent's paddle (``Player``, right), the computer's paddle (``Enemy``, left) and the ``Ball``.

RAM (OCAtari's ``ram/pong.py``): ball x and y at bytes 49 and 54 (no ball while byte 54 is 0), the computer's paddle
y at byte 50, the agent's at byte 51. Measured on fls's frames (seeded random play): the paddles are 16 rows high
(OCAtari says 15), the agent's starts on the even row at or above ``ram[51] - 13`` (``ram[51] - 13`` or ``- 14`` by
the byte's parity), the computer's at ``ram[50] - 15``; both are cut to the playfield between the walls (rows
34-193) and vanish above it. The ball's 2x4 pixels start at ``ram[54] - 14`` or ``- 15`` (a box of 5 rows from
``- 15`` bounds both), column ``ram[49] - 49``.
"""

from __future__ import annotations

import numpy as np

from fls.objects.detection import GameObject

CATEGORIES = ("Player", "Enemy", "Ball")

_TOP, _BOTTOM = 34, 194  # playfield rows between the white walls
_PADDLE_HEIGHT = 16


def _paddle(category: str, x: int, top: int) -> GameObject | None:
    """A paddle whose 16 rows start at ``top``, cut to the playfield (None when none of it is inside)."""
    y0, y1 = max(top, _TOP), min(top + _PADDLE_HEIGHT, _BOTTOM)
    return GameObject(category, x, y0, 4, y1 - y0) if y1 > y0 else None


def detect(ram: np.ndarray) -> list[GameObject]:
    """The paddles on the playfield and the ball when it is in play."""
    player_top = (int(ram[51]) - 13) & ~1  # drawn from an even row
    paddles = [_paddle("Player", 140, player_top), _paddle("Enemy", 16, int(ram[50]) - 15)]
    objects = [paddle for paddle in paddles if paddle is not None]
    if ram[54] != 0:
        objects.append(GameObject("Ball", int(ram[49]) - 49, int(ram[54]) - 15, 2, 5))
    return objects
