"""Enduro: the ``Player``'s car and the other cars (``Car``) (OCAtari's ``ram/enduro.py``).

RAM: the player's steering drift at byte 46 (signed) and its row at byte 52; the other cars' lanes at bytes 27-33,
one per distance band (0 for an empty band), and the scroll of the road at byte 59. Measured in fls's env (seeded
random play): the player's car, 16 x 11 pixels, starts at column ``77 - drift // 2`` (within a pixel while it
steers) and row ``89 + ram[52]``. The other cars follow OCAtari's perspective formulas (row from the band and the
scroll, column from the lane bit and the drift); the column lands within 3 pixels of the drawn car. Their box is the
nearest car's 16 x 10 pixels, so a distant car (drawn as small as 2 x 1, up to 7 rows below the formula's row) sits
inside its box rather than filling it. Measured in daylight only: random play never reaches the night or the fog.
"""

from __future__ import annotations

import numpy as np

from fls.objects.detection import GameObject

CATEGORIES = ("Player", "Car")


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def detect(ram: np.ndarray) -> list[GameObject]:
    """The player's car, then the other cars on the road."""
    drift = _signed(int(ram[46]))
    objects = [GameObject("Player", 77 - (drift >> 1), 89 + int(ram[52]), 16, 11)]
    for band in range(7):
        lane = int(ram[27 + band])
        if not lane:
            continue
        y = 150 - int(1.2 * ((18 - band) * band) + ((int(ram[59]) >> 3) * (0.9**band)))
        if not lane & 16:
            x = 87
        elif lane & 1:
            x = int((2192 + 7 * y) / 30) + drift
        else:
            x = int((6498 - 23 * y) / 60) + drift
        objects.append(GameObject("Car", x, y, 16, 10))
    return objects
