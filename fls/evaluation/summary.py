"""Summaries of per-episode records: statistics, JSON, markdown, a score histogram and the W&B summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fls.evaluation.records import Episode
from fls.rundir import SUMMARY_FILE, atomic_path, atomic_write_json, atomic_write_text
from fls.tables import markdown_table

WANDB_ID_FILE = "wandb_id"  # the evaluation's W&B run id, beside its records


def statistics(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Mean, std (population, ddof=0, as the paper's ± over episodes), standard error, median, min, max."""
    scores = np.array([e.score for e in episodes], np.float64)
    lengths = np.array([e.length for e in episodes], np.float64)
    n = len(scores)
    sem = float(scores.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {
        "episodes": n,
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "sem": sem,
        "ci95": [float(scores.mean() - 1.96 * sem), float(scores.mean() + 1.96 * sem)] if n > 1 else None,
        "median": float(np.median(scores)),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "mean_length": float(lengths.mean()),
        "truncated": int(sum(e.truncated for e in episodes)),
    }


def markdown(stats: dict[str, Any], meta: dict[str, Any]) -> str:
    """A small markdown report of one evaluation."""
    lines = [
        f"# Evaluation of `{meta.get('checkpoint')}`",
        "",
        f"{meta.get('game')}, {stats['episodes']} episodes, "
        f"{meta.get('num_envs')} envs seeded {meta.get('seed')}..{meta.get('seed', 0) + meta.get('num_envs', 1) - 1},"
        f" {'greedy' if meta.get('deterministic') else 'sampled'} actions, time limit {meta.get('max_episode_steps')} "
        f"agent steps, sticky actions {meta.get('repeat_action_probability') or 0:g}, "
        f"checkpoint sha256 {meta.get('digest')}.",
        "",
    ]
    ci = stats["ci95"]
    ci_text = f"{ci[0]:.1f} – {ci[1]:.1f}" if ci else "–"
    columns = ["episodes", "mean", "std", "95% CI of the mean", "median", "min", "max", "mean length", "time-limited"]
    row = [stats["episodes"], f"{stats['mean']:.1f}", f"{stats['std']:.1f}", ci_text, f"{stats['median']:.1f}"]
    row += [f"{stats['min']:.0f}", f"{stats['max']:.0f}", f"{stats['mean_length']:.0f}", stats["truncated"]]
    lines.append(markdown_table(columns, [row]))
    return "\n".join(lines) + "\n"


def histogram(episodes: Sequence[Episode], path: Path, title: str, bins: int = 50) -> Path:
    """Score histogram as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [e.score for e in episodes]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.hist(scores, bins=bins, color="#3b6ea8", edgecolor="white")
    ax.axvline(float(np.mean(scores)), color="#d1495b", linestyle="--", label=f"mean {np.mean(scores):.1f}")
    ax.set_xlabel("score (unclipped game return)")
    ax.set_ylabel("episodes")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_summary(out_dir: Path, episodes: Sequence[Episode], meta: dict[str, Any], bins: int = 50) -> dict[str, Any]:
    """summary.json, summary.md and histogram.png in ``out_dir``; returns the statistics."""
    episodes = sorted(episodes, key=lambda e: e.index)
    stats = statistics(episodes)
    atomic_write_json(out_dir / SUMMARY_FILE, {**meta, **stats})
    atomic_write_text(out_dir / "summary.md", markdown(stats, meta))
    histogram(episodes, out_dir / "histogram.png", f"{meta.get('game')}: {stats['episodes']} episodes", bins)
    return stats


def log_to_wandb(
    out_dir: Path,
    episodes: Sequence[Episode],
    stats: dict[str, Any],
    meta: dict[str, Any],
    mode: str,
    project: str,
    name: str,
    group: str | None = None,
) -> None:
    """The summary, a per-episode table and the histogram as a W&B run (offline by default); the run's id is kept
    in ``out_dir/wandb_id`` so that summarising the same evaluation again continues that run."""
    from fls.logging import publish_to_wandb

    columns = ["index", "seed", "game", "score", "length", "truncated"]
    rows = [[e.index, e.seed, e.game, e.score, e.length, e.truncated] for e in sorted(episodes, key=lambda e: e.index)]
    publish_to_wandb(
        out_dir,
        name=name,
        mode=mode,
        project=project,
        job_type="eval",
        config=meta,
        tags=[f"env:{meta.get('game')}", "eval"],
        group=group,
        files={"eval/histogram": out_dir / "histogram.png"},
        tables={"eval/episodes": (columns, rows)},
        summary={f"eval/{k}": v for k, v in stats.items() if isinstance(v, (int, float))},
        id_file=out_dir / WANDB_ID_FILE,
    )
