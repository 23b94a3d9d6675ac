"""Beam Rider: the ``Player``'s ship, the white ``Saucer`` s and the ship's shot (``Player_Projectile``, OCAtari's
name in ``ram/beamrider.py``: a laser or a torpedo).

RAM: the ship's x at byte 41 (OCAtari); the saucers' depth at bytes 25-31 (255: no saucer) and their place across the
beams at bytes 33-39 (128 on the middle beam, 0: no saucer); the shot's depth at byte 32 (255: none) and its place
across the beams at byte 40. Measured in fls's env (seeded random play):

* the yellow ship is 15 x 13 pixels from column ``int(1.5 * ram[41]) - 115`` and row 167, on every frame it is drawn;
  while it blows up (byte 12 is 5 then, 2 or 3 in play) it is a red wreck and not reported;
* everything on the beams is drawn in perspective: depth d maps onto a row through one table for saucers and shots
  (the shot's depth moves in steps of 8: 54 -> row 49, 102 -> 64, 150 -> 89, 206 -> 155; saucers farther than 54
  climb from row 43 at depth 30), and place p onto the centre column ``84 + (p - 128) * (0.31 + 0.00759 * row)``
  (OCAtari's reading of these bytes, their hex digits as decimals, and its saucer rows ``165 - ram[95 - rank]``
  are off by up to 20 pixels);
* a saucer grows from 1 x 1 pixels at the horizon to 8 x 6 near the ship; past depth 186 the saucers no longer sit
  where depth and place put them (they leave the beams), so none is reported there; a laser is 8 x 5 pixels, a
  torpedo at most 5 x 5, and one 8 x 5 box centred on the shot bounds both.

Not reported: the enemies' shots and the other enemies of later sectors (random play stays in sector 1 or 2).
"""

from __future__ import annotations

import numpy as np

from fls.objects.detection import GameObject

CATEGORIES = ("Player", "Saucer", "Player_Projectile")

_EXPLODING = 5  # byte 12 while the ship blows up
_NONE = 255  # a depth byte with nothing at that slot
_FARTHEST_ON_BEAMS = 186
# depth -> row of the object's top (the shot's depths, and the saucers' below 54)
_DEPTHS = (0, 30, 40, 47, 54, 62, 70, 78, 86, 94, 102, 110, 118, 126, 134, 142, 150, 158, 166, 174, 182, 190, 198, 206)
_ROWS = (43, 43, 45, 47, 49, 51, 53, 56, 58, 61, 64, 67, 71, 75, 79, 84, 89, 95, 102, 109, 118, 129, 141, 155)
# saucer size by row: (first row past the band, width, height)
_SAUCER_SIZES = ((48, 1, 1), (56, 3, 2), (67, 4, 2), (85, 6, 4), (102, 7, 4), (_ROWS[-1] + 1, 8, 6))


def _on_beams(category: str, depth: int, place: int, size: tuple[int, int] | None = None) -> GameObject:
    """The box of an object at ``depth`` and ``place`` across the beams, ``size`` pixels or a saucer's at that row."""
    row = round(float(np.interp(depth, _DEPTHS, _ROWS)))
    width, height = size or next((w, h) for end, w, h in _SAUCER_SIZES if row < end)
    centre = 84 + (place - 128) * (0.31 + 0.00759 * row)
    return GameObject(category, round(centre - width / 2), row, width, height)


def detect(ram: np.ndarray) -> list[GameObject]:
    """The ship unless it is blowing up, the saucers on the beams, the ship's shot in flight."""
    objects = []
    if ram[12] != _EXPLODING:
        objects.append(GameObject("Player", int(1.5 * int(ram[41])) - 115, 167, 15, 13))
    for slot in range(7):
        depth, place = int(ram[25 + slot]), int(ram[33 + slot])
        if depth <= _FARTHEST_ON_BEAMS and place:
            objects.append(_on_beams("Saucer", depth, place))
    if ram[32] != _NONE:
        objects.append(_on_beams("Player_Projectile", int(ram[32]), int(ram[40]), (8, 5)))
    return objects
