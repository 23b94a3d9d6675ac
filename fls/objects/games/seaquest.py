"""Seaquest: the agent's submarine (``Player``) and its torpedo (``PlayerMissile``), the ``Shark`` and enemy
``Submarine`` of the four lanes, their torpedoes (``EnemyMissile``) and the ``Diver`` to rescue.

RAM (OCAtari's ``ram/seaquest.py``): the submarine's x and y at bytes 70 and 97, its torpedo's x at byte 103 (none
unless 0 < x < 160); lane ``L`` (0 at the bottom, 24 pixels apart) holds sharks or enemy submarines (submarines
while ``ram[89 + L] % 8`` is 4-6) in up to three slots 16 pixels apart from x ``ram[30 + L]`` (slot ``j`` present
while bit ``2 - j`` of ``ram[36 + L]`` is set), and one diver, or the enemy submarines' torpedo, at x
``ram[71 + L]`` (none unless 0 < x < 160). Measured on fls's frames (seeded random play), with
``top = 137 - 24 L``:

* the submarine's pixels lie in the 16x11 box from ``(ram[70], ram[97] + 33)``; it is not drawn at all while
  ``ram[105]`` is non-zero (its explosion and the pause after it; OCAtari checks only 1-14);
* its torpedo's in the 8x1 box from ``(ram[103], ram[97] + 40)``, and it is not drawn while the submarine is
  surfaced (``ram[97] == 13``);
* a shark's 8x7 box starts at ``(x, top + ram[93])`` (``ram[93]``: the sharks' bobbing), an enemy submarine's 8x11
  box at ``(x, top + 3)``, a diver's 8x14 box at ``(ram[71 + L], top)``, an enemy torpedo's 6x4 box at
  ``(ram[71 + L] + 2, top + 8)``;
* columns 0-7 are a black border: an object entering from the left is cut there (slot x wraps modulo 256).

The surface patrol submarine (late in a game) is not reached by random play and not reported.
"""

from __future__ import annotations

import numpy as np

from fls.objects.detection import GameObject

CATEGORIES = ("Player", "PlayerMissile", "Shark", "Submarine", "Diver", "EnemyMissile")

_SURFACE = 13  # ram[97] of the surfaced submarine
_LEFT = 8  # columns 0-7 are a black border that hides objects entering from the left


def _in_water(obj: GameObject) -> GameObject | None:
    """``obj`` cut to the columns right of the black border (0-7), None when all of it is behind the border."""
    left = max(obj.x, _LEFT)
    right = obj.x + obj.w
    return GameObject(obj.category, left, obj.y, right - left, obj.h) if right > left else None


def _lane(ram: np.ndarray, lane: int) -> list[GameObject]:
    """The enemies of ``lane`` (0 at the bottom) and its diver or enemy torpedo."""
    top = 137 - 24 * lane
    submarines = 4 <= int(ram[89 + lane]) % 8 <= 6
    objects = []
    for slot in range(3):
        if int(ram[36 + lane]) >> (2 - slot) & 1:
            x = (int(ram[30 + lane]) + 16 * slot) % 256
            x = x - 256 if x > 200 else x  # entering from the left edge
            if submarines:
                objects.append(GameObject("Submarine", x, top + 3, 8, 11))
            else:
                objects.append(GameObject("Shark", x, top + int(ram[93]), 8, 7))
    x = int(ram[71 + lane])
    if 0 < x < 160:
        objects.append(
            GameObject("EnemyMissile", x + 2, top + 8, 6, 4) if submarines else GameObject("Diver", x, top, 8, 14)
        )
    return objects


def detect(ram: np.ndarray) -> list[GameObject]:
    """The submarine (unless exploding), its torpedo, and every lane's enemies, diver or enemy torpedo."""
    objects = []
    if ram[105] == 0:
        objects.append(GameObject("Player", int(ram[70]), int(ram[97]) + 33, 16, 11))
    if 0 < ram[103] < 160 and ram[97] != _SURFACE:  # a torpedo left from the dive is not drawn at the surface
        objects.append(GameObject("PlayerMissile", int(ram[103]), int(ram[97]) + 40, 8, 1))
    for lane in range(4):
        objects += _lane(ram, lane)
    return [cut for cut in map(_in_water, objects) if cut is not None]
