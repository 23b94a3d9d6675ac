"""Learning curves across seeds as Agarwal et al. (2021) draw them: at each step the IQM over runs with a 95%
stratified-bootstrap band (:func:`fls.stats.metric_curve`), as ``learning_curves.png`` and ``.csv``.

The values are progress.csv's training window (``rollout/ep_rew_mean``: each run's mean return of its last 100
training games, with exploration), not evaluations. Every run is linearly interpolated onto a grid over the steps
all runs of its panel cover (:func:`fls.report.runs.on_common_grid`): runs of different length are cut to the
shortest, nothing is extrapolated. One panel per game (raw returns, IQM over seeds) and, when two or more games have
a human reference score and a curve of every model, a first panel pooling them as the aggregates do: human-normalised
scores, IQM over runs × games, runs resampled within each game (as many runs per game as the sparsest game has,
the first seeds). Model i's resamples are seeded ``[seed, i]``, as :func:`fls.stats.aggregate` seeds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fls import stats
from fls.report.runs import REWARD_KEY, on_common_grid
from fls.rundir import atomic_path
from fls.tables import csv_text

ALL_GAMES = "all games"
"""The panel that pools games (human-normalised)."""
CURVE_COLUMNS = ("panel", "label", "step", "iqm", "ci_low", "ci_high", "runs", "games")
SeedCurves = Mapping[tuple[str, str], Sequence[tuple[int, tuple[np.ndarray, np.ndarray]]]]


@dataclass
class IqmCurve:
    """One label's IQM curve on one panel (a game, or :data:`ALL_GAMES`), with its 95% band."""

    panel: str
    label: str
    steps: np.ndarray
    iqm: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: int
    """Runs per game."""
    games: tuple[str, ...]


def iqm_curves(
    curves: SeedCurves,
    labels: Sequence[str],
    games: Sequence[str],
    *,
    points: int = 200,
    pool: bool = True,
    reps: int = 2000,
    seed: int = 0,
) -> list[IqmCurve]:
    """The IQM curves of every (game, label) in ``curves`` (``{(game, label): [(seed, (steps, values)), ...]}``),
    and of the pooled panel when ``pool`` and two or more games can be pooled."""
    out = []
    pooled = [g for g in games if g in stats.HUMAN_REFERENCE and all((g, lab) in curves for lab in labels)]
    if pool and len(pooled) >= 2:
        for index, label in enumerate(labels):
            runs = min(len(curves[(g, label)]) for g in pooled)
            chosen = [sorted(curves[(g, label)], key=lambda c: c[0])[:runs] for g in pooled]
            grid, values = on_common_grid([curve for column in chosen for _, curve in column], points)
            # (games * runs, steps) -> (steps, runs, games), then human-normalised game by game
            matrix = values.reshape(len(pooled), runs, len(grid)).transpose(2, 1, 0)
            normalised = stats.human_normalise(matrix.reshape(-1, len(pooled)), pooled).reshape(matrix.shape)
            iqm, low, high = stats.metric_curve(normalised, reps=reps, seed=[seed, index])
            out.append(IqmCurve(ALL_GAMES, label, grid, iqm, low, high, runs, tuple(pooled)))
    for game in games:
        for index, label in enumerate(labels):
            found = curves.get((game, label))
            if not found:
                continue
            grid, values = on_common_grid([curve for _, curve in sorted(found, key=lambda c: c[0])], points)
            iqm, low, high = stats.metric_curve(values.T[:, :, None], reps=reps, seed=[seed, index])
            out.append(IqmCurve(game, label, grid, iqm, low, high, len(found), (game,)))
    return out


def curves_csv(curves: Sequence[IqmCurve]) -> str:
    """One row per (panel, label, grid step): the IQM, its 95% interval, runs per game and the games pooled."""
    rows = [
        {"panel": c.panel, "label": c.label, "step": s, "iqm": v, "ci_low": lo, "ci_high": hi, "runs": c.runs}
        | {"games": " ".join(c.games)}
        for c in curves
        for s, v, lo, hi in zip(c.steps.tolist(), c.iqm.tolist(), c.low.tolist(), c.high.tolist(), strict=True)
    ]
    return csv_text(rows, CURVE_COLUMNS)


def describe(curve_key: str) -> str:
    """What the figure shows, for the report."""
    what = (
        "each run's mean return of its last 100 training games (the training window, played with exploration; "
        "not an evaluation)"
        if curve_key == REWARD_KEY
        else f"each run's `{curve_key}`"
    )
    return (
        f"y: IQM across runs of {what}, with a 95% stratified-bootstrap band; x: agent steps. Each run is linearly "
        "interpolated onto a grid over the steps every run of the panel covers (runs of different length are cut "
        f"to the shortest). Panels: one per game (raw values, IQM over seeds); '{ALL_GAMES}' pools the games with "
        "a human reference and a curve of every model, human-normalised as the aggregates are (IQM over runs × "
        "games, runs resampled within each game)."
    )


def plot_iqm_curves(curves: Sequence[IqmCurve], labels: Sequence[str], curve_key: str, path: Path) -> None:
    """The IQM curves, one panel per :attr:`IqmCurve.panel`, one colour per label, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(c.panel for c in curves)) or ["no data yet"]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.3 * nrows + 0.5), squeeze=False)
    y = "mean return, last 100 training games" if curve_key == REWARD_KEY else curve_key
    for ax, panel in zip(axes.flat, panels, strict=False):
        for curve in (c for c in curves if c.panel == panel):
            color = f"C{labels.index(curve.label) % 10}"
            marker = "o" if len(curve.steps) == 1 else None
            ax.plot(curve.steps, curve.iqm, color=color, marker=marker, label=curve.label)
            ax.fill_between(curve.steps, curve.low, curve.high, color=color, alpha=0.2)
        if panel == ALL_GAMES:
            games = next(c.games for c in curves if c.panel == panel)
            ax.set_title(f"{ALL_GAMES} ({', '.join(games)})", fontsize=9)
            ax.set_ylabel("IQM human-normalised score")
        else:
            ax.set_title(panel)
            ax.set_ylabel(f"IQM of {y}", fontsize=8)
        ax.set_xlabel("agent steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
    for ax in list(axes.flat[len(panels) :]):
        ax.set_visible(False)
    fig.suptitle("Training window (not an evaluation)\nIQM across runs, 95% stratified-bootstrap band", fontsize=9)
    fig.tight_layout()  # makes room for the suptitle
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)
