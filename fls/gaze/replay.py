"""Replay an Atari-HEAD trial through the training preprocessing and pool its gaze per network input.

The training env (frame skip 4) shows the network, at agent step n, the stack of the pooled frames
``max(g[j-1], g[j])`` for ``j`` in ``{i-12, i-8, i-4, i}`` with ``i = 4n`` (oldest first), ``g`` the raw
grayscale frames. So one network input at raw frame ``i`` covers the 8 raw frames
``{i-13, i-12, i-9, i-8, i-5, i-4, i-1, i}``, and its fixation map pools the gaze points of exactly those.

Positions ``i`` are 0-based indices into the trial's kept gaze rows (file order, one row per frame, see
:class:`~fls.gaze.reader.ParseReport`). The first usable input is ``i = 16`` (``n = 4``): ``i = 12`` would
need frame ``-1``. The stack is not zeroed at episode boundaries inside a trial (training zeroes it on
every done); the handful of inputs that straddle a game over are kept, as in the reference replay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from fls.envs.preprocess import FRAME_SIZE, FRAME_SKIP, FRAME_STACK, resize_frame, rgb_to_gray
from fls.gaze.reader import FRAME_HEIGHT, FRAME_WIDTH, GazeRow, Trial, iter_frames, read_gaze

__all__ = [
    "FIRST_INPUT",
    "WINDOW_OFFSETS",
    "ReplayBatch",
    "ReplayItem",
    "fixation_map",
    "frame_window",
    "gaze_pixels",
    "input_fixation_pixels",
    "input_positions",
    "replay_trial",
]

WINDOW_OFFSETS = (-13, -12, -9, -8, -5, -4, -1, 0)
"""Raw frames of one network input at position ``i``, relative to ``i``, oldest first."""
FIRST_INPUT = FRAME_SKIP * FRAME_STACK
"""0-based position of the first network input whose 8 raw frames all exist (16, since ``i - 13 >= 0``)."""


def frame_window(position: int) -> tuple[int, ...]:
    """The 8 raw-frame positions covered by the network input at ``position`` (oldest first)."""
    return tuple(position + offset for offset in WINDOW_OFFSETS)


def input_positions(num_frames: int) -> range:
    """Positions ``i = 4n >= 16`` of the network inputs of a trial with ``num_frames`` frames."""
    return range(FIRST_INPUT, num_frames, FRAME_SKIP)


def gaze_pixels(points: np.ndarray) -> np.ndarray:
    """Flat pixel indices ``y * 160 + x`` of (K, 2) gaze points ``(x, y)``, dropping those outside the frame.

    Points are rounded to the nearest pixel with halves rounded up (``floor(v + 0.5)``), so a point at
    ``x = 159.6`` rounds to column 160 and is dropped.
    """
    if len(points) == 0:
        return np.zeros(0, np.int64)
    x = np.floor(points[:, 0] + 0.5).astype(np.int64)
    y = np.floor(points[:, 1] + 0.5).astype(np.int64)
    inside = (x >= 0) & (x < FRAME_WIDTH) & (y >= 0) & (y < FRAME_HEIGHT)
    return y[inside] * FRAME_WIDTH + x[inside]


def input_fixation_pixels(rows: Sequence[GazeRow], positions: Sequence[int] | None = None) -> list[np.ndarray]:
    """Flat pixel indices (with repeats) of the gaze pooled over each input's 8 frames.

    ``positions`` defaults to every input of the trial, :func:`input_positions` of ``len(rows)``. Needs only
    the gaze file, so the evaluator can draw shuffled-AUC negatives from the whole trial before decoding frames.
    """
    per_frame = [gaze_pixels(row.gaze) for row in rows]
    positions = input_positions(len(rows)) if positions is None else positions
    return [np.concatenate([per_frame[j] for j in frame_window(i)]) for i in positions]


def fixation_map(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(210, 160) int32 fixation-count map of flat pixel indices (a pixel hit k times counts k)."""
    counts = np.bincount(pixels, minlength=FRAME_HEIGHT * FRAME_WIDTH).reshape(FRAME_HEIGHT, FRAME_WIDTH)
    if out is None:
        return counts.astype(np.int32)
    out[...] = counts
    return out


@dataclass
class ReplayItem:
    """One network input of a replayed trial."""

    position: int
    """0-based position ``i`` of the input's newest raw frame in the trial."""
    obs: np.ndarray
    """(4, 84, 84) uint8 observation, exactly as the training env would stack it (oldest first)."""
    fixations: np.ndarray
    """(210, 160) int32 fixation counts pooled over the 8 raw frames."""
    frame_ids: tuple[str, ...]
    """The ids of the 8 raw frames, oldest first."""

    @property
    def frame_id(self) -> str:
        """The id of the newest raw frame (the one the input is named after)."""
        return self.frame_ids[-1]


@dataclass
class ReplayBatch:
    """Up to ``batch_size`` consecutive network inputs of one trial, stacked."""

    positions: np.ndarray
    """(B,) int64 positions ``i``."""
    obs: np.ndarray
    """(B, 4, 84, 84) uint8 observations."""
    fixations: np.ndarray
    """(B, 210, 160) int32 fixation counts."""
    frame_ids: list[tuple[str, ...]]
    """Per input, the 8 raw frame ids, oldest first."""

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> ReplayItem:
        return ReplayItem(int(self.positions[k]), self.obs[k], self.fixations[k], self.frame_ids[k])

    def __iter__(self) -> Iterator[ReplayItem]:
        return (self[k] for k in range(len(self)))


def replay_trial(
    trial: Trial,
    *,
    batch_size: int = 64,
    max_inputs: int | None = None,
    rows: Sequence[GazeRow] | None = None,
) -> Iterator[ReplayBatch]:
    """Yield the network inputs of ``trial`` with their pooled fixation maps, ``batch_size`` at a time.

    Each raw RGB frame is converted to grayscale (:func:`~fls.envs.preprocess.rgb_to_gray`), pairs are
    max-pooled in grayscale (as the training env does), resized with
    :func:`~fls.envs.preprocess.resize_frame` and stacked by 4. Frames are streamed from the archive and only
    the frames up to the last requested input are decoded.

    Args:
        trial: the trial to replay.
        batch_size: inputs per batch (the last batch may be smaller).
        max_inputs: replay only the first this many inputs (None: all).
        rows: the trial's parsed gaze rows, if already read (else :func:`~fls.gaze.reader.read_gaze` is called).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if rows is None:
        rows = read_gaze(trial)[0]
    positions = input_positions(len(rows))
    if max_inputs is not None:
        positions = positions[: max(max_inputs, 0)]
    if len(positions) == 0:
        return
    frame_ids = [row.frame_id for row in rows[: positions[-1] + 1]]
    per_frame = [gaze_pixels(row.gaze) for row in rows[: positions[-1] + 1]]
    stack: deque[np.ndarray] = deque(maxlen=FRAME_STACK)
    previous: np.ndarray | None = None
    batch: list[tuple[int, np.ndarray, np.ndarray, tuple[str, ...]]] = []
    for position, (_, rgb) in enumerate(iter_frames(trial, frame_ids)):
        gray = rgb_to_gray(rgb)
        if position % FRAME_SKIP == 0 and previous is not None:
            stack.append(resize_frame(np.maximum(previous, gray)))
            if position >= FIRST_INPUT:
                window = frame_window(position)
                pixels = np.concatenate([per_frame[j] for j in window])
                batch.append((position, np.stack(stack), pixels, tuple(frame_ids[j] for j in window)))
                if len(batch) == batch_size:
                    yield _make_batch(batch)
                    batch = []
        previous = gray
    if batch:
        yield _make_batch(batch)


def _make_batch(items: list[tuple[int, np.ndarray, np.ndarray, tuple[str, ...]]]) -> ReplayBatch:
    fixations = np.empty((len(items), FRAME_HEIGHT, FRAME_WIDTH), np.int32)
    for k, item in enumerate(items):
        fixation_map(item[2], out=fixations[k])
    obs = np.stack([item[1] for item in items])
    assert obs.shape[1:] == (FRAME_STACK, FRAME_SIZE, FRAME_SIZE)
    return ReplayBatch(
        positions=np.array([item[0] for item in items], np.int64),
        obs=obs,
        fixations=fixations,
        frame_ids=[item[3] for item in items],
    )
