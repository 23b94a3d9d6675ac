"""Breakout's score in RAM, and the score wrap that makes ``BreakoutInfinite`` respawn its wall forever.

Breakout has two walls of 432 points (6 rows of 18 bricks worth 1, 1, 4, 4, 7, 7 from the bottom up); after
the second one is cleared (864 points) no third wall comes and the game stalls. Free-Lunch Saliency
(Nikulin et al.) rewrote the score in RAM from 864 to 432 so that the wall respawns. ALE reads the score
as BCD from RAM 76 (hundreds, low nibble) and 77 (tens and ones) and lives from RAM 57.

What the ROM does, found by driving ale-py 0.12.1's emulator (probe scripts, pinned in
``tests/test_envs_infinite.py``):

* The wall is refilled, all 108 bricks in one frame, on the frame after the ball hits the paddle *if the
  displayed score is exactly 432 then* (RAM 76 == 0x04 and RAM 77 == 0x32). Nothing else is checked: no
  brick count, no wall counter, not even that the wall is empty (with 432 written over a partial wall the
  next paddle hit refills it). That is all that makes the first wall come back: it is cleared exactly
  when the score reaches 432, and the ball must come back to the paddle before the next brick can score.
  At 864 the same check fails, hence no third wall. A score of 432 in another BCD form (0x14 in RAM 76,
  which ALE also reads as 432) does not refill.
* So rewriting 864 -> 432 when the score reaches 864 is enough: that is the frame the second wall is
  cleared, and the wall comes back at the next paddle hit. Any later frame before that paddle hit works
  as well (the wall is empty, so the score cannot move meanwhile); a rewrite after it waits for the
  following paddle hit. Nothing has to happen earlier. Subtracting 432 earlier in the second wall would
  also work (the wall is then cleared at exactly 432), but *writing 432* before the last brick does not:
  that brick moves the score off 432 (e.g. to 439) and the wall never comes back. The wrap acts on the
  raw frame right after the score reaches 864 (or more, which plain play cannot reach).
* Zeroing the brick bytes does not by itself refill the wall (the score is what the ROM checks).
* The bricks are RAM 0-35: byte ``6 * g + r`` holds the bits of column group ``g`` in row ``r`` (row 0
  at the bottom), 2 bits a brick; a full wall is 63 (g=0), 255 (g=1..4) and 192 (g=5) in every row. The
  low nibble of group 2 is no brick: an empty wall reads 15 there, 0 elsewhere.
* At reset the ROM draws the wall one byte a frame for 36 frames, overwriting RAM writes to it.
* ALE's reward is the score delta between frames, so the rewrite alone would give -432; the wrap adds 432
  back to that raw frame's reward, so rewards stay non-negative and the unclipped return is the true score
  (``displayed score + 432 * wraps``). Beyond 999 ALE would read a negative delta (it drops the thousands
  nibble), which the wrap also prevents by keeping the displayed score at or below 864.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = [
    "BRICK_RAM",
    "FULL_WALL",
    "LIVES_RAM",
    "SCORE_CAP",
    "SCORE_RAM",
    "WALL_POINTS",
    "ScoreWrap",
    "count_bricks",
    "read_score",
    "write_score",
]

SCORE_RAM = (76, 77)
"""RAM indices of the score: hundreds (low nibble, BCD) and tens/ones (BCD)."""
LIVES_RAM = 57
BRICK_RAM = slice(0, 36)
WALL_POINTS = 432
"""Points of one full wall."""
SCORE_CAP = 2 * WALL_POINTS
"""The score at which the plain game stalls (two walls cleared)."""
FULL_WALL = np.repeat(np.array([63, 255, 255, 255, 255, 192], np.uint8), 6)
"""RAM 0-35 of a full wall."""
_BRICK_BITS = FULL_WALL.copy()
_BRICK_BITS[12:18] = 0xF0  # the low nibble of column group 2 is no brick


class _RamAccess(Protocol):
    def getRAM(self) -> np.ndarray: ...  # noqa: N802 (ale_py.ALEInterface names)

    def setRAM(self, index: int, value: int) -> None: ...  # noqa: N802


def _from_bcd(byte: int) -> int:
    return 10 * (byte >> 4) + (byte & 0x0F)


def _to_bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def read_score(ram: np.ndarray) -> int:
    """The displayed score in Breakout's RAM, read as ALE reads it (hundreds nibble, tens and ones)."""
    return 100 * (int(ram[SCORE_RAM[0]]) & 0x0F) + _from_bcd(int(ram[SCORE_RAM[1]]))


def count_bricks(ram: np.ndarray) -> int:
    """Bricks standing in Breakout's RAM (108 in a full wall)."""
    return int(np.unpackbits(ram[BRICK_RAM] & _BRICK_BITS).sum()) // 2


def write_score(ale: _RamAccess, score: int) -> None:
    """Write ``score`` (0-999) to Breakout's RAM in the BCD form the ROM itself writes."""
    if not 0 <= score <= 999:
        raise ValueError(f"Breakout shows scores 0-999, got {score}")
    ale.setRAM(SCORE_RAM[0], score // 100)
    ale.setRAM(SCORE_RAM[1], _to_bcd(score % 100))


class ScoreWrap:
    """Keeps one Breakout game below the cap: call :meth:`before_act` before every raw ``ale.act``.

    When the displayed score is at least 864 it writes ``score - 432`` and returns 432, the correction to
    add to the reward of the raw frame about to be emulated (ALE's delta for that frame is 432 too low).
    """

    def __init__(self, ale: _RamAccess) -> None:
        """Watch the RAM of ``ale`` (an ``ale_py.ALEInterface``)."""
        self.ale = ale
        self.wraps = 0
        """Rewrites in the current game: the true score is the displayed one plus ``432 * wraps``."""

    def reset(self) -> None:
        """Start counting for a new game."""
        self.wraps = 0

    def before_act(self) -> int:
        """Rewrite a capped score; return the reward correction of the next raw frame (0 or 432)."""
        score = read_score(self.ale.getRAM())
        if score < SCORE_CAP:
            return 0
        write_score(self.ale, score - WALL_POINTS)
        self.wraps += 1
        return WALL_POINTS
