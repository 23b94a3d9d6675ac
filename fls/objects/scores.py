"""How well a saliency map points at the game's objects: plain functions over one map and the frame's boxes.

The map is one non-negative (210, 160) array over the raw frame (a network's (84, 84) map upsampled with
:func:`fls.models.renderer.upsample_to_frame`, as the videos show it); negative values are counted as 0. The
boxes are :class:`~fls.objects.GameObject` s of that frame (:func:`fls.objects.detect`). Three scores per frame
and per category, or for every object at once (:data:`ANY`: the union of all the frame's boxes):

- **pointing game** (Zhang et al. 2016, "Top-down neural attention by excitation backprop"): 1 when the map's
  maximum lies inside a box of the category grown by ``tolerance`` pixels on every side, else 0. The maximum is
  the first pixel holding the largest value in row-major order; a map that is all zero or all equal points
  nowhere and counts as a miss.
- **energy share** (the energy-based pointing game of Wang et al. 2020, Score-CAM): the map's sum inside the
  category's boxes (not grown) over the map's sum; 0 for an all-zero map.
- **energy ratio**: the energy share over the boxes' share of the frame's area; above 1 the object gets more
  of the map than its area, 1 is what a uniform map gets.

A category absent from a frame has no score there (its frames are skipped, not counted as misses).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fls.objects.detection import FRAME_HEIGHT, FRAME_WIDTH, GameObject

__all__ = ["ANY", "SCORES", "box_mask", "energy_share", "frame_scores", "pointing_hit"]

ANY = "any"
"""The pseudo-category of every object on the frame (the union of all its boxes)."""
SCORES = ("pointing", "energy", "ratio")
"""The names of the three scores, in the order :func:`frame_scores` gives them."""


def box_mask(boxes: Iterable[GameObject], shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH)) -> np.ndarray:
    """A boolean (H, W) mask of the union of ``boxes`` (each cut to the frame)."""
    mask = np.zeros(shape, bool)
    for box in boxes:
        mask[max(box.y, 0) : max(box.y + box.h, 0), max(box.x, 0) : max(box.x + box.w, 0)] = True
    return mask


def _peak(saliency: np.ndarray) -> tuple[int, int] | None:
    """``(x, y)`` of the map's maximum (the first in row-major order), None when the map is flat."""
    if saliency.size == 0 or saliency.max() <= saliency.min():
        return None
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    return int(x), int(y)


def pointing_hit(saliency: np.ndarray, boxes: Sequence[GameObject], tolerance: float = 0.0) -> bool:
    """Whether the maximum of ``saliency`` lies in one of ``boxes`` grown by ``tolerance`` pixels on every side
    (a flat map, all zero or all equal, misses)."""
    peak = _peak(np.maximum(np.asarray(saliency, np.float64), 0.0))
    return peak is not None and any(box.contains(peak[0], peak[1], tolerance) for box in boxes)


def energy_share(saliency: np.ndarray, mask: np.ndarray) -> float:
    """The share of the (non-negative) map's sum that falls inside ``mask``; 0 for an all-zero map."""
    positive = np.maximum(np.asarray(saliency, np.float64), 0.0)
    total = float(positive.sum())
    return float(positive[mask].sum()) / total if total > 0 else 0.0


def frame_scores(
    saliency: np.ndarray, objects: Sequence[GameObject], categories: Sequence[str], tolerance: float = 0.0
) -> np.ndarray:
    """Every score of one frame: a (len(categories) + 1, 3) float array, one row per category and a last row for
    :data:`ANY`, columns :data:`SCORES` (pointing hit as 0/1, energy share, energy ratio); NaN rows for the
    categories absent from ``objects`` (and for ANY on a frame without objects).

    ``saliency`` may also be a stack (N, H, W) of maps of the same frame (the methods and baselines of one step):
    the result is then (N, len(categories) + 1, 3), and each category's mask is built once for all of them."""
    maps = np.maximum(np.asarray(saliency, np.float64), 0.0)
    single = maps.ndim == 2
    maps = maps[None] if single else maps
    groups = [[o for o in objects if o.category == category] for category in categories] + [list(objects)]
    scores = np.full((len(maps), len(groups), len(SCORES)), np.nan)
    for row, boxes in enumerate(groups):
        if not boxes:
            continue
        mask = box_mask(boxes, maps.shape[1:])
        area = mask.mean()
        for i, one in enumerate(maps):
            share = energy_share(one, mask)
            scores[i, row] = (float(pointing_hit(one, boxes, tolerance)), share, share / area)
    return scores[0] if single else scores
