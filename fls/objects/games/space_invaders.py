"""Space Invaders: the laser cannon (``Player``), the 36 invaders (``Alien``), the mother ship (``Satellite``) and
the laser shots (``Bullet``: the two invaders' bombs and the cannon's shot, OCAtari's one category).

RAM (OCAtari's ``ram/spaceinvaders.py``): the cannon's x at byte 28; the invaders' block x at byte 26, its descent
at byte 16 (``ram[16]`` rows of 2 pixels), one byte per invader row with one bit per column; the mother ship's x at
byte 30 (none while 0 or 180); the bombs at x bytes 83, 84 and y bytes 81, 82, the cannon's shot at x byte 87 and y
byte 85 (``y = 2 * byte + 3``). Measured on fls's frames (seeded random play):

* invader row ``i`` (0 at the top, 18 pixels apart) is byte ``23 - i``, column ``j`` (16 pixels apart) its bit ``j``
  (bit 0 on the left); the invaders' 8x10 boxes start at column ``ram[26] - 1``, row ``31 + 2 * ram[16]``. A shot
  invader's explosion stays drawn in the invaders' colour for a few steps after its bit is cleared (not reported);
* the cannon's pixels lie in columns ``ram[28] - 2 .. ram[28] + 6``, rows 185-194. While a new cannon blinks
  (``ram[120]`` non-zero) it is drawn only on frames with bit 3 of the frame counter ``ram[74]`` set;
* the shots flicker: the bombs are drawn on frames where ``ram[74]`` is even, the cannon's shot where it is odd. With
  a frame skip of 4 the phase holds for many steps, so a shot can stay missing from the last raw frame (``info["rgb"]``)
  while the agent's max-pooled observation, which also holds the frame before, shows it. The decoder reports the
  objects drawn in the frame whose RAM it reads, so it reports a shot only in its phase. A shot's pixels lie within
  rows ``2 * byte + 1 .. 2 * byte + 13`` of its one column ``x byte - 2``, and only between rows 20 and 195;
* the mother ship's pixels lie in columns ``ram[30] - 2 .. ram[30] + 6``, rows 11-20.

The shields are scenery and not reported.
"""

from __future__ import annotations

import numpy as np

from fls.objects.detection import GameObject

CATEGORIES = ("Player", "Alien", "Satellite", "Bullet")

_COUNTER = 74  # frame counter: its parity picks which shots are drawn, its bit 3 the blinking cannon
# (x byte, y byte, drawn on even frames) of the invaders' two bombs and the cannon's shot
_SHOTS = ((83, 81, True), (84, 82, True), (87, 85, False))


def _aliens(ram: np.ndarray) -> list[GameObject]:
    left, top = int(ram[26]) - 1, 31 + 2 * int(ram[16])
    return [
        GameObject("Alien", left + 16 * column, top + 18 * row, 8, 10)
        for row in range(6)
        for column in range(6)
        if int(ram[23 - row]) >> column & 1
    ]


def _shots(ram: np.ndarray) -> list[GameObject]:
    even = int(ram[_COUNTER]) % 2 == 0
    shots = []
    for x_byte, y_byte, drawn_on_even in _SHOTS:
        y = 2 * int(ram[y_byte]) + 3
        if drawn_on_even == even and 20 < y < 195:
            shots.append(GameObject("Bullet", int(ram[x_byte]) - 2, y - 2, 1, 13))
    return shots


def detect(ram: np.ndarray) -> list[GameObject]:
    """The cannon (unless blinked off), the invaders still alive, the mother ship and the shots drawn this frame."""
    objects = []
    if ram[120] == 0 or int(ram[_COUNTER]) & 8:
        objects.append(GameObject("Player", int(ram[28]) - 2, 185, 9, 10))
    objects += _aliens(ram)
    if ram[30] not in (0, 180):
        objects.append(GameObject("Satellite", int(ram[30]) - 2, 11, 9, 10))
    return objects + _shots(ram)
