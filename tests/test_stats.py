"""fls.stats: rliable's aggregate metrics (point estimates equal to rliable's own), stratified-bootstrap intervals,
probability of improvement and performance profiles."""

from __future__ import annotations

import numpy as np
import pytest

from fls import stats
from fls.errors import ConfigError

GAMES = ["Breakout", "Pong", "Seaquest"]


def raw_scores(seed: int, runs: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([20.0, 5.0, 3000.0])
    return base * rng.lognormal(0.0, 0.4, size=(runs, len(GAMES))) - np.array([0.0, 10.0, 0.0])


def test_point_estimates_equal_rliable() -> None:
    metrics = pytest.importorskip("rliable.metrics")  # rliable's metrics module needs only numpy and scipy
    scores = {"a": raw_scores(1), "b": raw_scores(2, runs=3)}
    table = stats.aggregate(scores, GAMES, reps=50)
    reference = {
        "iqm": metrics.aggregate_iqm,
        "median": metrics.aggregate_median,
        "mean": metrics.aggregate_mean,
        "optimality_gap": metrics.aggregate_optimality_gap,
    }
    for model, raw in scores.items():
        normalised = stats.human_normalise(raw, GAMES)
        for metric, function in reference.items():
            row = table[(table.model == model) & (table.metric == metric)].iloc[0]
            assert row.value == pytest.approx(function(normalised), rel=1e-12, abs=1e-12)
            assert row.ci_low <= row.value <= row.ci_high or metric == "median"
    x, y = stats.human_normalise(scores["a"], GAMES), stats.human_normalise(scores["b"], GAMES)
    value, low, high = stats.probability_of_improvement(scores["a"], scores["b"], GAMES, reps=200)
    assert value == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)
    assert low <= value <= high


def test_human_normalisation_uses_agent57_references() -> None:
    normalised = stats.human_normalise(np.array([[1.7, 14.6, 68.4], [30.5, -20.7, 42054.7]]), GAMES)
    assert np.allclose(normalised, [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    with pytest.raises(ConfigError, match=r"no human reference score for BreakoutInfinite \(games with one: Beam"):
        stats.human_normalise(np.ones((2, 1)), ["BreakoutInfinite"])


def test_the_bootstrap_resamples_runs_within_each_game() -> None:
    """Columns that are constant over runs leave nothing to resample within a game: every interval collapses to
    the point (a bootstrap that mixed games would not); other columns give intervals that hold the point."""
    constant = np.tile(np.array([[10.0, 0.0, 500.0]]), (4, 1))
    table = stats.aggregate({"c": constant}, GAMES, reps=300)
    assert np.allclose(table.ci_low, table.value) and np.allclose(table.ci_high, table.value)
    noisy = stats.aggregate({"n": raw_scores(3, runs=10)}, GAMES, reps=300)
    assert ((noisy.ci_low <= noisy.value) & (noisy.value <= noisy.ci_high)).all()
    assert (noisy.ci_high > noisy.ci_low).all()
    again = stats.aggregate({"n": raw_scores(3, runs=10)}, GAMES, reps=300)
    assert again.equals(noisy)  # the same seed, the same intervals
    resampled = stats.stratified_resamples(np.arange(12.0).reshape(4, 3), 50, np.random.default_rng(0))
    for game in range(3):  # every value of a resampled column comes from that game's own runs
        assert set(resampled[:, :, game].ravel()) <= set(np.arange(12.0).reshape(4, 3)[:, game])


def test_more_runs_narrow_the_interval() -> None:
    few = stats.aggregate({"m": raw_scores(4, runs=3)}, GAMES, reps=1000)
    many = stats.aggregate({"m": raw_scores(4, runs=60)}, GAMES, reps=1000)
    width = lambda t: (t.ci_high - t.ci_low)[t.metric == "mean"].iloc[0]  # noqa: E731
    assert width(many) < width(few)


def test_one_game_is_an_iqm_over_seeds() -> None:
    from scipy.stats import trim_mean

    seeds = np.array([3.0, 8.0, 9.0, 10.0, 40.0, 12.0, 11.0, 2.0])
    table = stats.aggregate({"m": seeds}, ["Breakout"], reps=100)
    iqm = table[table.metric == "iqm"].value.iloc[0]
    assert iqm == pytest.approx(trim_mean((seeds - 1.7) / (30.5 - 1.7), 0.25))


def test_probability_of_improvement_and_profiles() -> None:
    better, worse = raw_scores(5) + np.array([40.0, 20.0, 6000.0]), raw_scores(6)
    value, low, high = stats.probability_of_improvement(better, worse, GAMES, reps=500)
    assert value > 0.9 and low <= value <= high <= 1.0
    same, *_ = stats.probability_of_improvement(worse, worse, GAMES, reps=10)
    assert same == 0.5
    taus = np.linspace(0, 2, 21)
    fraction, low, high = stats.performance_profile(better, GAMES, taus, reps=200)
    assert fraction[0] >= fraction[-1] and np.all(np.diff(fraction) <= 0)  # a survival curve
    assert np.all(low <= fraction + 1e-12) and np.all(fraction <= high + 1e-12)


def test_bad_input_is_one_line() -> None:
    for call, message in [
        (lambda: stats.aggregate({"m": np.ones((2, 2))}, GAMES), r"expected \(runs, 3 games\)"),
        (lambda: stats.aggregate({"m": np.full((2, 3), np.nan)}, GAMES), r"NaN or inf"),
        (lambda: stats.aggregate({}, GAMES), r"no model"),
        (lambda: stats.aggregate({"m": np.ones((2, 3))}, GAMES, reps=0), r"reps=0: an integer >= 1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            call()


def test_metric_curve_is_the_metric_at_every_step_and_refuses_what_is_not_a_curve() -> None:
    curves = np.stack([raw_scores(seed) for seed in range(4)])  # (steps, runs, games)
    value, low, high = stats.metric_curve(curves, metric="mean", reps=100, seed=[3, 1])
    np.testing.assert_allclose(value, curves.mean(axis=(1, 2)))
    assert value.shape == low.shape == high.shape == (4,) and (low <= high).all()
    with pytest.raises(ConfigError, match=r"metric='max': one of iqm, median, mean, optimality_gap"):
        stats.metric_curve(curves, metric="max")
    with pytest.raises(ConfigError, match=r"expected \(steps, runs, games\)"):
        stats.metric_curve(curves[0])
    with pytest.raises(ConfigError, match="NaN or inf"):
        stats.metric_curve(np.full((2, 3, 1), np.nan))
