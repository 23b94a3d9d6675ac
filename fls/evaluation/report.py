"""task=report: a sweep's results as they go into a paper: reward curves, score and saliency tables, gaps.

``python evaluate.py task=report sweep=<multirun dir>`` (or ``sweep=[<run dir>,<run dir>]``) reads every training
run of the sweep and writes, into ``report.out`` (default ``<sweep dir>/report/``; for a list of runs, ``report/``
in the command's output folder ``outputs/evaluate/<date>/<time>/``):

- ``reward_curves.png`` / ``.svg`` (+ ``reward_curves.csv``): ``rollout/ep_rew_mean`` against agent steps, the mean
  across seeds with a ±std band, one panel per game and one line per model (the paper's Figure 3);
- ``scores.md`` / ``scores.csv``: evaluation scores per game and model (Table 3), computed from each run's
  per-episode records: mean ± std of all episodes pooled over seeds (the paper's ±), and the std across seeds of
  the per-seed means in a column of its own;
- ``saliency.md`` / ``saliency.csv``: gaze agreement (NSS, KL, sAUC, CC; Table 4) from each run's gaze summaries,
  aggregated across seeds the same way;
- ``runs.csv``: every run with what it has and what it lacks; ``report.md``: all of it, with the list of runs
  missing an evaluation, gaze results or reward data (also printed);
- a W&B run (offline by default, ``job_type=report``) with the tables and the figure.

Runs are grouped by model name, attention-entropy weight λ (in the label when it is nonzero or varies, e.g.
``sparse_fls λ=0.001``) and any model option that differs between runs of the same model.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from fls.errors import ConfigError
from fls.evaluation.records import Episode, read_records
from fls.rundir import CONFIG_FILE, FINAL_MODEL, atomic_path, atomic_write_text, checkpoints

__all__ = [
    "Curve",
    "Evaluation",
    "Report",
    "Run",
    "build_report",
    "find_runs",
    "make_report",
    "mean_curve",
    "parameter_table",
    "read_curve",
    "read_evaluation",
    "read_gaze",
    "write_report",
]

STEP_KEY = "time/total_timesteps"
REWARD_KEY = "rollout/ep_rew_mean"
PAPER_GAMES = ("BeamRider", "Breakout", "MsPacman", "SpaceInvaders", "Enduro", "Seaquest")
"""The paper's games, in its table order (other games follow alphabetically)."""
GAZE_METRICS = ("nss", "kl", "sauc", "cc")
_GAZE_LABELS = {"nss": "NSS ↑", "kl": "KL ↓", "sauc": "sAUC ↑", "cc": "CC ↑"}
# Folders of a sweep or a run that never hold a training run (W&B's run folders have a config.yaml of their own).
_NOT_RUNS = {"wandb", "report", "eval", "gaze", "videos", "checkpoints", "tb"}


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


def _game_order(game: str) -> tuple[int, str]:
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
    differs between its runs, plus ``option=value`` for each model option that differs between its runs."""
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
        out.append(replace(run, label=" ".join(parts)))
    return out


def _label_order(runs: Iterable[Run]) -> list[str]:
    first: dict[str, Run] = {}
    for run in runs:
        first.setdefault(run.label, run)
    return sorted(first, key=lambda lab: (_model_order(first[lab].model), first[lab].entropy_lambda, lab))


def _games(runs: Iterable[Run]) -> list[str]:
    return sorted({run.game for run in runs}, key=_game_order)


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


def mean_curve(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 200, ddof: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean, std) across curves, each linearly interpolated onto ``points`` evenly spaced steps spanning the
    range every curve covers (one point when that range is a single step or curves do not overlap)."""
    if not curves:
        raise ValueError("mean_curve needs at least one curve")
    lo = max(float(steps[0]) for steps, _ in curves)
    hi = min(float(steps[-1]) for steps, _ in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([max(lo, hi)])
    values = np.stack([np.interp(grid, steps, vals) for steps, vals in curves])
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
    directory = run_dir / "eval" / stem
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


def read_gaze(run_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    """Per (game, method), the gaze metrics of ``<run>/gaze/*/summary.json``: ``nss``, ``kl``, ``sauc``, ``cc``
    (means over frames), their ``*_std`` and ``frames``."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for path in sorted((run_dir / "gaze").glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for key, value in summary.items():
            parts = key.split("/")
            if len(parts) < 4 or parts[0] != "gaze" or not isinstance(value, (int, float)):
                continue
            game, method, metric = parts[1], "/".join(parts[2:-1]), parts[-1]
            if metric in GAZE_METRICS or metric.removesuffix("_std") in GAZE_METRICS or metric == "frames":
                out.setdefault((game, method), {})[metric] = float(value)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Building the report


def _std(values: Sequence[float], ddof: int) -> float:
    return float(np.std(values, ddof=ddof)) if len(values) > ddof else 0.0


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def build_report(
    runs: Sequence[Run],
    *,
    title: str,
    checkpoint: str | None = None,
    curve_key: str = REWARD_KEY,
    grid_points: int = 200,
    ddof: int = 0,
) -> Report:
    """Read every run's curve, evaluation and gaze results and aggregate them per (game, label) across seeds."""
    runs = label_runs(runs)
    status: list[dict[str, Any]] = []
    evaluations: dict[tuple[str, str], list[tuple[Run, Evaluation]]] = {}
    gaze: dict[tuple[str, str, str], list[tuple[Run, dict[str, float]]]] = {}
    raw_curves: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    notes: list[str] = []
    for run in runs:
        missing = []
        stem = checkpoint or evaluated_checkpoint(run.path)
        if not (run.path / FINAL_MODEL).is_file():
            missing.append(f"{FINAL_MODEL} (training unfinished)")
        evaluation = read_evaluation(run.path, stem)
        if evaluation is None:
            missing.append(f"evaluation of {stem or 'any checkpoint'}")
        elif not evaluation.complete:
            missing.append(f"complete evaluation of {stem} ({len(evaluation.episodes)}/{evaluation.expected} episodes)")
        else:
            evaluations.setdefault((run.game, run.label), []).append((run, evaluation))
        run_gaze = read_gaze(run.path)
        if not run_gaze:
            missing.append("gaze results")
        for (game, method), metrics in run_gaze.items():
            gaze.setdefault((game, run.label, method), []).append((run, metrics))
        curve = read_curve(run.path, curve_key)
        if curve is None:
            missing.append(f"reward curve (no {curve_key} in progress.csv)")
        else:
            raw_curves.setdefault((run.game, run.label), []).append(curve)
        status.append(
            {
                "run": run.name,
                "path": str(run.path),
                "model": run.model,
                "entropy_lambda": run.entropy_lambda,
                "label": run.label,
                "game": run.game,
                "seed": run.seed,
                "checkpoint": stem or "",
                "episodes": len(evaluation.episodes) if evaluation else 0,
                "score_mean": evaluation.mean if evaluation and evaluation.complete else math.nan,
                "gaze_games": ",".join(sorted({g for g, _ in run_gaze})),
                "curve_points": 0 if curve is None else len(curve[0]),
                "missing": "; ".join(missing),
            }
        )

    labels, games = _label_order(runs), _games(runs)
    by_label = {run.label: run for run in runs}
    scores = []
    for game in games:
        for label in labels:
            cell = evaluations.get((game, label))
            if not cell:
                continue
            seed_runs = [run for run, _ in cell]
            duplicates = sorted({r.seed for r in seed_runs if sum(s.seed == r.seed for s in seed_runs) > 1})
            if duplicates:
                notes.append(f"{game}, {label}: seeds {duplicates} appear in more than one run; each run counts once")
            means = [ev.mean for _, ev in cell]
            counts = [len(ev.episodes) for _, ev in cell]
            # The paper's ± is the std of every episode's score pooled over seeds (ddof 0), not across seed means.
            pooled = np.array([e.score for _, ev in cell for e in ev.episodes], np.float64)
            scores.append(
                {
                    "game": game,
                    "label": label,
                    "model": by_label[label].model,
                    "entropy_lambda": by_label[label].entropy_lambda,
                    "seeds": len(cell),
                    "episodes": len(pooled),
                    "episodes_per_seed_min": min(counts),
                    "episodes_per_seed_max": max(counts),
                    "mean": float(pooled.mean()),
                    "episode_std": float(pooled.std()),
                    "seed_std": _std(means, ddof),
                    "seed_list": " ".join(str(r.seed) for r in seed_runs),
                    "seed_means": " ".join(repr(m) for m in means),
                }
            )

    saliency = []
    gaze_games = sorted({g for g, _, _ in gaze}, key=_game_order)
    for game in gaze_games:
        for label in labels:
            methods = [m for g, lab, m in gaze if g == game and lab == label]
            for method in methods:
                cell = gaze[(game, label, method)]
                row: dict[str, Any] = {
                    "game": game,
                    "label": label,
                    "model": by_label[label].model,
                    "entropy_lambda": by_label[label].entropy_lambda,
                    "method": method,
                    "seeds": len(cell),
                    "frames": int(sum(m.get("frames", 0) for _, m in cell)),
                }
                for metric in GAZE_METRICS:
                    values = [m.get(metric, math.nan) for _, m in cell]
                    finite = [v for v in values if math.isfinite(v)]
                    row[metric] = _nanmean(values)
                    row[f"{metric}_std"] = _std(finite, ddof) if finite else math.nan
                    row[f"{metric}_frame_std"] = _nanmean([m.get(f"{metric}_std", math.nan) for _, m in cell])
                saliency.append(row)

    curves = []
    for game in games:
        for label in labels:
            found = raw_curves.get((game, label))
            if found:
                grid, mean, std = mean_curve(found, grid_points, ddof)
                curves.append(Curve(game, label, grid, mean, std, len(found)))
    return Report(title, list(runs), status, scores, saliency, curves, checkpoint, curve_key, ddof, notes)


# ----------------------------------------------------------------------------------------------------------------
# Writing it


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:  # NaN (no value) as an empty cell, which csv readers and pandas read back as missing
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return buffer.getvalue()


SCORE_COLUMNS = (
    "game",
    "label",
    "model",
    "entropy_lambda",
    "seeds",
    "episodes",
    "episodes_per_seed_min",
    "episodes_per_seed_max",
    "mean",
    "episode_std",
    "seed_std",
    "seed_list",
    "seed_means",
)
SALIENCY_COLUMNS = (
    "game",
    "label",
    "model",
    "entropy_lambda",
    "method",
    "seeds",
    "frames",
    *(f"{m}{suffix}" for m in GAZE_METRICS for suffix in ("", "_std", "_frame_std")),
)
STATUS_COLUMNS = (
    "run",
    "path",
    "model",
    "entropy_lambda",
    "label",
    "game",
    "seed",
    "checkpoint",
    "episodes",
    "score_mean",
    "gaze_games",
    "curve_points",
    "missing",
)


def _episodes_text(low: int, high: int) -> str:
    return f"{low}" if low == high else f"{low}–{high}"


def scores_markdown(report: Report) -> str:
    """Table 3: one row per game; per label ``mean ± episode std`` (all episodes pooled over seeds, as the paper)
    and, in a column of its own, the std across seeds of the per-seed means."""
    if not report.scores:
        return "No complete evaluation in any run: evaluate with `python evaluate.py run=<run dir>`.\n"
    labels = [lab for lab in _label_order(report.runs) if any(r["label"] == lab for r in report.scores)]
    games = [g for g in _games(report.runs) if any(r["game"] == g for r in report.scores)]
    cells = {(r["game"], r["label"]): r for r in report.scores}
    shapes = {(r["seeds"], r["episodes_per_seed_min"], r["episodes_per_seed_max"]) for r in report.scores}
    uniform = len(shapes) == 1
    header = " | ".join(f"{label} | seed std" for label in labels)
    lines = [f"| Game | {header} |", "|---|" + "---:|---:|" * len(labels)]
    for game in games:
        row = []
        for label in labels:
            cell = cells.get((game, label))
            if cell is None:
                row += ["–", "–"]
                continue
            text = f"{cell['mean']:.1f} ± {cell['episode_std']:.1f}"
            if not uniform:
                episodes = _episodes_text(cell["episodes_per_seed_min"], cell["episodes_per_seed_max"])
                text += f" ({cell['seeds']} seeds × {episodes} ep.)"
            row += [text, f"{cell['seed_std']:.1f}"]
        lines.append(f"| {game} | " + " | ".join(row) + " |")
    which = f"`{report.checkpoint}`" if report.checkpoint else "the final model (else the newest checkpoint)"
    if uniform:
        seeds, low, high = shapes.pop()
        shape = f"{seeds} seed{'s' if seeds != 1 else ''} × {_episodes_text(low, high)} episodes per seed"
    else:
        shape = "seeds × episodes per seed as given in each cell"
    lines += [
        "",
        f"Score (unclipped game return) of {which}: mean ± std (ddof 0) of all episodes pooled over seeds, as the "
        f"paper's Table 3; seed std: std across seeds of the per-seed mean scores (ddof {report.ddof}), a different "
        f"and usually much smaller number. {shape}. Computed from the per-episode records.",
    ]
    return "\n".join(lines) + "\n"


def saliency_markdown(report: Report) -> str:
    """Table 4: one row per (game, label, saliency method), ``mean ± std`` across seeds of each metric."""
    if not report.saliency:
        return (
            "No gaze results in any run: score them with "
            "`python evaluate.py task=gaze run=<run dir> gaze.data=<Atari-HEAD dir>`.\n"
        )
    lines = [
        "| Game | Model | Method | " + " | ".join(_GAZE_LABELS[m] for m in GAZE_METRICS) + " | Seeds | Frames |",
        "|---|---|---|" + "---:|" * (len(GAZE_METRICS) + 2),
    ]
    for row in report.saliency:
        cells = ["n/a" if not math.isfinite(row[m]) else f"{row[m]:.3f} ± {row[f'{m}_std']:.3f}" for m in GAZE_METRICS]
        lines.append(
            f"| {row['game']} | {row['label']} | {row['method']} | "
            + " | ".join(cells)
            + f" | {row['seeds']} | {row['frames']} |"
        )
    lines += [
        "",
        "Each run's metric is its mean over frames (Atari-HEAD network inputs with fixations); cells are the mean "
        f"over seeds ± std across seeds (ddof {report.ddof}). Frames: summed over seeds. "
        "Per-frame stds are in saliency.csv.",
    ]
    return "\n".join(lines) + "\n"


def missing_markdown(report: Report) -> str:
    """The runs lacking an evaluation, gaze results, reward data or a final model."""
    missing = report.missing
    if not missing:
        return "None: every run has its final model, a complete evaluation, gaze results and a reward curve.\n"
    lines = [
        f"{len(missing)} of {len(report.status)} runs lack something:",
        "",
        "| Run | Model | Game | Seed | Missing |",
        "|---|---|---|---:|---|",
    ]
    for row in missing:
        lines.append(f"| `{row['run']}` | {row['label']} | {row['game']} | {row['seed']} | {row['missing']} |")
    no_eval = [row["path"] for row in missing if "evaluation" in row["missing"]]
    if no_eval:
        lines += ["", "Evaluate them with `python evaluate.py run=<run dir>`, for example:", ""]
        lines += [f"    python evaluate.py run={path}" for path in no_eval[:5]]
        if len(no_eval) > 5:
            lines.append(f"    ... and {len(no_eval) - 5} more (runs.csv lists them all)")
    return "\n".join(lines) + "\n"


def report_markdown(report: Report, figure: str = "reward_curves.png") -> str:
    """The whole report as one markdown document."""
    models = sorted({r.label for r in report.runs}, key=_label_order(report.runs).index)
    seeds = sorted({r.seed for r in report.runs})
    y = "mean unclipped return of the last 100 games" if report.curve_key == REWARD_KEY else f"`{report.curve_key}`"
    curve_lines = [f"- {c.game}, {c.label}: {c.seeds} seed{'s' if c.seeds != 1 else ''}" for c in report.curves]
    parts = [
        f"# {report.title}",
        "",
        f"{len(report.runs)} runs: {', '.join(models)} on {', '.join(_games(report.runs))}; "
        f"seeds {', '.join(map(str, seeds))}.",
        "",
        "## Reward during training",
        "",
        f"![reward curves]({figure})",
        "",
        f"y: {y}; x: agent steps. Lines: mean across seeds, each seed linearly interpolated onto a common grid over "
        f"the steps every seed covers; band: ± std across seeds (ddof {report.ddof}).",
        "",
        *(curve_lines or ["No run has logged any value yet."]),
        "",
        "## Evaluation scores",
        "",
        scores_markdown(report),
        "## Saliency and human gaze",
        "",
        saliency_markdown(report),
        "## Missing results",
        "",
        missing_markdown(report),
    ]
    if report.notes:
        parts += ["## Notes", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(parts)


def plot_curves(report: Report, png: Path, svg: Path) -> None:
    """Figure 3: one panel per game, one line per label (mean across seeds, ±std shaded), as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = _games(report.runs)
    labels = _label_order(report.runs)
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    ncols = min(3, len(games))
    nrows = math.ceil(len(games) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.3 * nrows + 0.6), squeeze=False)
    shown: dict[str, Any] = {}
    for ax, game in zip(axes.flat, games, strict=False):
        curves = [c for c in report.curves if c.game == game]
        for curve in curves:
            color = colors[curve.label]
            marker = "o" if len(curve.steps) == 1 else None
            (line,) = ax.plot(curve.steps, curve.mean, color=color, marker=marker, linewidth=1.5)
            ax.fill_between(curve.steps, curve.mean - curve.std, curve.mean + curve.std, color=color, alpha=0.2)
            shown.setdefault(curve.label, line)
        if not curves:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
        ax.set_title(game)
        ax.set_xlabel("agent steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.grid(alpha=0.3)
    for ax in axes.flat[: len(games) : ncols]:
        ax.set_ylabel("mean return (last 100 games)" if report.curve_key == REWARD_KEY else report.curve_key)
    spare = list(axes.flat[len(games) :])
    for ax in spare:
        ax.set_visible(False)
    ordered = [label for label in labels if label in shown]
    handles = [shown[label] for label in ordered]
    bottom = 0.0
    if ordered and spare:  # the legend goes into the first empty panel
        spare[0].set_visible(True)
        spare[0].axis("off")
        spare[0].legend(handles, ordered, loc="center", frameon=False)
    elif ordered:
        bottom = 0.6 / fig.get_figheight()
        fig.legend(handles, ordered, loc="lower center", ncol=min(len(ordered), 5), frameon=False)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    for path, kind in ((png, "png"), (svg, "svg")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=kind, dpi=150)
    plt.close(fig)


def _curves_csv(report: Report) -> str:
    rows = [
        {"game": c.game, "label": c.label, "step": s, "mean": m, "std": d, "seeds": c.seeds}
        for c in report.curves
        for s, m, d in zip(c.steps.tolist(), c.mean.tolist(), c.std.tolist(), strict=True)
    ]
    return _csv_text(rows, ("game", "label", "step", "mean", "std", "seeds"))


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write every file of the report into ``out_dir`` (each atomically); returns them by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "png": out_dir / "reward_curves.png",
        "svg": out_dir / "reward_curves.svg",
        "curves_csv": out_dir / "reward_curves.csv",
        "scores_md": out_dir / "scores.md",
        "scores_csv": out_dir / "scores.csv",
        "saliency_md": out_dir / "saliency.md",
        "saliency_csv": out_dir / "saliency.csv",
        "runs_csv": out_dir / "runs.csv",
        "report_md": out_dir / "report.md",
    }
    plot_curves(report, files["png"], files["svg"])
    atomic_write_text(files["curves_csv"], _curves_csv(report))
    atomic_write_text(files["scores_md"], scores_markdown(report))
    atomic_write_text(files["scores_csv"], _csv_text(report.scores, SCORE_COLUMNS))
    atomic_write_text(files["saliency_md"], saliency_markdown(report))
    atomic_write_text(files["saliency_csv"], _csv_text(report.saliency, SALIENCY_COLUMNS))
    atomic_write_text(files["runs_csv"], _csv_text(report.status, STATUS_COLUMNS))
    atomic_write_text(files["report_md"], report_markdown(report, files["png"].name))
    return files


def log_report(report: Report, files: Mapping[str, Path], *, mode: str, project: str, group: str | None) -> None:
    """The report as a W&B run (job_type=report): scores, saliency and run tables and the reward-curve figure."""
    if mode == "disabled":
        return
    import wandb

    from fls.logging import init_wandb

    out_dir = files["report_md"].parent
    run = init_wandb(
        out_dir,
        mode=mode,
        project=project,
        name=f"report-{report.title.removeprefix('Report: ')}",
        config={"runs": [str(r.path) for r in report.runs], "checkpoint": report.checkpoint, "ddof": report.ddof},
        group=group,
        tags=["report"],
        job_type="report",
    )

    def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Any:
        return wandb.Table(columns=list(columns), data=[[row.get(c) for c in columns] for row in rows])

    run.log(
        {
            "report/scores": table(report.scores, SCORE_COLUMNS),
            "report/saliency": table(report.saliency, SALIENCY_COLUMNS),
            "report/runs": table(report.status, STATUS_COLUMNS),
            "report/reward_curves": wandb.Image(str(files["png"])),
        }
    )
    run.summary.update({"report/runs": len(report.runs), "report/missing": len(report.missing)})
    run.finish()


def _settings(cfg: DictConfig) -> tuple[str | None, str, int, int]:
    options = cfg.get("report") or {}
    checkpoint = options.get("checkpoint")
    curve_key = str(options.get("curve") or REWARD_KEY)
    points, ddof = options.get("grid_points", 200), options.get("std_ddof", 0)
    if not isinstance(points, int) or isinstance(points, bool) or points < 2:
        raise ConfigError(f"report.grid_points must be an integer >= 2, got {points!r}")
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ConfigError(f"report.std_ddof must be 0 (population) or 1 (sample), got {ddof!r}")
    return (None if checkpoint in (None, "") else Path(str(checkpoint)).stem), curve_key, points, ddof


def _output_folder() -> Path:
    """This command's own output folder (Hydra's run directory, outputs/evaluate/<date>/<time>/), or outside Hydra
    a new outputs/reports/<date>/<time>/ below the working directory: never the working directory itself."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir).resolve()
    import time

    return Path.cwd() / "outputs" / "reports" / time.strftime("%Y-%m-%d/%H-%M-%S")


def make_report(cfg: DictConfig) -> Path:
    """evaluate.py task=report: find the sweep's runs, build the report, write it, log it to W&B, print it."""
    checkpoint, curve_key, points, ddof = _settings(cfg)
    sweep = cfg.get("sweep")
    if isinstance(sweep, ListConfig):
        sweep = [str(s) for s in sweep]
    runs, sweep_dir = find_runs(sweep)
    configured = OmegaConf.select(cfg, "report.out", default=None)
    if configured:
        out_dir = Path(str(configured)).expanduser().resolve()
    elif sweep_dir is not None:
        out_dir = sweep_dir / "report"
    else:
        out_dir = _output_folder() / "report"
        print(f"report of {len(runs)} runs: writing to {out_dir} (report.out=<dir> chooses the folder)")
    title = f"Report: {sweep_dir.name if sweep_dir else f'{len(runs)} runs'}"
    report = build_report(runs, title=title, checkpoint=checkpoint, curve_key=curve_key, grid_points=points, ddof=ddof)
    files = write_report(report, out_dir)
    from fls.evaluation.faithfulness_report import add_faithfulness  # its own section (task=faithfulness results)

    files.update(add_faithfulness(report, out_dir, files["report_md"]))
    log_report(
        report,
        files,
        mode=str(OmegaConf.select(cfg, "logger.wandb.mode", default="disabled")),
        project=str(OmegaConf.select(cfg, "logger.wandb.project", default="fls")),
        group=sweep_dir.name if sweep_dir else None,
    )
    print(files["report_md"].read_text())
    missing = report.missing
    summary = f"{len(missing)} of {len(runs)} runs lack results (see 'Missing results'); " if missing else ""
    print(f"{summary}report in {out_dir}")
    return out_dir


# ----------------------------------------------------------------------------------------------------------------
# Parameter counts


def _model_config(name: str) -> dict[str, Any]:
    """A model's default config as train.py composes it (configs/model/_options.yaml + <name>.yaml)."""
    from fls.cli import CONFIG_DIR

    folder = CONFIG_DIR / "model"
    merged = OmegaConf.load(folder / "_options.yaml")
    own = folder / f"{name}.yaml"
    if own.is_file():
        spec = OmegaConf.load(own)
        spec.pop("defaults", None)
        merged = OmegaConf.merge(merged, spec)
    merged.name = name
    container = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(container, dict)
    return container


def parameter_table(actions: Sequence[int] = (4, 18)) -> str:
    """Markdown table of every registered model's trainable parameters (whole actor-critic, default options),
    counted from the models themselves for each number of actions.

    The policies are built on PyTorch's meta device: the same modules with shapes but no storage, so counting
    skips the orthogonal initialisation (seconds per model on a CPU) and allocates nothing.
    """
    import gymnasium as gym
    import torch

    from fls.models import MODELS, build_policy, count_parameters

    observation = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    header = " | ".join(f"params ({n} actions)" for n in actions)
    lines = [f"| `model=` | what it is | {header} |", "|---|---|" + "---:|" * len(actions)]
    for name, spec in MODELS.items():
        cfg = _model_config(name)
        with torch.device("meta"):
            counts = [count_parameters(build_policy(cfg, observation, gym.spaces.Discrete(n))) for n in actions]
        lines.append(f"| `{name}` | {spec.description} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(parameter_table(), end="")
