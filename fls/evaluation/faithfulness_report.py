"""The faithfulness section of ``task=report``: every run's ``task=faithfulness`` results in one table by model and
saliency method (deletion and insertion AUC, and the rank correlation left after full randomisation).

Each run's results are read from ``<run>/eval/<checkpoint>/faithfulness/summary.json`` (the checkpoint the report
tabulates); a cell is the mean over seeds of each run's mean over frames, ± the std across seeds (the report's
``std_ddof``), as the score and gaze tables are aggregated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fls.evaluation.report_runs import Report, evaluated_checkpoint, game_order, label_order
from fls.evaluation.report_tables import csv_text
from fls.rundir import atomic_write_text

METRICS = ("deletion_auc", "insertion_auc", "deletion_same_auc", "insertion_same_auc", "full_spearman")
LABELS = {"deletion_auc": "Deletion AUC ↓", "insertion_auc": "Insertion AUC ↑", "full_spearman": "ρ random net ↓"}
BASELINE_LABELS = {"random": "*random order*", "center_prior": "*centre prior*"}
COLUMNS = (
    "game",
    "label",
    "model",
    "method",
    "kind",
    "seeds",
    "frames",
    *(f"{m}{suffix}" for m in METRICS for suffix in ("", "_std")),
)


def read_faithfulness(run_dir: Path, checkpoint: str | None = None) -> dict[str, Any] | None:
    """``summary.json`` of ``<run>/eval/<checkpoint>/faithfulness/`` (checkpoint None: the one evaluate.py
    evaluates), or None when there is none."""
    stem = checkpoint or evaluated_checkpoint(run_dir)
    if stem is None:
        return None
    path = run_dir / "eval" / stem / "faithfulness" / "summary.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _mean_std(values: Sequence[float], ddof: int) -> tuple[float, float]:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=ddof)) if len(finite) > ddof else 0.0


def faithfulness_rows(report: Report) -> list[dict[str, Any]]:
    """One row per (game, label, method or baseline), aggregated across the seeds that have results."""
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    kinds: dict[str, str] = {}
    for run in report.runs:
        summary = read_faithfulness(run.path, report.checkpoint)
        if summary is None:
            continue
        sanity = summary.get("sanity", {})
        for method, row in summary.get("results", {}).items():
            values = {m: row.get(m, math.nan) for m in METRICS if m != "full_spearman"}
            values["full_spearman"] = sanity.get(method, {}).get("full", {}).get("spearman", math.nan)
            values["frames"] = int(row.get("frames", 0))
            kinds[method] = str(row.get("kind", "method"))
            cells.setdefault((run.game, run.label, method), []).append(values)
    models = {run.label: run.model for run in report.runs}
    labels = label_order(report.runs)
    rows = []
    for game, label, method in sorted(
        cells, key=lambda k: (game_order(k[0]), labels.index(k[1]), kinds[k[2]] == "baseline")
    ):
        found = cells[(game, label, method)]
        row: dict[str, Any] = {
            "game": game,
            "label": label,
            "model": models[label],
            "method": method,
            "kind": kinds[method],
            "seeds": len(found),
            "frames": sum(v["frames"] for v in found),
        }
        for metric in METRICS:
            row[metric], row[f"{metric}_std"] = _mean_std([v[metric] for v in found], report.ddof)
        rows.append(row)
    return rows


def faithfulness_markdown(rows: Sequence[dict[str, Any]], ddof: int) -> str:
    """The table: deletion and insertion AUC per game, model and method, with the baselines under each model."""
    if not rows:
        return (
            "No faithfulness results in any run: compute them with "
            "`python evaluate.py task=faithfulness run=<run dir> saliency=[attention,gradcam,gradient]`.\n"
        )
    shown = ("deletion_auc", "insertion_auc", "full_spearman")
    lines = [
        "| Game | Model | Method | " + " | ".join(LABELS[m] for m in shown) + " | Seeds | Frames |",
        "|---|---|---|" + "---:|" * (len(shown) + 2),
    ]
    for row in rows:
        cells = ["–" if not math.isfinite(row[m]) else f"{row[m]:.3f} ± {row[f'{m}_std']:.3f}" for m in shown]
        method = BASELINE_LABELS.get(row["method"], row["method"]) if row["kind"] == "baseline" else row["method"]
        lines.append(
            f"| {row['game']} | {row['label']} | {method} | "
            + " | ".join(cells)
            + f" | {row['seeds']} | {row['frames']} |"
        )
    lines += [
        "",
        "AUC of the probability of the action the policy prefers as pixels are removed (deletion) or restored "
        "(insertion) in the map's order; each run's mean over its frames, then the mean over seeds ± std across "
        f"seeds (ddof {ddof}). ρ random net: Spearman correlation of the maps with those of a fully randomised "
        "network (near 1: the map ignores the weights). Frames: summed over seeds. Same-action AUCs are in "
        "faithfulness.csv.",
    ]
    return "\n".join(lines) + "\n"


def add_faithfulness(report: Report, out_dir: Path, report_md: Path) -> dict[str, Path]:
    """Write ``faithfulness.md`` / ``faithfulness.csv`` into the report folder and append the table to
    ``report.md`` as a section of its own; returns the new files by name."""
    rows = faithfulness_rows(report)
    text = faithfulness_markdown(rows, report.ddof)
    files = {"faithfulness_md": out_dir / "faithfulness.md", "faithfulness_csv": out_dir / "faithfulness.csv"}
    atomic_write_text(files["faithfulness_md"], text)
    atomic_write_text(files["faithfulness_csv"], csv_text(rows, COLUMNS))
    atomic_write_text(
        report_md, report_md.read_text().rstrip("\n") + "\n\n## Faithfulness of the saliency methods\n\n" + text
    )
    return files
