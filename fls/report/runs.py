"""Reading a sweep for ``task=report``: which training runs it holds, how they are labelled and ordered, and what
each run has produced (reward curve, evaluation records, gaze summaries). :mod:`fls.report.tables`
aggregates them, :mod:`fls.report.make` writes the report."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from fls.errors import ConfigError
from fls.evaluation.records import Episode, read_records
from fls.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    FINAL_MODEL,
    OUTPUT_DIRS,
    SUMMARY_FILE,
    checkpoints,
    evaluation_dir,
    gaze_root,
)

STEP_KEY = "time/total_timesteps"
REWARD_KEY = "rollout/ep_rew_mean"
PAPER_GAMES = ("BeamRider", "Breakout", "MsPacman", "SpaceInvaders", "Enduro", "Seaquest")
"""The paper's games, in its table order (other games follow alphabetically)."""
GAZE_METRICS = ("nss", "kl", "sauc", "cc")
# Folders of a sweep or a run that never hold a training run (W&B's run folders have a config.yaml of their own).
_NOT_RUNS = {"wandb", "tb", CHECKPOINT_DIR, *OUTPUT_DIRS}


@dataclass(frozen=True)
class Run:
    """One training run of the sweep, described by its resolved config."""

    path: Path
    name: str
    """How tables refer to it: the path relative to the sweep directory (the job number for a multirun)."""
    model: str
    entropy_lambda: float
    options: tuple[tuple[str, Any], ...]
    """Model options that are set (not null), sorted by name."""
    game: str
    seed: int
    total_timesteps: int
    repeat_action_probability: float = 0.0
    """Sticky actions in training (runs made before the setting: 0)."""
    label: str = ""
    """The line / column it belongs to, set by :func:`label_runs`."""


@dataclass
class Evaluation:
    """The per-episode records of one run's evaluation (all shard files merged by episode index)."""

    directory: Path
    header: dict[str, Any]
    episodes: list[Episode]

    @property
    def expected(self) -> int:
        """Episodes the evaluation was asked for (from the header)."""
        return int(self.header.get("episodes", len(self.episodes)))

    @property
    def complete(self) -> bool:
        """Whether every requested episode is recorded."""
        return len(self.episodes) >= self.expected

    @property
    def mean(self) -> float:
        """Mean score over the episodes."""
        return float(np.mean([e.score for e in self.episodes]))


@dataclass
class Curve:
    """Mean and std across seeds of one label's training curve on one game, on a common step grid."""

    game: str
    label: str
    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seeds: int


@dataclass
class Report:
    """Everything the report shows; :func:`write_report` turns it into files."""

    title: str
    runs: list[Run]
    status: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    saliency: list[dict[str, Any]]
    curves: list[Curve]
    checkpoint: str | None
    curve_key: str
    ddof: int
    notes: list[str] = field(default_factory=list)
    mixed_protocol_games: list[str] = field(default_factory=list)  # games whose evaluations do not compare
    # learning curves across seeds: fls.report.learning.IqmCurve (that module reads runs, so it is not imported here)
    iqm_curves: list[Any] = field(default_factory=list)

    @property
    def missing(self) -> list[dict[str, Any]]:
        """The rows of :attr:`status` that lack something."""
        return [row for row in self.status if row["missing"]]


# ----------------------------------------------------------------------------------------------------------------
# Finding and describing runs


def _training_config(path: Path) -> DictConfig | None:
    """The resolved config of a training run directory, or None if ``path`` is not one."""
    file = path / CONFIG_FILE
    if not file.is_file():
        return None
    try:
        cfg = OmegaConf.load(file)
    except Exception:  # noqa: BLE001 - any unreadable YAML simply is not a run
        return None
    if not isinstance(cfg, DictConfig):
        return None
    if OmegaConf.select(cfg, "model.name") is None or OmegaConf.select(cfg, "env.name") is None:
        return None
    return cfg


def _natural_key(path: Path) -> list[Any]:
    """Sort key that puts multirun job 10 after job 9."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts]


def _discover(root: Path) -> list[Path]:
    """Training run directories at or below ``root`` (a run's own subfolders are not searched)."""
    if _training_config(root) is not None:
        return [root]
    found = []
    for current, folders, _ in os.walk(root):
        here = Path(current)
        if here != root and _training_config(here) is not None:
            found.append(here)
            folders[:] = []
            continue
        folders[:] = [f for f in folders if not f.startswith(".") and f not in _NOT_RUNS]
    return sorted(found, key=_natural_key)


def _run(path: Path, name: str, cfg: DictConfig) -> Run:
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model, dict)
    options = sorted(
        (str(key), tuple(value) if isinstance(value, list) else value)
        for key, value in model.items()
        if key not in ("name", "entropy_lambda") and value is not None
    )
    return Run(
        path=path,
        name=name,
        model=str(model["name"]),
        entropy_lambda=float(model.get("entropy_lambda") or 0.0),
        options=tuple(options),
        game=str(cfg.env.name),
        seed=int(cfg.seed),
        total_timesteps=int(cfg.get("total_timesteps") or 0),
        repeat_action_probability=float(OmegaConf.select(cfg, "env.repeat_action_probability", default=0.0) or 0.0),
    )


def find_runs(sweep: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[Run], Path | None]:
    """The training runs of a sweep and the sweep directory (None for a list of runs).

    ``sweep`` is a multirun directory (every run below it counts), a single run directory, or a list of run (or
    multirun) directories. Raises ConfigError for a path that does not exist or a sweep without runs.
    """
    if sweep is None or sweep == "" or (not isinstance(sweep, (str, os.PathLike)) and len(sweep) == 0):
        raise ConfigError("task=report needs sweep=<multirun dir> or sweep=[<run dir>,<run dir>,...]")
    single = isinstance(sweep, (str, os.PathLike))
    entries = [Path(str(sweep))] if single else [Path(str(s)) for s in sweep]
    runs: list[Run] = []
    seen: set[Path] = set()
    for entry in entries:
        root = entry.expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"sweep: {entry} is not a directory")
        found = _discover(root)
        if not found:
            raise ConfigError(
                f"sweep: no training runs in {entry} (looked for run directories with a {CONFIG_FILE} naming "
                "model and env, as train.py writes them)"
            )
        for path in found:
            if path in seen:
                continue
            seen.add(path)
            base = root if single else root.parent
            if path == base:
                name = path.name
            else:
                name = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
            cfg = _training_config(path)
            assert cfg is not None
            runs.append(_run(path, name, cfg))
    return runs, (entries[0].expanduser().resolve() if single else None)


def _model_order(model: str) -> int:
    from fls.models import MODELS

    names = list(MODELS)
    return names.index(model) if model in names else len(names)


def game_order(game: str) -> tuple[int, str]:
    """Sort key of a game: the paper's games in its table order, then the others alphabetically."""
    return (PAPER_GAMES.index(game), "") if game in PAPER_GAMES else (len(PAPER_GAMES), game)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    return str(value)


def label_runs(runs: Sequence[Run]) -> list[Run]:
    """Give every run the label of its line: the model name, plus ``λ=<value>`` when the model's λ is nonzero or
    differs between its runs, plus ``option=value`` for each model option that differs between its runs, plus
    ``sticky=<p>`` when its runs were trained with different sticky actions (their curves do not pool)."""
    by_model: dict[str, list[Run]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run)
    out = []
    for run in runs:
        siblings = by_model[run.model]
        lambdas = {r.entropy_lambda for r in siblings}
        parts = [run.model]
        if len(lambdas) > 1 or run.entropy_lambda != 0:
            parts.append(f"λ={run.entropy_lambda:g}")
        option_sets = [dict(r.options) for r in siblings]
        keys = sorted({k for options in option_sets for k in options})
        for key in keys:
            if len({_format_value(options.get(key)) for options in option_sets}) > 1:
                parts.append(f"{key}={_format_value(dict(run.options).get(key))}")
        if len({r.repeat_action_probability for r in siblings}) > 1:
            parts.append(f"sticky={run.repeat_action_probability:g}")
        out.append(replace(run, label=" ".join(parts)))
    return out


def label_order(runs: Iterable[Run]) -> list[str]:
    """The runs' labels in table order: by model (registry order), then λ, then label."""
    first: dict[str, Run] = {}
    for run in runs:
        first.setdefault(run.label, run)
    return sorted(first, key=lambda lab: (_model_order(first[lab].model), first[lab].entropy_lambda, lab))


def ordered_games(runs: Iterable[Run]) -> list[str]:
    """The games of the runs in table order (:func:`game_order`)."""
    return sorted({run.game for run in runs}, key=game_order)


# ----------------------------------------------------------------------------------------------------------------
# Reading a run's results


def read_curve(run_dir: Path, key: str = REWARD_KEY) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of a progress.csv column against ``time/total_timesteps``, steps increasing; None when the
    file is missing or the column has no value yet (no game finished before the first log row)."""
    path = run_dir / "progress.csv"
    if not path.is_file():
        return None
    points: dict[float, float] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                step, value = float(row.get(STEP_KEY) or "nan"), float(row.get(key) or "nan")
            except ValueError:
                continue
            if math.isfinite(step) and math.isfinite(value):
                points[step] = value  # a repeated step (resume) keeps its last row
    if not points:
        return None
    steps = np.array(sorted(points), np.float64)
    return steps, np.array([points[s] for s in steps], np.float64)


def on_common_grid(curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(grid, values (curves, grid)): each curve linearly interpolated onto ``points`` evenly spaced steps spanning
    the range every curve covers, from the latest first step to the earliest last step, so a longer run is cut to
    the shorter ones and nothing is extrapolated (one point when that range is a single step or curves do not
    overlap)."""
    if not curves:
        raise ValueError("on_common_grid needs at least one curve")
    lo = max(float(steps[0]) for steps, _ in curves)
    hi = min(float(steps[-1]) for steps, _ in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([max(lo, hi)])
    return grid, np.stack([np.interp(grid, steps, vals) for steps, vals in curves])


def mean_curve(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 200, ddof: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean, std) across curves on their common grid (:func:`on_common_grid`)."""
    grid, values = on_common_grid(curves, points)
    std = values.std(axis=0, ddof=ddof) if len(curves) > ddof else np.zeros_like(grid)
    return grid, values.mean(axis=0), std


def evaluated_checkpoint(run_dir: Path) -> str | None:
    """The stem ``evaluate.py run=<run dir>`` evaluates: final_model once training finished, else the newest
    checkpoint (None if the run has neither)."""
    if (run_dir / FINAL_MODEL).is_file():
        return Path(FINAL_MODEL).stem
    found = checkpoints(run_dir)
    return found[-1][1].stem if found else None


def read_evaluation(run_dir: Path, checkpoint: str | None = None) -> Evaluation | None:
    """The records in ``<run>/eval/<checkpoint>/`` (``episodes.jsonl`` and any shard files, merged by index), or
    None when there are none. ``checkpoint`` None: :func:`evaluated_checkpoint`."""
    stem = checkpoint or evaluated_checkpoint(run_dir)
    if stem is None:
        return None
    directory = evaluation_dir(run_dir, stem)
    files = sorted(directory.glob("episodes.jsonl")) + sorted(directory.glob("episodes.shard-*-of-*.jsonl"))
    header: dict[str, Any] = {}
    episodes: dict[int, Episode] = {}
    for path in files:
        try:
            file_header, records = read_records(path)
        except (ConfigError, json.JSONDecodeError):
            continue
        header = header or file_header
        for episode in records:
            episodes.setdefault(episode.index, episode)
    if not episodes:
        return None
    return Evaluation(directory, header, [episodes[i] for i in sorted(episodes)])


# what a gaze result's numbers depend on besides the model, the game and the method (fls.tasks.gaze.gaze_settings)
GAZE_SETTING_KEYS = ("target", "gradcam_rectified", "layer", "max_frames", "splits", "other_frames", "seed", "kl_eps")


@dataclass
class RunGaze:
    """A run's gaze results for one checkpoint: per (game, method) ``nss``, ``kl``, ``sauc``, ``cc`` (means over
    frames), their ``*_std``, ``frames`` and ``kl_dropped_frames``; the scoring settings they were made with
    (None for results written before settings were recorded); and notes on what was left out or disagrees."""

    metrics: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    settings: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_run_gaze(run_dir: Path, checkpoint: str | None = None) -> RunGaze:
    """The gaze results (``<run>/gaze/*/summary.json``) of ``checkpoint`` (None: :func:`evaluated_checkpoint`,
    else final_model). Results of other checkpoints are left out; one (game, method) found in two folders with
    different numbers is reported in ``notes`` (the table keeps the first folder's, in name order)."""
    stem = checkpoint or evaluated_checkpoint(run_dir) or Path(FINAL_MODEL).stem
    found = RunGaze()
    source: dict[tuple[str, str], Path] = {}
    for path in sorted(gaze_root(run_dir, run_dir / FINAL_MODEL).glob(f"*/{SUMMARY_FILE}")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(summary, dict) or Path(str(summary.get("checkpoint", ""))).stem != stem:
            continue
        settings = summary.get("settings")
        folder_metrics: dict[tuple[str, str], dict[str, float]] = {}
        for key, value in summary.items():
            parts = key.split("/")
            if len(parts) < 4 or parts[0] != "gaze" or not (value is None or isinstance(value, (int, float))):
                continue
            game, method, metric = parts[1], "/".join(parts[2:-1]), parts[-1]
            wanted = (*GAZE_METRICS, *(f"{m}_std" for m in GAZE_METRICS), "frames", "kl_dropped_frames")
            if metric in wanted:
                folder_metrics.setdefault((game, method), {})[metric] = as_number(value)
        for key, metrics in folder_metrics.items():
            if key not in found.metrics:
                found.metrics[key], source[key] = metrics, path.parent
                known = isinstance(settings, dict)
                found.settings[key] = {k: settings.get(k) for k in GAZE_SETTING_KEYS} if known else None
            elif numbers_differ(found.metrics[key], metrics):
                found.notes.append(
                    f"{run_dir.name}: gaze results for {key[0]} {key[1]} differ between {source[key].name} and "
                    f"{path.parent.name} (other settings); the table uses {source[key].name}"
                )
    return found


def as_number(value: Any) -> float:
    """A number read from a results file: JSON's null (an undefined number, written for NaN) and anything that is
    not a number become NaN."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def numbers_differ(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Whether two sets of numbers by name differ (NaN equals NaN: both undefined; a missing one is NaN)."""
    nan = math.nan
    return any(
        a.get(k, nan) != b.get(k, nan) and not (math.isnan(a.get(k, nan)) and math.isnan(b.get(k, nan))) for k in a | b
    )
