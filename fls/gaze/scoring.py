"""Score saliency maps against Atari-HEAD gaze: replay trials, run the caller's saliency methods, tabulate.

For each trial: parse the gaze file, replay its network inputs (:func:`~fls.gaze.replay.replay_trial`),
ask ``saliency_fn`` for 84x84 maps of the inputs that have at least one fixation (the others are skipped
and counted), add the baselines (:mod:`fls.gaze.baselines`), upsample every map to 210x160 with
:func:`~fls.models.renderer.upsample_to_frame` and score it with :class:`~fls.gaze.metrics.FrameScorer`
(NSS, KL, CC, shuffled AUC).

Shuffled-AUC negatives of an input come from the summed fixation maps of ``other_frames`` other inputs of
the same trial with fixations, drawn without replacement among those whose 8 raw frames do not overlap
its own (``|j - i| > 13``, so at least 16 raw frames apart), from the whole trial even when ``max_frames``
limits what is scored.

Randomness is seeded per trial from ``(seed, crc32(trial name))`` and per input from its position, so a
trial's numbers do not depend on the other trials scored, on ``batch_size`` or on ``max_frames``.
"""

from __future__ import annotations

import csv
import math
import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fls.envs.preprocess import FRAME_SIZE
from fls.gaze.baselines import BASELINES, BaselineMaps
from fls.gaze.metrics import KL_EPSILON, FrameScorer
from fls.gaze.reader import ParseReport, Trial, read_gaze
from fls.gaze.replay import WINDOW_OFFSETS, fixation_map, input_fixation_pixels, input_positions, replay_trial
from fls.models.renderer import upsample_to_frame
from fls.rundir import atomic_path, atomic_write_text
from fls.tables import markdown_table

__all__ = ["CSV_COLUMNS", "METRICS", "GazeResults", "SaliencyFn", "score_trials"]

SaliencyFn = Callable[[np.ndarray], Mapping[str, "np.ndarray | torch.Tensor"]]
"""``obs`` uint8 (B, 4, 84, 84) -> ``{method name: (B, 84, 84) float map}`` (numpy or torch)."""
METRICS = ("nss", "kl", "sauc", "cc")
"""Metric columns, in table order."""
_LABELS = {"nss": "NSS ↑", "kl": "KL ↓", "sauc": "sAUC ↑", "cc": "CC ↑"}
CSV_COLUMNS = ("game", "trial", "position", "frame_id", "fixations", "method", *METRICS)
_WINDOW_SPAN = -min(WINDOW_OFFSETS)  # inputs at most this many raw frames apart share raw frames


@dataclass
class GazeResults:
    """Per-frame scores of every method, with what is needed to summarise and save them."""

    methods: list[str]
    """Scored methods in table order: the caller's, then the baselines."""
    records: list[tuple] = field(default_factory=list)
    """One tuple per (frame, method), in :data:`CSV_COLUMNS` order."""
    reports: dict[str, ParseReport] = field(default_factory=dict)
    """Parse report of each trial's gaze file, by trial name."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Per trial, the replayed inputs skipped because no fixation fell in the frame."""
    settings: dict[str, object] = field(default_factory=dict)
    """The scoring settings (for the record)."""

    def games(self) -> list[str]:
        """Games present, in order of first appearance."""
        return list(dict.fromkeys(record[0] for record in self.records))

    def table(self) -> dict[tuple[str, str], np.ndarray]:
        """Per (game, method), the (frames, 4) float64 metric values in :data:`METRICS` order (NaN/inf kept)."""
        columns = [CSV_COLUMNS.index(metric) for metric in METRICS]
        grouped: dict[tuple[str, str], list[list[float]]] = {}
        for record in self.records:
            grouped.setdefault((record[0], record[5]), []).append([record[c] for c in columns])
        empty = np.zeros((0, len(METRICS)))
        return {
            (game, method): np.array(grouped.get((game, method), empty), np.float64).reshape(-1, len(METRICS))
            for game in self.games()
            for method in self.methods
        }

    def kl_dropped(self) -> dict[tuple[str, str], int]:
        """Per (game, method), the frames left out of the KL mean: KL undefined (the map is 0 where the blurred
        fixations are not; only with the exact KL, ``eps = 0``)."""
        column = METRICS.index("kl")
        return {key: int((~np.isfinite(values[:, column])).sum()) for key, values in self.table().items()}

    def summary(self) -> dict[str, float]:
        """Flat numbers for W&B: ``gaze/<game>/<method>/<metric>`` (mean), ``..._std``, ``.../frames`` and
        ``.../kl_dropped_frames``; ``gaze/kl_dropped_frames`` is their sum over games and methods.

        Means and (population) stds are over the frames where the metric is finite: the shuffled AUC is NaN
        where a trial has no other input to draw negatives from, the KL infinite where it is undefined (the
        paper's rule: such frames are left out of the KL mean and counted in ``kl_dropped_frames``).
        """
        out: dict[str, float] = {}
        dropped = self.kl_dropped()
        for (game, method), values in self.table().items():
            for metric, column in zip(METRICS, values.T, strict=True):
                mean, std, _ = _finite_stats(column)
                out[f"gaze/{game}/{method}/{metric}"] = mean
                out[f"gaze/{game}/{method}/{metric}_std"] = std
            out[f"gaze/{game}/{method}/frames"] = float(len(values))
            out[f"gaze/{game}/{method}/kl_dropped_frames"] = float(dropped[(game, method)])
        out["gaze/skipped_inputs"] = float(sum(self.skipped.values()))
        out["gaze/kl_dropped_frames"] = float(sum(dropped.values()))
        return out

    def to_markdown(self) -> str:
        """A table like the paper's Table 4: rows = (game, method), columns = mean ± std of each metric, frames.

        A metric finite on fewer frames than the row's count shows its own count as ``(n=...)``.
        """
        rows = []
        for (game, method), values in self.table().items():
            cells = []
            for column in values.T:
                mean, std, count = _finite_stats(column)
                cell = f"{mean:.3f} ± {std:.3f}" if count else "n/a"
                cells.append(cell + (f" (n={count})" if 0 < count < len(column) else ""))
            rows.append([game, method, *cells, len(values)])
        columns = ["Game", "Method", *(_LABELS[m] for m in METRICS), "Frames"]
        lines = [markdown_table(columns, rows, "ll" + "r" * (len(METRICS) + 1))]
        lines += [
            "",
            "Frames: network inputs (raw frame i = 4n >= 16, 8 raw frames each) with at least one fixation; "
            f"{sum(self.skipped.values())} inputs without fixation skipped. Mean ± population std over frames.",
            self._kl_note(),
        ]
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        if settings:
            lines.append(f"Settings: {settings}.")
        problems = [report.summary() for report in self.reports.values() if report.malformed or not report.header]
        if problems:
            lines += ["", "Gaze files with problems:", *(f"- {line}" for line in problems)]
        return "\n".join(lines) + "\n"

    def _kl_note(self) -> str:
        """What the KL column is, and the frames its mean leaves out."""
        eps = float(self.settings.get("eps", KL_EPSILON))
        if eps > 0:
            return (
                f"KL: regularised, sum P log(eps + P / (Q + eps)) with eps = {eps:g} (not the paper's exact KL; "
                "a map that misses the fixations is capped near log(1/eps) - H(P)); no frame left out."
            )
        dropped = {key: n for key, n in self.kl_dropped().items() if n}
        text = "KL: exact, sum P log(P / Q); frames where it is undefined (Q = 0 where P > 0) are left out of its mean"
        if not dropped:
            return text + ": none here."
        counts = ", ".join(f"{game} {method} {n}" for (game, method), n in dropped.items())
        return text + f" ({sum(dropped.values())} frames: {counts})."

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-frame records (header :data:`CSV_COLUMNS`) atomically: a temporary file, then ``os.replace``.

        Floats are written with 9 significant digits (more than the metrics mean).
        """
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for record in self.records:
                writer.writerow([f"{v:.9g}" if isinstance(v, float) else v for v in record])
        return Path(path)

    def write_markdown(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_markdown` atomically."""
        atomic_write_text(path, self.to_markdown())
        return Path(path)


def _finite_stats(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, population std and count of the finite values (NaN, NaN, 0 if none)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std()), len(finite)


def score_trials(
    trials: Iterable[Trial],
    saliency_fn: SaliencyFn,
    methods: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    max_frames: int | None = None,
    other_frames: int = 10,
    splits: int = 100,
    seed: int = 0,
    sigma: float = 5.0,
    eps: float = KL_EPSILON,
    progress: bool = True,
) -> GazeResults:
    """Score ``saliency_fn``'s methods and the baselines on every network input of ``trials`` with fixations.

    Args:
        trials: from :func:`~fls.gaze.reader.list_trials`.
        saliency_fn: ``obs`` uint8 (B, 4, 84, 84) -> ``{method: (B, 84, 84) float map}``.
        methods: the methods of ``saliency_fn`` to score, in table order (None: every one it returns).
            ``"center_prior"`` and ``"random"`` are always added and are reserved names.
        batch_size: network inputs per call of ``saliency_fn``.
        max_frames: replay at most this many network inputs per trial (the first ones; None: all).
        other_frames: inputs whose fixations give the shuffled-AUC negatives.
        splits: shuffled-AUC splits.
        seed: seed of every random choice (negatives, random baseline).
        sigma: Gaussian blur of the fixation maps (KL, CC), in raw-frame pixels.
        eps: KL regulariser; 0 (default) is the exact KL (see :func:`~fls.gaze.metrics.kl_divergence`).
        progress: show a tqdm bar over network inputs.
    """
    if methods is not None:
        methods = list(methods)
        reserved = sorted(set(methods) & set(BASELINES))
        if reserved:
            raise ValueError(f"method names {reserved} are reserved for the baselines")
    trials = list(trials)
    parsed = []
    for trial in trials:
        rows, report = read_gaze(trial)
        parsed.append((trial, rows, report))
    cap = math.inf if max_frames is None else max_frames
    total = sum(min(len(input_positions(len(rows))), cap) for _, rows, _ in parsed)
    results = GazeResults(
        methods=[],
        settings={"other_frames": other_frames, "splits": splits, "seed": seed, "sigma": sigma, "eps": eps},
    )
    with tqdm(total=total, desc="gaze", unit="input", disable=not progress, dynamic_ncols=True) as bar:
        for trial, rows, report in parsed:
            results.reports[trial.name] = report
            results.skipped[trial.name] = 0
            trial_seed = [seed, zlib.crc32(trial.name.encode())]
            negatives = _NegativePool(rows, other_frames, trial_seed)
            baselines = BaselineMaps([*trial_seed, 1])
            for batch in replay_trial(trial, batch_size=batch_size, max_inputs=max_frames, rows=rows):
                keep = np.flatnonzero(batch.fixations.reshape(len(batch), -1).any(axis=1))
                results.skipped[trial.name] += len(batch) - len(keep)
                bar.update(len(batch))
                if len(keep) == 0:
                    continue
                obs = batch.obs[keep]
                maps = _select(saliency_fn(obs), methods, len(keep))
                if not results.methods:
                    methods = list(maps)  # later batches must return the same methods
                    results.methods = [*methods, *BASELINES]
                maps.update(baselines(obs))
                frames = {name: _to_frame(m) for name, m in maps.items()}
                for row, k in enumerate(keep):
                    item = batch[k]
                    scorer = FrameScorer(
                        item.fixations,
                        negatives.for_input(item.position),
                        sigma=sigma,
                        splits=splits,
                        seed=[*trial_seed, 2, item.position],
                        eps=eps,
                    )
                    count = int(item.fixations.sum())
                    for name in results.methods:
                        scores = scorer.score(frames[name][row])
                        results.records.append(
                            (trial.game, trial.name, item.position, item.frame_id, count, name)
                            + tuple(scores[m] for m in METRICS)
                        )
    if not results.methods:
        results.methods = [*(methods or []), *BASELINES]
    return results


class _NegativePool:
    """Fixations of every input of one trial, to draw shuffled-AUC negatives from (gaze file only, no frames)."""

    def __init__(self, rows: Sequence, other_frames: int, trial_seed: list[int]) -> None:
        positions = np.asarray(input_positions(len(rows)), np.int64)
        pixels = input_fixation_pixels(rows, positions)
        has_gaze = np.array([len(p) > 0 for p in pixels], bool)
        self.positions = positions[has_gaze]
        self.pixels = [p for p, keep in zip(pixels, has_gaze, strict=True) if keep]
        self.other_frames = other_frames
        self.trial_seed = trial_seed

    def for_input(self, position: int) -> np.ndarray | None:
        """The summed fixation map of up to ``other_frames`` inputs not overlapping ``position`` (None if none)."""
        eligible = np.flatnonzero(np.abs(self.positions - position) > _WINDOW_SPAN)
        if len(eligible) == 0 or self.other_frames < 1:
            return None
        rng = np.random.default_rng([*self.trial_seed, 3, position])
        chosen = rng.choice(eligible, size=min(self.other_frames, len(eligible)), replace=False)
        return fixation_map(np.concatenate([self.pixels[j] for j in chosen]))


def _select(maps: Mapping[str, object], methods: list[str] | None, batch: int) -> dict[str, object]:
    """The requested methods of ``saliency_fn``'s output, checked."""
    names = list(maps) if methods is None else methods
    missing = [name for name in names if name not in maps]
    if missing:
        raise ValueError(f"saliency_fn returned no map for {missing}; it returned {sorted(maps)}")
    reserved = sorted(set(names) & set(BASELINES))
    if reserved:
        raise ValueError(f"method names {reserved} are reserved for the baselines")
    selected = {}
    for name in names:
        shape = tuple(maps[name].shape)  # type: ignore[attr-defined]
        expected = (batch, FRAME_SIZE, FRAME_SIZE)
        if shape != expected:
            raise ValueError(f"saliency method {name!r} returned shape {shape}, expected {expected}")
        selected[name] = maps[name]
    return selected


def _to_frame(maps: object) -> np.ndarray:
    """(B, 84, 84) maps (numpy or torch) -> (B, 210, 160) float64 numpy, bilinear half-pixel upsampling."""
    tensor = maps.detach().cpu() if isinstance(maps, torch.Tensor) else torch.from_numpy(np.array(maps, np.float64))
    with torch.no_grad():
        return upsample_to_frame(tensor.to(torch.float64)).numpy()
