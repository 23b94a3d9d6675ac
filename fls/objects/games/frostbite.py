"""Frostbite: the ``Player`` (Frostbite Bailey), the ice floes (``FloatingBlock``) and the ``Bird`` s.

RAM (OCAtari's ``ram/frostbite.py``): Bailey's x at byte 102 and y at byte 100, how far he has sunk at byte 107 (18
once gone); the floes' x per row at bytes 31-34 (bottom row first), byte 30 is 8 while each row is three whole
floes; the enemies' x per row at bytes 84-87, byte 88-91 non-zero for a second one 32 pixels right, their kind at
bytes 35-38 (18 or 26: birds). Measured in fls's env (seeded random play): Bailey is 8 x 18 pixels from column
``ram[102]`` and row ``ram[100] + 29``, cut from the top as he sinks; a floe is 24 x 7 pixels from column
``(ram[31 + row] + 32 * k - 8) % 160`` (k = 0, 1, 2) and row ``174 - 26 * row``; a bird 8 x 7 from column
``ram[84 + row]`` and row ``160 - 26 * row``: OCAtari's offsets, exact to the pixel.

Not reported: the crabs, clams and fish of later levels, the bear of level 4 (random play never reaches them), the
split floes of later levels (byte 30 other than 8), the igloo and its door (scenery that grows, not a mover).
"""

from __future__ import annotations

import numpy as np

from fls.objects.detection import FRAME_WIDTH, GameObject

CATEGORIES = ("Player", "FloatingBlock", "Bird")

_SUNK = 18
_BIRDS = (18, 26)
_WHOLE_FLOES = 8  # byte 30 while each row is three whole floes


def _floes(ram: np.ndarray) -> list[GameObject]:
    """Three whole floes a row, the only layout random play reaches (never past the right edge in it)."""
    if ram[30] != _WHOLE_FLOES:
        return []
    objects = []
    for row in range(4):
        y = 174 - 26 * row
        for k in range(3):
            x = (int(ram[31 + row]) + 32 * k - 8) % FRAME_WIDTH
            objects.append(GameObject("FloatingBlock", x, y, 24, 7))
    return objects


def detect(ram: np.ndarray) -> list[GameObject]:
    """Bailey unless he has sunk, the floes, the birds."""
    objects = []
    sunk = int(ram[107])
    if sunk < _SUNK:
        objects.append(GameObject("Player", int(ram[102]), int(ram[100]) + 29 + sunk, 8, _SUNK - sunk))
    objects += _floes(ram)
    for row in range(4):
        x = int(ram[84 + row])
        if int(ram[35 + row]) in _BIRDS and (0 < x < 160 or ram[88 + row]):
            y = 160 - 26 * row
            objects.append(GameObject("Bird", x, y, 8, 7))
            if ram[88 + row]:
                objects.append(GameObject("Bird", x + 32, y, 8, 7))
    return objects
