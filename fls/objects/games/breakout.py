"""Breakout: the paddle (``Player``) and the ``Ball`` (OCAtari's ``ram/breakout.py``: paddle x at byte 72,
ball x and y at bytes 99 and 101; no ball while byte 101 is 0 or the ball is below the paddle)."""

from __future__ import annotations

import numpy as np

from fls.objects.detection import GameObject

CATEGORIES = ("Player", "Ball")


def detect(ram: np.ndarray) -> list[GameObject]:
    """The paddle, and the ball when it is in play."""
    objects = [GameObject("Player", int(ram[72]) - 47, 189, 16, 4)]
    ball_y = int(ram[101]) + 9
    if ram[101] != 0 and ball_y <= 196:
        objects.append(GameObject("Ball", int(ram[99]) - 49, ball_y, 2, 4))
    return objects
