"""task=report: a sweep's results as they go into a paper: reward curves, score and saliency tables, gaps.

``python evaluate.py task=report sweep=<multirun dir>`` (or ``sweep=[<run dir>,<run dir>]``) reads every training
run of the sweep and writes, into ``report.out`` (default ``<sweep dir>/report/``; for a list of runs, a new
``outputs/reports/<date>/<time>/`` below the working directory):

- ``reward_curves.png`` / ``.svg`` (+ ``reward_curves.csv``): ``rollout/ep_rew_mean`` against agent steps, the mean
  across seeds with a ±std band, one panel per game and one line per model (the paper's Figure 3);
- ``learning_curves.png`` (+ ``.csv``): the same training window as the IQM across runs with a 95%
  stratified-bootstrap band, per game and, for several games, human-normalised over all of them
  (:mod:`fls.report.learning`);
- ``aggregates.md`` / ``.csv``, ``aggregate_metrics.png``, ``performance_profile.png``,
  ``probability_of_improvement.csv`` / ``.png``: IQM, median, mean and optimality gap with intervals
  (:mod:`fls.report.aggregate`);
- ``scores.md`` / ``scores.csv``: evaluation scores per game and model (Table 3), computed from each run's
  per-episode records: mean ± std of all episodes pooled over seeds (the paper's ±), and the std across seeds of
  the per-seed means in a column of its own;
- ``saliency.md`` / ``saliency.csv``: gaze agreement (NSS, KL, sAUC, CC; Table 4) from each run's gaze summaries,
  aggregated across seeds the same way;
- ``faithfulness.md`` / ``.csv`` and ``objects.md`` / ``.csv``: the ``task=faithfulness`` and ``task=objects``
  results of every run by model and method (:mod:`fls.report.faithfulness`, :mod:`fls.report.objects`), each
  also a section of ``report.md``;
- ``runs.csv``: every run with what it has and what it lacks; ``report.md``: all of it, with the list of runs
  missing an evaluation, gaze results or reward data (also printed);
- a W&B run (offline by default, ``job_type=report``) with the tables and the figure.

Evaluations played with different sticky actions (``repeat_action_probability``) are refused (ConfigError): no
table pools them. Runs are grouped by model name, attention-entropy weight λ (in the label when it is nonzero or
varies, e.g. ``sparse_fls λ=0.001``), any model option that differs between runs of the same model, and the training
sticky actions when those differ (``sticky=0.25``).

Reading the runs is :mod:`fls.report.runs`, the aggregation and tables :mod:`fls.report.tables`,
the figure :mod:`fls.report.figures`; this module writes the files, logs them and runs the task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from fls.errors import ConfigError
from fls.report.aggregate import aggregate, aggregates_markdown, write_aggregates
from fls.report.figures import curves_csv, plot_curves
from fls.report.learning import curves_csv as learning_csv
from fls.report.learning import plot_iqm_curves
from fls.report.runs import REWARD_KEY, Report, find_runs, label_order
from fls.report.tables import (
    SALIENCY_COLUMNS,
    SCORE_COLUMNS,
    STATUS_COLUMNS,
    build_report,
    report_markdown,
    saliency_markdown,
    scores_markdown,
)
from fls.rundir import atomic_write_text, report_dir
from fls.tables import csv_text, markdown_table

# reward curves, IQM learning curves, aggregates, profile, P(X > Y)
FIGURES = ("png", "learning_png", "aggregate_png", "profile_png", "improvement_png")
__all__ = ["log_report", "make_report", "parameter_table", "write_report"]


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write every file of the report into ``out_dir`` (each atomically); returns them by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "png": out_dir / "reward_curves.png",
        "svg": out_dir / "reward_curves.svg",
        "curves_csv": out_dir / "reward_curves.csv",
        "learning_png": out_dir / "learning_curves.png",
        "learning_csv": out_dir / "learning_curves.csv",
        "scores_md": out_dir / "scores.md",
        "scores_csv": out_dir / "scores.csv",
        "saliency_md": out_dir / "saliency.md",
        "saliency_csv": out_dir / "saliency.csv",
        "runs_csv": out_dir / "runs.csv",
        "report_md": out_dir / "report.md",
    }
    plot_curves(report, files["png"], files["svg"])
    atomic_write_text(files["curves_csv"], curves_csv(report))
    labels = label_order(report.runs)
    plot_iqm_curves(report.iqm_curves, labels, report.curve_key, files["learning_png"])
    atomic_write_text(files["learning_csv"], learning_csv(report.iqm_curves))
    atomic_write_text(files["scores_md"], scores_markdown(report))
    atomic_write_text(files["scores_csv"], csv_text(report.scores, SCORE_COLUMNS))
    atomic_write_text(files["saliency_md"], saliency_markdown(report))
    atomic_write_text(files["saliency_csv"], csv_text(report.saliency, SALIENCY_COLUMNS))
    atomic_write_text(files["runs_csv"], csv_text(report.status, STATUS_COLUMNS))
    aggregates = aggregate(report, report.mixed_protocol_games)
    files |= write_aggregates(aggregates, out_dir)
    atomic_write_text(files["report_md"], report_markdown(report, files["png"].name, aggregates_markdown(aggregates)))
    return files


def log_report(report: Report, files: Mapping[str, Path], *, mode: str, project: str, group: str | None) -> None:
    """The report as a W&B run (job_type=report): the scores, gaze, faithfulness, object and run tables and the
    figures."""
    from fls.logging import publish_to_wandb
    from fls.report import faithfulness, objects

    def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> tuple[Sequence[str], list[list[Any]]]:
        return columns, [[row.get(c) for c in columns] for row in rows]

    sections = {  # the sections of their own, when the runs have such results
        "report/faithfulness": table(faithfulness.faithfulness_rows(report), faithfulness.COLUMNS),
        "report/objects": table(objects.objects_rows(report), objects.COLUMNS),
    }

    publish_to_wandb(
        files["report_md"].parent,
        name=f"report-{report.title.removeprefix('Report: ')}",
        mode=mode,
        project=project,
        job_type="report",
        config={"runs": [str(r.path) for r in report.runs], "checkpoint": report.checkpoint, "ddof": report.ddof},
        tags=["report"],
        group=group,
        files={f"report/{Path(files[name]).stem}": files[name] for name in FIGURES if name in files},
        tables={
            "report/scores": table(report.scores, SCORE_COLUMNS),
            "report/saliency": table(report.saliency, SALIENCY_COLUMNS),
            "report/runs": table(report.status, STATUS_COLUMNS),
            **{key: value for key, value in sections.items() if value[1]},
        },
        summary={"report/runs": len(report.runs), "report/missing": len(report.missing)},
    )


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
    """A new ``outputs/reports/<date>/<time>/`` below the working directory, created exclusively: a report of a list
    of runs has no sweep folder to live in, and evaluate.py writes nothing into the working directory itself."""
    import time

    from fls.rundir import new_directory

    return new_directory(Path.cwd() / "outputs" / "reports" / time.strftime("%Y-%m-%d/%H-%M-%S"))


def make_report(cfg: DictConfig) -> Path:
    """evaluate.py task=report: find the sweep's runs, build the report, write it, log it to W&B, print it."""
    checkpoint, curve_key, points, ddof = _settings(cfg)
    sweep = cfg.get("sweep")
    if isinstance(sweep, ListConfig):
        sweep = [str(s) for s in sweep]
    runs, sweep_dir = find_runs(sweep)
    title = f"Report: {sweep_dir.name if sweep_dir else f'{len(runs)} runs'}"
    # built (and refused, e.g. for mixed sticky actions) before any folder is made
    report = build_report(runs, title=title, checkpoint=checkpoint, curve_key=curve_key, grid_points=points, ddof=ddof)
    configured = OmegaConf.select(cfg, "report.out", default=None)
    if configured:
        out_dir = Path(str(configured)).expanduser().resolve()
    elif sweep_dir is not None:
        out_dir = report_dir(sweep_dir)
    else:
        out_dir = _output_folder()
        print(f"report of {len(runs)} runs: writing to {out_dir} (report.out=<dir> chooses the folder)")
    files = write_report(report, out_dir)
    from fls.report.faithfulness import add_faithfulness  # its own section (task=faithfulness results)

    files.update(add_faithfulness(report, out_dir, files["report_md"]))
    from fls.report.objects import add_objects  # its own section (task=objects results)

    files.update(add_objects(report, out_dir, files["report_md"]))
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
    """A model's default config as train.py composes it."""
    from fls.config_schema import model_defaults

    container = model_defaults(name)
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
    rows = []
    for name, spec in MODELS.items():
        cfg = _model_config(name)
        with torch.device("meta"):
            counts = [count_parameters(build_policy(cfg, observation, gym.spaces.Discrete(n))) for n in actions]
        rows.append([f"`{name}`", spec.description, *(f"{c:,}" for c in counts)])
    columns = ["`model=`", "what it is", *(f"params ({n} actions)" for n in actions)]
    return markdown_table(columns, rows, "ll" + "r" * len(actions)) + "\n"
