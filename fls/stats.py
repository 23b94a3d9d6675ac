"""Aggregate Atari scores as reviewers expect (Agarwal et al., NeurIPS 2021, "Deep RL at the edge of the statistical
precipice"): human-normalised scores, the interquartile mean (IQM), median, mean and optimality gap across runs and
games, each with a 95% stratified-bootstrap percentile interval, performance profiles and the probability of
improvement.

Conventions (REFERENCE.md §10, the same as the ``rliable`` library's):

* a model's scores form a matrix ``runs × games`` (one row per seed, one column per game);
* human-normalised score = (score − random) / (human − random), with Badia et al. 2020's (Agent57) random and human
  scores (:data:`HUMAN_REFERENCE`);
* IQM = mean of the middle 50% of all run×game scores (``scipy.stats.trim_mean(..., 0.25)`` of the flattened
  matrix); median = median over games of each game's mean over runs; mean = mean of all; optimality gap = mean of
  max(0, 1 − score);
* stratified bootstrap: runs are resampled with replacement independently within each game, and the metric is
  recomputed; the interval is the 2.5 and 97.5 percentiles over ``reps`` resamples;
* probability of improvement P(X > Y) = mean over games of the Mann–Whitney statistic of X's runs against Y's runs
  on that game (ties count ½), divided by the number of pairs.

The point estimates equal rliable's (tests/test_stats.py checks them against ``rliable.metrics``); the bootstrap is
computed here (rliable's needs ``arch``, which does not import beside pandas 3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fls.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

# game -> (random score, human score), Badia et al. 2020 (Agent57), as rliable's Atari examples use.
HUMAN_REFERENCE: dict[str, tuple[float, float]] = {
    "BeamRider": (363.9, 16926.5),
    "Breakout": (1.7, 30.5),
    "Enduro": (0.0, 860.5),
    "Frostbite": (65.2, 4334.7),
    "MsPacman": (307.3, 6951.6),
    "Pong": (-20.7, 14.6),
    "Seaquest": (68.4, 42054.7),
    "SpaceInvaders": (148.0, 1668.7),
}
METRICS = ("iqm", "median", "mean", "optimality_gap")
CONFIDENCE = 0.95


def human_normalise(scores: np.ndarray, games: Sequence[str]) -> np.ndarray:
    """Raw game scores (…, games) → human-normalised scores (0 = random play, 1 = the human reference)."""
    scores = _matrix(scores, games)
    unknown = [g for g in games if g not in HUMAN_REFERENCE]
    if unknown:
        raise ConfigError(
            f"no human reference score for {', '.join(unknown)} (games with one: {', '.join(HUMAN_REFERENCE)})"
        )
    random = np.array([HUMAN_REFERENCE[g][0] for g in games])
    human = np.array([HUMAN_REFERENCE[g][1] for g in games])
    return (scores - random) / (human - random)


def _matrix(scores: np.ndarray | Sequence, games: Sequence[str]) -> np.ndarray:
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None] if len(games) == 1 else matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != len(games):
        raise ConfigError(
            f"scores of shape {matrix.shape}: expected (runs, {len(games)} games) for games {list(games)}"
        )
    if matrix.shape[0] < 1:
        raise ConfigError("scores have no run")
    if not np.isfinite(matrix).all():
        raise ConfigError("scores hold NaN or inf: every run needs a finite score on every game")
    return matrix


# ---- metrics of a batch of matrices (..., runs, games): vectorised over leading axes for the bootstrap ----------


def _iqm(m: np.ndarray) -> np.ndarray:
    from scipy.stats import trim_mean

    flat = m.reshape(*m.shape[:-2], -1)
    return trim_mean(flat, 0.25, axis=-1)


def _median(m: np.ndarray) -> np.ndarray:
    return np.median(m.mean(axis=-2), axis=-1)


def _mean(m: np.ndarray) -> np.ndarray:
    return m.mean(axis=(-2, -1))


def _optimality_gap(m: np.ndarray) -> np.ndarray:
    return 1.0 - np.minimum(m, 1.0).mean(axis=(-2, -1))


METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": _iqm,
    "median": _median,
    "mean": _mean,
    "optimality_gap": _optimality_gap,
}


def stratified_resamples(matrix: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, runs, games): each game's runs drawn with replacement, independently of the other games."""
    runs, games = matrix.shape
    return matrix[_resampled_rows(runs, games, reps, rng), np.arange(games)]


def _resampled_rows(runs: int, games: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, runs, games) row indices: the runs each resample draws for each game."""
    return rng.integers(0, runs, size=(reps, runs, games))


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _check_reps(reps: int) -> int:
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ConfigError(f"reps={reps!r}: an integer >= 1 (rliable uses 2000 or more)")
    return int(reps)


def aggregate(
    scores: Mapping[str, np.ndarray],
    games: Sequence[str],
    *,
    reps: int = 2000,
    seed: int = 0,
    normalise: bool = True,
) -> pd.DataFrame:
    """IQM, median, mean and optimality gap of each model, with 95% stratified-bootstrap intervals.

    Args:
        scores: ``{model: (runs, games) raw game scores}`` (a model's runs are its seeds; 1-D arrays are one game's
            runs when ``games`` has one game).
        games: the games of the columns, e.g. ``["Breakout", "Pong"]``.
        reps: bootstrap resamples.
        seed: seed of the resampling (the same seed gives the same intervals).
        normalise: human-normalise first (False: the scores are already normalised).

    Returns:
        A DataFrame with one row per model and metric, columns ``model``, ``metric``, ``value``, ``ci_low``,
        ``ci_high``, ``runs``, ``games``.
    """
    import pandas as pd

    reps = _check_reps(reps)
    if not scores:
        raise ConfigError("no model to aggregate")
    rows = []
    for index, (model, raw) in enumerate(scores.items()):
        matrix = human_normalise(raw, games) if normalise else _matrix(raw, games)
        rng = np.random.default_rng([int(seed), index])
        resampled = stratified_resamples(matrix, reps, rng)
        for metric in METRICS:
            function = METRIC_FUNCTIONS[metric]
            low, high = _interval(function(resampled))
            value = float(function(matrix))
            rows.append(
                {
                    "model": model,
                    "metric": metric,
                    "value": value,
                    "ci_low": low,
                    "ci_high": high,
                    "runs": matrix.shape[0],
                    "games": len(games),
                }
            )
    return pd.DataFrame(rows, columns=["model", "metric", "value", "ci_low", "ci_high", "runs", "games"])


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of batches (..., runs_x, games) and (..., runs_y, games): the mean over games of the share of run
    pairs where X beats Y (ties ½)."""
    diff = x[..., :, None, :] - y[..., None, :, :]
    per_game = ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-3, -2))
    return per_game.mean(axis=-1)


def probability_of_improvement(
    x: np.ndarray,
    y: np.ndarray,
    games: Sequence[str],
    *,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """P(X > Y): the probability that a run of model X scores higher than a run of Y on a game drawn at random,
    with its 95% stratified-bootstrap interval (X's and Y's runs resampled independently, within each game).

    Raw or normalised scores give the same answer (it compares runs game by game). Returns (value, low, high)."""
    reps = _check_reps(reps)
    x, y = _matrix(x, games), _matrix(y, games)
    rng = np.random.default_rng(int(seed))
    value = float(_improvement(x, y))
    # in chunks: (reps, runs_x, runs_y, games) comparisons
    chunk = max(1, 2_000_000 // max(1, x.shape[0] * y.shape[0] * len(games)))
    values = []
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        values.append(_improvement(stratified_resamples(x, n, rng), stratified_resamples(y, n, rng)))
    low, high = _interval(np.concatenate(values))
    return value, low, high


def performance_profile(
    scores: np.ndarray,
    games: Sequence[str],
    thresholds: np.ndarray,
    *,
    reps: int = 2000,
    seed: int = 0,
    normalise: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The score distribution: the fraction of runs (over all games) whose normalised score exceeds each threshold
    τ, with 95% stratified-bootstrap bands. Returns (fraction, low, high), each of the thresholds' shape."""
    reps = _check_reps(reps)
    matrix = human_normalise(scores, games) if normalise else _matrix(scores, games)
    taus = np.asarray(thresholds, dtype=np.float64)
    fraction = (matrix[..., None] > taus).mean(axis=(0, 1))
    resampled = stratified_resamples(matrix, reps, np.random.default_rng(int(seed)))
    boot = (resampled[..., None] > taus).mean(axis=(1, 2))
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail], axis=0)
    return fraction, low, high


def metric_curve(
    curves: np.ndarray,
    *,
    metric: str = "iqm",
    reps: int = 2000,
    seed: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A metric along a learning curve, with its 95% stratified-bootstrap band: ``curves`` (steps, runs, games) of
    scores (normalise them first to pool games) → (value, low, high), each of shape (steps,).

    A resample draws one set of runs per game and keeps it for every step, so each bootstrap curve is the curve of
    a resampled set of runs; at every step the draws (and so the interval) are the ones :func:`aggregate` makes for
    that step's matrix with the same ``seed`` (``aggregate`` seeds model i with ``[seed, i]``)."""
    reps = _check_reps(reps)
    if metric not in METRIC_FUNCTIONS:
        raise ConfigError(f"metric={metric!r}: one of {', '.join(METRIC_FUNCTIONS)}")
    values = np.asarray(curves, dtype=np.float64)
    if values.ndim != 3 or 0 in values.shape:
        raise ConfigError(f"curves of shape {values.shape}: expected (steps, runs, games), none empty")
    if not np.isfinite(values).all():
        raise ConfigError("curves hold NaN or inf: every run needs a finite value at every step")
    steps, runs, games = values.shape
    function = METRIC_FUNCTIONS[metric]
    rows = _resampled_rows(runs, games, reps, np.random.default_rng(seed))
    chunk = max(1, 4_000_000 // (reps * runs * games))  # steps per (chunk, reps, runs, games) batch
    boot = np.concatenate(
        [function(values[start : start + chunk][:, rows, np.arange(games)]) for start in range(0, steps, chunk)]
    )
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail], axis=-1)
    return function(values), low, high
