"""Ms. Pac-Man: the ``Player`` and the four ``Ghost`` s (OCAtari's ``ram/mspacman.py``).

RAM: Ms. Pac-Man's x and y at bytes 10 and 16; the ghosts' x at bytes 6-9 and y at bytes 12-15 (orange, cyan, pink,
red); byte 19 counts the ghosts out beside the red one, none while byte 47 is 0. Measured in fls's env (seeded
random play): a sprite spans columns ``x - 12 .. x - 5`` and rows ``y + 1 .. y + 10`` (OCAtari's 9-wide box starts a
column early); while turning or animating the drawn sprite shifts by up to 2 pixels. While Ms. Pac-Man dies
(about ten steps) the ghosts leave the screen with their places kept in RAM; byte 25 is 0 then (1-4 in play).

The ghosts flicker: ghosts sharing rows take turns to be drawn (at the start, the red one and one of the other three
each frame), so a ghost in play is missing from the last raw frame about half the time, often two steps running.
The decoder reports every ghost in play, drawn or not (the agent's stack of frames sees them all); the test
compares the boxes with the ghost pixels of the last three steps. Not reported: the fruit (random play eats too few
pellets for one to appear, so its offsets are unmeasured) and the pellets.
"""

from __future__ import annotations

import numpy as np

from fls.objects.detection import GameObject

CATEGORIES = ("Player", "Ghost")

_WIDTH, _HEIGHT = 8, 10


def _sprite(category: str, x: int, y: int) -> GameObject:
    return GameObject(category, x - 12, y + 1, _WIDTH, _HEIGHT)


def detect(ram: np.ndarray) -> list[GameObject]:
    """Ms. Pac-Man, and the ghosts in play (the red one, then ``ram[19]`` of the others) unless she is dying."""
    objects = [_sprite("Player", int(ram[10]), int(ram[16]))]
    if ram[47] > 0 and ram[25] != 0:
        others = min(int(ram[19]), 3)
        for i in (3, *range(others)):
            objects.append(_sprite("Ghost", int(ram[6 + i]), int(ram[12 + i])))
    return objects
