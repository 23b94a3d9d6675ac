"""Beam Rider: the ``Player``'s ship (OCAtari's ``ram/beamrider.py``: its x from byte 41).

Measured in fls's env (seeded random play): the yellow ship spans columns ``int(1.5 * ram[41]) - 115`` onwards, 15
wide, and rows 167-179, on every frame it is drawn. While the ship blows up (byte 12 is 5 then, 2 or 3 in play) it is
drawn as a red wreck and not reported.

Not reported yet: the saucers, the player's lasers and torpedoes, the enemies' shots. They fly along the beams in
perspective, which OCAtari's offsets do not capture. Measured so far: a saucer's centre column is about
``84 + (ram[33 + k] - 128) * (0.31 + 0.0076 * row)``, but its row (OCAtari: ``165 - ram[95 - rank]``, ranked by the
depths at bytes 25-31) is off by up to 20 rows while saucers pass each other, so boxes matched the saucers' pixels
only 84% of the time (recall 88%, 3 pixels of tolerance); the laser's depth (byte 32) maps onto rows non-linearly
(198 -> row 141, 150 -> 89, 86 -> 58) as its column drifts towards the vanishing point.
"""

from __future__ import annotations

import numpy as np

from fls.objects.detection import GameObject

CATEGORIES = ("Player",)

_EXPLODING = 5  # byte 12 while the ship blows up


def detect(ram: np.ndarray) -> list[GameObject]:
    """The ship, unless it is blowing up."""
    if ram[12] == _EXPLODING:
        return []
    return [GameObject("Player", int(1.5 * int(ram[41])) - 115, 167, 15, 13)]
