"""What train.py returns to a sweeper: one number for "how good is this agent", said with what it is.

The number is the after-training evaluation's mean score when one ran (``after_training.eval_episodes`` > 0), else
the mean return of the last (up to) 100 training games — the window SB3 logs as ``rollout/ep_rew_mean``. The window
is a fallback only: it mixes games played by many successive policies, and on games with heavy-tailed scores
(Breakout) one outlier game moves it by several points. Either way the standard error comes with it, and the run
keeps both in ``objective.json`` so a search's trials can be read (and re-ranked) later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fls.rundir import atomic_write_json

OBJECTIVE_FILE = "objective.json"
EVALUATION = "evaluation"
TRAINING_WINDOW = "training_window"


@dataclass
class Objective:
    """A run's objective: ``value`` (NaN when nothing measured it), its ``source`` (``evaluation`` or
    ``training_window``), the games it averages, their standard error, and for an evaluation its first seed and
    records folder."""

    value: float
    source: str
    games: int
    standard_error: float
    seed: int | None = None
    records: str | None = None

    def describe(self) -> str:
        """One line, e.g. ``8.66 ± 0.16 (mean of a 512-episode evaluation seeded 1000.., ± standard error)``."""
        if not math.isfinite(self.value):
            return "nan (no game finished)"
        error = f" ± {self.standard_error:.3g}" if math.isfinite(self.standard_error) else ""
        if self.source == EVALUATION:
            what = f"mean of a {self.games}-episode evaluation seeded {self.seed}.."
        else:
            what = f"mean return of the last {self.games} training games (no evaluation ran)"
        return f"{self.value:g}{error} ({what}{', ± standard error' if error else ''})"


def _standard_error(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def from_evaluation(stats: dict[str, Any]) -> Objective:
    """The objective of an evaluation's statistics (``summary.json``'s numbers)."""
    sem = stats.get("sem")
    return Objective(
        value=float(stats["mean"]),
        source=EVALUATION,
        games=int(stats["episodes"]),
        standard_error=float(sem) if sem is not None else math.nan,
        seed=stats.get("seed"),
        records=stats.get("records"),
    )


def from_training_window(returns: Sequence[float]) -> Objective:
    """The objective of the last training games' returns (SB3's episode buffer)."""
    returns = [float(r) for r in returns]
    value = sum(returns) / len(returns) if returns else math.nan
    return Objective(value, TRAINING_WINDOW, len(returns), _standard_error(returns))


def from_progress(progress_csv: Path) -> Objective:
    """For a run whose model is not in memory: the last logged window (``rollout/ep_rew_mean``) of progress.csv;
    its games and standard error are unknown there (100 games and NaN are reported)."""
    from fls.logging import read_complete_rows  # lazily: it loads SB3, and the Optuna sweeper imports this module

    last = math.nan
    if progress_csv.is_file():
        for row in read_complete_rows(progress_csv)[1]:  # a torn last row is left out
            value = row.get("rollout/ep_rew_mean")
            if value:  # empty in rows logged before the first game ended
                try:
                    last = float(value)
                except ValueError:
                    continue
    return Objective(last, TRAINING_WINDOW, 100 if math.isfinite(last) else 0, math.nan)


def write(run_dir: Path, objective: Objective) -> Path:
    """``<run>/objective.json`` (strict JSON: NaN is written as null), atomically."""
    path = run_dir / OBJECTIVE_FILE
    atomic_write_json(path, {**asdict(objective), "description": objective.describe()})
    return path


def read(run_dir: Path) -> Objective | None:
    """The objective a run recorded, or None (no file, or one that cannot be read)."""
    try:
        data = json.loads((Path(run_dir) / OBJECTIVE_FILE).read_text())
        return Objective(
            value=math.nan if data["value"] is None else float(data["value"]),
            source=str(data["source"]),
            games=int(data["games"]),
            standard_error=math.nan if data["standard_error"] is None else float(data["standard_error"]),
            seed=data.get("seed"),
            records=data.get("records"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
