"""Beam Rider: the ``Player``'s ship (OCAtari's ``ram/beamrider.py``: its x from byte 41).

Measured in fls's env (seeded random play): the yellow ship spans columns ``int(1.5 * ram[41]) - 115`` onwards, 15
wide, and rows 167-179, on every frame it is drawn. While the ship blows up (byte 12 is 5 then, 2 or 3 in play) it is
drawn as a red wreck and not reported.

Not reported yet: the saucers, the player's lasers and torpedoes, the enemies' shots. They fly along the beams in
perspective (byte 32, the laser's depth, maps onto rows non-linearly: 198 -> row 141, 150 -> 89, 86 -> 58, and its
column drifts towards the vanishing point), which OCAtari's linear offsets do not capture.
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
