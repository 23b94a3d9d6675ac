"""The game-objects section of ``task=report``: every run's ``task=objects`` results in one table by game, model,
saliency method (and the random and centre-prior baselines) and object category.

Each run's results are read from ``<run>/objects/*/summary.json`` of the checkpoint the report tabulates; a cell is
the mean over seeds of each run's mean over frames, ± the std across seeds (the report's ``std_ddof``), as the
score and gaze tables are aggregated. Frames are summed over seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fls.objects.results import BASELINE_LABELS
from fls.objects.scores import SCORES
from fls.report.runs import Report, as_number, evaluated_checkpoint, game_order, label_order, numbers_differ
from fls.rundir import FINAL_MODEL, SUMMARY_FILE, atomic_write_text, objects_root
from fls.tables import csv_text, markdown_table

LABELS = {"pointing": "Pointing game ↑", "energy": "Energy share ↑", "ratio": "Energy ratio ↑"}
# what a result's numbers depend on besides the model, the game and the method (fls.tasks.objects.objects_settings)
IDENTITY_KEYS = ("checkpoint", "digest", "game", "methods")
COLUMNS = (
    "game",
    "label",
    "model",
    "method",
    "kind",
    "category",
    "seeds",
    "frames",
    *(f"{s}{suffix}" for s in SCORES for suffix in ("", "_std")),
)


def read_objects(run_dir: Path, checkpoint: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``summary.json`` below ``<run>/objects/`` made from ``checkpoint`` (None: the one evaluate.py
    evaluates), with its folder, in name order."""
    stem = checkpoint or evaluated_checkpoint(run_dir) or Path(FINAL_MODEL).stem
    found = []
    for path in sorted(objects_root(run_dir, run_dir / FINAL_MODEL).glob(f"*/{SUMMARY_FILE}")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(summary, dict) and Path(str(summary.get("checkpoint", ""))).stem == stem:
            found.append((path.parent, summary))
    return found


def _mean_std(values: Sequence[float], ddof: int) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=ddof)) if len(finite) > ddof else 0.0


def objects_rows(report: Report, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (game, label, method or baseline, category), aggregated across the seeds that have results.
    A run's method found in two folders with different numbers counts once (the first folder's, named in
    ``notes``); results of one game made with different settings are named in ``notes`` too."""
    cells: dict[tuple[str, str, str, str], list[dict[str, float]]] = {}
    kinds: dict[str, str] = {}
    categories: dict[str, list[str]] = {}
    settings: dict[str, dict[str, list[str]]] = {}  # game -> settings -> runs
    for run in report.runs:
        taken: dict[str, tuple[Path, dict[str, Any]]] = {}
        for folder, summary in read_objects(run.path, report.checkpoint):
            game = str(summary.get("game", run.game))
            recorded = summary.get("settings") if isinstance(summary.get("settings"), dict) else {}
            setting = ", ".join(f"{k}={v}" for k, v in sorted(recorded.items()) if k not in IDENTITY_KEYS)
            settings.setdefault(game, {}).setdefault(setting, []).append(run.name)
            baselines = set(summary.get("baselines", []))
            for method, groups in (summary.get("scores") or {}).items():
                if not isinstance(groups, dict):
                    continue
                kinds[method] = "baseline" if method in baselines else "method"
                order = categories.setdefault(game, [])
                order += [g for g in groups if g not in order]
                values = {f"{g}/{k}": as_number(v.get(k)) for g, v in groups.items() for k in (*SCORES, "frames")}
                if method in taken:
                    if numbers_differ(taken[method][1], values) and notes is not None:
                        first = taken[method][0].name
                        notes.append(
                            f"{run.name}: object scores of {method} differ between {first} and {folder.name} "
                            f"(other settings); the table uses {first}"
                        )
                    continue
                taken[method] = (folder, values)
                for group in groups:
                    found = {k: values[f"{group}/{k}"] for k in (*SCORES, "frames")}
                    cells.setdefault((game, run.label, method, group), []).append(found)
    for game, found in settings.items():
        if len(found) > 1 and notes is not None:
            text = "; ".join(f"{k or 'no settings recorded'} in {', '.join(sorted(set(n)))}" for k, n in found.items())
            notes.append(f"{game}: object scores made with different settings, which do not compare: {text}")
    models = {run.label: run.model for run in report.runs}
    labels = label_order(report.runs)

    def order(key: tuple[str, str, str, str]) -> tuple[Any, ...]:
        game, label, method, group = key
        return game_order(game), labels.index(label), kinds[method] == "baseline", method, categories[game].index(group)

    rows = []
    for key in sorted(cells, key=order):
        game, label, method, group = key
        found = cells[key]
        row: dict[str, Any] = {
            "game": game,
            "label": label,
            "model": models[label],
            "method": method,
            "kind": kinds[method],
            "category": group,
            "seeds": len(found),
            "frames": int(sum(v["frames"] for v in found if math.isfinite(v["frames"]))),
        }
        for score in SCORES:
            row[score], row[f"{score}_std"] = _mean_std([v[score] for v in found], report.ddof)
        rows.append(row)
    return rows


def objects_markdown(rows: Sequence[dict[str, Any]], ddof: int, notes: Sequence[str] = ()) -> str:
    """The table: pointing game, energy share and energy ratio per game, model, method and category."""
    if not rows:
        return (
            "No object scores in any run: compute them with "
            "`python evaluate.py task=objects run=<run dir> saliency=[attention,gradcam]`.\n"
        )
    table = []
    for row in rows:
        cells = ["–" if not math.isfinite(row[s]) else f"{row[s]:.3g} ± {row[f'{s}_std']:.2g}" for s in SCORES]
        method = BASELINE_LABELS.get(row["method"], row["method"]) if row["kind"] == "baseline" else row["method"]
        table.append([row["game"], row["label"], method, row["category"], *cells, row["seeds"], row["frames"]])
    columns = ["Game", "Model", "Method", "Object", *(LABELS[s] for s in SCORES), "Seeds", "Frames"]
    lines = [markdown_table(columns, table, "llll" + "r" * (len(SCORES) + 2))]
    lines += [
        "",
        "Over the frames where the object is on screen (any: every object): the share of frames whose map maximum "
        "lies in the object's box grown by objects.tolerance pixels (pointing game), the share of the map's sum "
        "inside the boxes (energy share) and that share over the boxes' share of the frame (energy ratio; 1: what "
        "a uniform map gets). Each run's mean over its frames, then the mean over seeds ± std across seeds "
        f"(ddof {ddof}); frames summed over seeds.",
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def add_objects(report: Report, out_dir: Path, report_md: Path) -> dict[str, Path]:
    """Write ``objects.md`` / ``objects.csv`` into the report folder and append the table to ``report.md`` as a
    section of its own; returns the new files by name."""
    notes: list[str] = []
    rows = objects_rows(report, notes)
    text = objects_markdown(rows, report.ddof, notes)
    files = {"objects_md": out_dir / "objects.md", "objects_csv": out_dir / "objects.csv"}
    atomic_write_text(files["objects_md"], text)
    atomic_write_text(files["objects_csv"], csv_text(rows, COLUMNS))
    atomic_write_text(report_md, report_md.read_text().rstrip("\n") + "\n\n## Saliency on game objects\n\n" + text)
    return files
