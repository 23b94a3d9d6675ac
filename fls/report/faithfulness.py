"""The faithfulness section of ``task=report``: every run's ``task=faithfulness`` results in one table by model and
saliency method (deletion and insertion AUC, and the rank correlation left after full randomisation).

Each run's results are read from ``<run>/eval/<checkpoint>/faithfulness/<methods>_<baseline>/summary.json`` (the
checkpoint the report tabulates; every folder of it); a cell is the mean over seeds of each run's mean over frames,
± the std across seeds (the report's ``std_ddof``), as the score and gaze tables are aggregated. Rows are kept
apart by what replaced the pixels (``baseline``: blur or mean), whose AUCs do not compare.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fls.report.runs import (
    Report,
    as_number,
    evaluated_checkpoint,
    game_order,
    label_order,
    numbers_differ,
)
from fls.rundir import ADDED_SETTINGS, SUMMARY_FILE, atomic_write_text, evaluation_dir, faithfulness_root
from fls.tables import csv_text, markdown_table

METRICS = ("deletion_auc", "insertion_auc", "deletion_same_auc", "insertion_same_auc", "full_spearman")
LABELS = {"deletion_auc": "Deletion AUC ↓", "insertion_auc": "Insertion AUC ↑", "full_spearman": "ρ random net ↓"}
# settings that change a faithfulness result's numbers besides the model and the methods (faithfulness._settings)
SETTING_KEYS = ("frames", "games", "max_steps", "percent_step", "seed", "blur_sigma", "eval_seed", "deterministic")
SETTING_KEYS += ("repeat_action_probability",)  # sticky actions; results made before the key: 0
BASELINE_LABELS = {"random": "*random order*", "center_prior": "*centre prior*"}
COLUMNS = (
    "game",
    "label",
    "model",
    "baseline",
    "method",
    "kind",
    "seeds",
    "frames",
    *(f"{m}{suffix}" for m in METRICS for suffix in ("", "_std")),
)


def read_faithfulness(run_dir: Path, checkpoint: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``summary.json`` below ``<run>/eval/<checkpoint>/faithfulness/`` (checkpoint None: the one evaluate.py
    evaluates) with its folder, in name order; empty when there is none."""
    stem = checkpoint or evaluated_checkpoint(run_dir)
    if stem is None:
        return []
    root = faithfulness_root(evaluation_dir(run_dir, stem))
    found = []
    for path in [*sorted(root.glob(f"*/{SUMMARY_FILE}")), root / SUMMARY_FILE]:  # the last: results before 2026-12
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(summary, dict):
            found.append((path.parent, summary))
    return found


def _mean_std(values: Sequence[float], ddof: int) -> tuple[float, float]:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=ddof)) if len(finite) > ddof else 0.0


def faithfulness_rows(report: Report, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (game, label, baseline, method or reference order), aggregated across the seeds that have
    results. A run's method found in two folders with different numbers counts once (the first folder's) and is
    named in ``notes``."""
    cells: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    kinds: dict[str, str] = {}
    settings: dict[tuple[str, str], dict[str, list[str]]] = {}  # (game, baseline) -> settings -> runs
    for run in report.runs:
        taken: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
        for folder, summary in read_faithfulness(run.path, report.checkpoint):
            baseline = str(summary.get("baseline", "blur"))
            setting = ", ".join(f"{k}={summary.get(k, ADDED_SETTINGS.get(k))}" for k in SETTING_KEYS)
            settings.setdefault((run.game, baseline), {}).setdefault(setting, []).append(run.name)
            sanity = summary.get("sanity", {})
            for method, row in summary.get("results", {}).items():
                values = {m: as_number(row.get(m)) for m in METRICS if m != "full_spearman"}
                values["full_spearman"] = as_number(sanity.get(method, {}).get("full", {}).get("spearman"))
                values["frames"] = int(row.get("frames", 0))
                kinds[method] = str(row.get("kind", "method"))
                key = (baseline, method)
                if key not in taken:
                    taken[key] = (folder, values)
                    cells.setdefault((run.game, run.label, baseline, method), []).append(values)
                elif numbers_differ(taken[key][1], values) and notes is not None:
                    first = taken[key][0].name
                    notes.append(
                        f"{run.name}: faithfulness of {method} ({baseline} baseline) differs between {first} and "
                        f"{folder.name} (other settings); the table uses {first}"
                    )
    for (game, baseline), found in settings.items():
        if len(found) > 1 and notes is not None:
            kinds_text = "; ".join(f"{k} in {', '.join(sorted(set(names)))}" for k, names in found.items())
            notes.append(f"{game} ({baseline} baseline): results made with different settings: {kinds_text}")
    models = {run.label: run.model for run in report.runs}
    labels = label_order(report.runs)
    rows = []
    for game, label, baseline, method in sorted(
        cells, key=lambda k: (game_order(k[0]), labels.index(k[1]), k[2], kinds[k[3]] == "baseline")
    ):
        found = cells[(game, label, baseline, method)]
        row: dict[str, Any] = {
            "game": game,
            "label": label,
            "model": models[label],
            "baseline": baseline,
            "method": method,
            "kind": kinds[method],
            "seeds": len(found),
            "frames": sum(v["frames"] for v in found),
        }
        for metric in METRICS:
            row[metric], row[f"{metric}_std"] = _mean_std([v[metric] for v in found], report.ddof)
        rows.append(row)
    return rows


def faithfulness_markdown(rows: Sequence[dict[str, Any]], ddof: int, notes: Sequence[str] = ()) -> str:
    """The table: deletion and insertion AUC per game, model and method, with the baselines under each model."""
    if not rows:
        return (
            "No faithfulness results in any run: compute them with "
            "`python evaluate.py task=faithfulness run=<run dir> saliency=[attention,gradcam,gradient]`.\n"
        )
    shown = ("deletion_auc", "insertion_auc", "full_spearman")
    table = []
    for row in rows:
        cells = ["–" if not math.isfinite(row[m]) else f"{row[m]:.3f} ± {row[f'{m}_std']:.3f}" for m in shown]
        method = BASELINE_LABELS.get(row["method"], row["method"]) if row["kind"] == "baseline" else row["method"]
        table.append([row["game"], row["label"], row["baseline"], method, *cells, row["seeds"], row["frames"]])
    columns = ["Game", "Model", "Baseline", "Method", *(LABELS[m] for m in shown), "Seeds", "Frames"]
    lines = [markdown_table(columns, table, "llll" + "r" * (len(shown) + 2))]
    lines += [
        "",
        "AUC of the probability of the action the policy prefers as pixels are removed (deletion) or restored "
        "(insertion) in the map's order, the removed pixels replaced by the baseline (blur: the stack blurred; mean: "
        "the per-pixel mean of the other frames); each run's mean over its frames, then the mean over seeds ± std "
        f"across seeds (ddof {ddof}). ρ random net: Spearman correlation of the maps with those of the fully "
        "re-initialised network (near 1: the map ignores the weights). Frames: summed over seeds. Same-action AUCs "
        "are in faithfulness.csv.",
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def add_faithfulness(report: Report, out_dir: Path, report_md: Path) -> dict[str, Path]:
    """Write ``faithfulness.md`` / ``faithfulness.csv`` into the report folder and append the table to
    ``report.md`` as a section of its own; returns the new files by name."""
    notes: list[str] = []
    rows = faithfulness_rows(report, notes)
    text = faithfulness_markdown(rows, report.ddof, notes)
    files = {"faithfulness_md": out_dir / "faithfulness.md", "faithfulness_csv": out_dir / "faithfulness.csv"}
    atomic_write_text(files["faithfulness_md"], text)
    atomic_write_text(files["faithfulness_csv"], csv_text(rows, COLUMNS))
    atomic_write_text(
        report_md, report_md.read_text().rstrip("\n") + "\n\n## Faithfulness of the saliency methods\n\n" + text
    )
    return files
