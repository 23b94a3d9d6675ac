"""Check a game's RAM decoder against the pixels of its objects in seeded play.

:func:`agreement` plays a game with seeded random actions and compares, frame by frame, the boxes
:func:`fls.objects.detect` reads from RAM with the pixels a colour mask finds in the raw frame:

* precision: the share of detected boxes that hold at least one of the object's pixels, once grown by ``tolerance``
  pixels on every side (a box at a wrong address lands on background);
* recall: the share of the mask's connected blobs (of ``min_pixels`` or more) that lie wholly inside some detected
  box grown by ``tolerance`` (an object the decoder misses, or a box shifted or too small for its object).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from fls.envs import make_single_env
from fls.objects import detect

MaskFn = Callable[[np.ndarray], np.ndarray]  # raw (210, 160, 3) RGB frame -> (210, 160) bool mask of one category


def colour_mask(
    *colours: tuple[int, int, int], rows: tuple[int, int] = (0, 210), columns: tuple[int, int] = (0, 160)
) -> MaskFn:
    """A mask of the pixels with any of ``colours`` between ``rows`` and ``columns`` (start, stop)."""

    def mask(frame: np.ndarray) -> np.ndarray:
        out = np.zeros(frame.shape[:2], bool)
        for colour in colours:
            out |= (frame == np.asarray(colour, np.uint8)).all(axis=-1)
        out[: rows[0]] = False
        out[rows[1] :] = False
        out[:, : columns[0]] = False
        out[:, columns[1] :] = False
        return out

    return mask


def seeded_play(game: str, seed: int, steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rgb frame, ram)`` after each of ``steps`` seeded uniformly random actions (games restart when over)."""
    env = make_single_env(game, seed, clip_rewards=False, episodic_life=False)
    rng = np.random.default_rng(seed)
    try:
        _, info = env.reset()
        for _ in range(steps):
            _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                _, info = env.reset()
            yield info["rgb"], info["ram"]
    finally:
        env.close()


@dataclass
class Agreement:
    """Counts behind precision and recall (see the module's docstring)."""

    boxes: int = 0
    boxes_on_pixels: int = 0
    blobs: int = 0
    blobs_in_boxes: int = 0

    @property
    def precision(self) -> float:
        return self.boxes_on_pixels / self.boxes if self.boxes else float("nan")

    @property
    def recall(self) -> float:
        return self.blobs_in_boxes / self.blobs if self.blobs else float("nan")


def agreement(
    game: str,
    category: str,
    mask_fn: MaskFn,
    *,
    seeds: tuple[int, ...] = (0, 1),
    steps: int = 400,
    tolerance: int = 3,
    min_pixels: int = 2,
    recall_mask_fn: MaskFn | None = None,
) -> Agreement:
    """Compare ``category``'s boxes with ``mask_fn``'s pixels over seeded random play of ``game`` (recall with
    ``recall_mask_fn``'s when given: a flickering object's precision may need what several frames drew, its recall
    what this frame drew)."""
    counts = Agreement()
    for seed in seeds:
        for frame, ram in seeded_play(game, seed, steps):
            mask = mask_fn(frame)
            boxes = [b for b in detect(game, ram) if b.category == category]
            for box in boxes:
                counts.boxes += 1
                y0, x0 = max(box.y - tolerance, 0), max(box.x - tolerance, 0)
                grown = mask[y0 : box.y + box.h + tolerance, x0 : box.x + box.w + tolerance]
                counts.boxes_on_pixels += bool(grown.any())
            drawn = mask if recall_mask_fn is None else recall_mask_fn(frame)
            n, _, stats, _ = cv2.connectedComponentsWithStats(drawn.astype(np.uint8), connectivity=8)
            for label in range(1, n):
                if stats[label, cv2.CC_STAT_AREA] < min_pixels:
                    continue
                counts.blobs += 1
                left, top = stats[label, cv2.CC_STAT_LEFT], stats[label, cv2.CC_STAT_TOP]
                right = left + stats[label, cv2.CC_STAT_WIDTH] - 1
                bottom = top + stats[label, cv2.CC_STAT_HEIGHT] - 1
                counts.blobs_in_boxes += any(
                    b.contains(left, top, tolerance) and b.contains(right, bottom, tolerance) for b in boxes
                )
    return counts
