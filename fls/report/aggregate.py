"""A sweep's scores aggregated as reviewers expect (fls.stats: Agarwal et al. 2021): per model, human-normalised IQM,
median, mean and optimality gap over runs × games with stratified-bootstrap intervals, a performance profile, and
the probability of improvement of every pair of models; as CSV, markdown and PNG.

A run's score is the mean over its evaluation's episodes. A model's matrix holds the games every model was
evaluated on (and that have a human reference score), with as many runs per game as the model's sparsest game has
(the first seeds); games whose evaluations differ in protocol are left out. With one game the aggregates are that
game's IQM (etc.) over seeds. Whatever is left out is said in the notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fls import stats
from fls.report.runs import Report
from fls.rundir import atomic_path, atomic_write_text
from fls.tables import csv_text, markdown_table

REPS = 2000
AGGREGATE_COLUMNS = ("model", "metric", "value", "ci_low", "ci_high", "runs", "games")
IMPROVEMENT_COLUMNS = ("x", "y", "probability", "ci_low", "ci_high", "games")


@dataclass
class Aggregates:
    """The matrices (``{model: (runs, games) raw scores}``), the games of their columns, the aggregate table rows,
    the probability of improvement of each ordered pair, and notes on what was left out."""

    games: list[str]
    scores: dict[str, np.ndarray]
    rows: list[dict[str, Any]] = field(default_factory=list)
    improvements: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def score_matrices(report: Report, protocol_games: Sequence[str] = ()) -> Aggregates:
    """Each model's (runs × games) matrix of evaluated run means, on the games every model has."""
    per_model: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in report.status:
        if np.isfinite(row["score_mean"]):
            per_model.setdefault(row["label"], {}).setdefault(row["game"], []).append((row["seed"], row["score_mean"]))
    notes = []
    if not per_model:
        return Aggregates([], {}, notes=["no run has a complete evaluation: nothing to aggregate"])
    games = sorted(set.intersection(*(set(g) for g in per_model.values())))
    for game in sorted(set.union(*(set(g) for g in per_model.values())) - set(games)):
        notes.append(f"{game} left out of the aggregates: not every model was evaluated on it")
    for game in [g for g in games if g in protocol_games]:
        games.remove(game)
        notes.append(f"{game} left out of the aggregates: its evaluations were played under different protocols")
    for game in [g for g in games if g not in stats.HUMAN_REFERENCE]:
        games.remove(game)
        notes.append(f"{game} left out of the aggregates: no human reference score to normalise it")
    scores = {}
    for model, by_game in per_model.items():
        if not games:
            break
        runs = min(len(by_game[g]) for g in games)
        if any(len(by_game[g]) > runs for g in games):
            notes.append(f"{model}: {runs} run(s) per game in the aggregates (the first seeds; some games have more)")
        columns = [[score for _, score in sorted(by_game[g])[:runs]] for g in games]
        scores[model] = np.array(columns, dtype=np.float64).T
    return Aggregates(games, scores, notes=notes)


def aggregate(report: Report, protocol_games: Sequence[str] = (), reps: int = REPS, seed: int = 0) -> Aggregates:
    """The aggregates and pairwise probabilities of improvement of a report's evaluated runs."""
    result = score_matrices(report, protocol_games)
    if not result.scores:
        return result
    table = stats.aggregate(result.scores, result.games, reps=reps, seed=seed)
    result.rows = table.to_dict("records")
    models = list(result.scores)
    for x in models:
        for y in models:
            if x == y:
                continue
            value, low, high = stats.probability_of_improvement(
                result.scores[x], result.scores[y], result.games, reps=reps, seed=seed
            )
            result.improvements.append(
                {"x": x, "y": y, "probability": value, "ci_low": low, "ci_high": high, "games": len(result.games)}
            )
    return result


def aggregates_markdown(result: Aggregates) -> str:
    """The aggregate table and the probabilities of improvement, as markdown."""
    if not result.rows:
        return "\n".join(["No aggregate:", *(f"- {n}" for n in result.notes)]) + "\n"
    games = ", ".join(result.games)
    rows = [
        [r["model"], r["metric"], f"{r['value']:.3f}", f"{r['ci_low']:.3f} – {r['ci_high']:.3f}", r["runs"]]
        for r in result.rows
    ]
    lines = [
        f"Human-normalised scores (Agent57's random and human references) of each run's evaluated mean on {games}; "
        f"95% stratified-bootstrap intervals ({REPS} resamples of runs within each game). IQM: mean of the middle "
        "50% of runs × games; median and mean over games of each game's mean; optimality gap: mean shortfall "
        "below the human score (lower is better).",
        "",
        markdown_table(["model", "metric", "value", "95% CI", "runs per game"], rows, align="llrlr"),
        "",
        "![aggregate metrics](aggregate_metrics.png)",
        "",
        "![performance profile](performance_profile.png)",
        "",
    ]
    if result.improvements:
        pairs = [
            [r["x"], r["y"], f"{r['probability']:.3f}", f"{r['ci_low']:.3f} – {r['ci_high']:.3f}"]
            for r in result.improvements
        ]
        lines += [
            "Probability of improvement P(X > Y): the chance that a run of X scores higher than a run of Y on a game "
            "drawn at random (ties count ½).",
            "",
            markdown_table(["X", "Y", "P(X > Y)", "95% CI"], pairs, align="llrl"),
            "",
            "![probability of improvement](probability_of_improvement.png)",
            "",
        ]
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines).rstrip() + "\n"


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_aggregates(result: Aggregates, path: Path) -> None:
    """Point and 95% interval of each model for each metric, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result.scores)
    fig, axes = plt.subplots(1, len(stats.METRICS), figsize=(3.2 * len(stats.METRICS), 1.4 + 0.5 * len(models)))
    for ax, metric in zip(np.atleast_1d(axes), stats.METRICS, strict=True):
        rows = {r["model"]: r for r in result.rows if r["metric"] == metric}
        for i, model in enumerate(models):
            r = rows[model]
            ax.plot([r["ci_low"], r["ci_high"]], [i, i], color=f"C{i}", linewidth=6, alpha=0.45)
            ax.plot([r["value"]], [i], "|", color="black", markersize=14)
        ax.set_yticks(range(len(models)), models if ax is np.atleast_1d(axes)[0] else [""] * len(models))
        ax.set_title(
            metric.replace("_", " ") + (" (lower is better)" if metric == "optimality_gap" else ""), fontsize=9
        )
        ax.set_xlabel("human-normalised score")
        ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_profiles(result: Aggregates, path: Path, reps: int = REPS, seed: int = 0) -> None:
    """Fraction of runs (over all games) above each normalised score τ, per model, with 95% bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normalised = {m: stats.human_normalise(s, result.games) for m, s in result.scores.items()}
    top = max(1.0, max(float(n.max()) for n in normalised.values()) * 1.05)
    taus = np.linspace(min(0.0, min(float(n.min()) for n in normalised.values())), top, 101)
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for i, (model, scores) in enumerate(result.scores.items()):
        fraction, low, high = stats.performance_profile(scores, result.games, taus, reps=reps, seed=seed)
        ax.plot(taus, fraction, color=f"C{i}", label=model)
        ax.fill_between(taus, low, high, color=f"C{i}", alpha=0.2)
    ax.set_xlabel("human-normalised score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title(f"Performance profile ({', '.join(result.games)})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_improvements(result: Aggregates, path: Path) -> None:
    """P(X > Y) with its 95% interval for every ordered pair of models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = result.improvements
    fig, ax = plt.subplots(figsize=(6.0, 0.8 + 0.4 * len(pairs)))
    for i, r in enumerate(pairs):
        ax.plot([r["ci_low"], r["ci_high"]], [i, i], color="C0", linewidth=6, alpha=0.45)
        ax.plot([r["probability"]], [i], "|", color="black", markersize=14)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(pairs)), [f"P({r['x']} > {r['y']})" for r in pairs])
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of improvement")
    _save(fig, path)


def write_aggregates(result: Aggregates, out_dir: Path) -> dict[str, Path]:
    """aggregates.csv/.md, probability_of_improvement.csv and the three figures (when there is an aggregate)."""
    files = {"aggregates_md": out_dir / "aggregates.md"}
    atomic_write_text(files["aggregates_md"], aggregates_markdown(result))
    if not result.rows:
        return files
    files |= {
        "aggregates_csv": out_dir / "aggregates.csv",
        "improvement_csv": out_dir / "probability_of_improvement.csv",
        "aggregate_png": out_dir / "aggregate_metrics.png",
        "profile_png": out_dir / "performance_profile.png",
    }
    atomic_write_text(files["aggregates_csv"], csv_text(result.rows, AGGREGATE_COLUMNS))
    atomic_write_text(files["improvement_csv"], csv_text(result.improvements, IMPROVEMENT_COLUMNS))
    plot_aggregates(result, files["aggregate_png"])
    plot_profiles(result, files["profile_png"])
    if result.improvements:
        files["improvement_png"] = out_dir / "probability_of_improvement.png"
        plot_improvements(result, files["improvement_png"])
    return files
