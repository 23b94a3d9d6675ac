"""``task=report``'s numbers: every run's results aggregated per (game, label) across seeds (:func:`build_report`),
and the score, saliency and missing-results tables as markdown and CSV."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fls.errors import ConfigError
from fls.evaluation.records import header_value
from fls.report.learning import describe, iqm_curves
from fls.report.runs import (
    GAZE_METRICS,
    REWARD_KEY,
    Curve,
    Evaluation,
    Report,
    Run,
    evaluated_checkpoint,
    game_order,
    label_order,
    label_runs,
    mean_curve,
    ordered_games,
    read_curve,
    read_evaluation,
    read_run_gaze,
)
from fls.rundir import FINAL_MODEL
from fls.tables import markdown_table

_GAZE_LABELS = {"nss": "NSS ↑", "kl": "KL ↓", "sauc": "sAUC ↑", "cc": "CC ↑"}


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
    raw_curves: dict[tuple[str, str], list[tuple[int, tuple[np.ndarray, np.ndarray]]]] = {}  # (seed, curve)
    notes: list[str] = []
    gaze_settings: dict[str, list[str]] = {}  # the scoring settings of the gaze results -> the runs using them
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
        run_gaze = read_run_gaze(run.path, stem)
        if not run_gaze.metrics:
            missing.append(f"gaze results of {stem or 'final_model'}")
        notes += run_gaze.notes
        for (game, method), metrics in run_gaze.metrics.items():
            gaze.setdefault((game, run.label, method), []).append((run, metrics))
            gaze_settings.setdefault(json.dumps(run_gaze.settings[(game, method)], sort_keys=True), []).append(run.name)
        curve = read_curve(run.path, curve_key)
        if curve is None:
            missing.append(f"reward curve (no {curve_key} in progress.csv)")
        else:
            raw_curves.setdefault((run.game, run.label), []).append((run.seed, curve))
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
                "gaze_games": ",".join(sorted({g for g, _ in run_gaze.metrics})),
                "curve_points": 0 if curve is None else len(curve[0]),
                "missing": "; ".join(missing),
            }
        )

    check_sticky_actions(evaluations)
    labels, games = label_order(runs), ordered_games(runs)
    by_label = {run.label: run for run in runs}
    notes += protocol_notes(evaluations)
    mixed = sorted({note.split(":", 1)[0] for note in protocol_notes(evaluations)})
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

    if len(gaze_settings) > 1:
        kinds = "; ".join(f"{settings} in {', '.join(sorted(set(names)))}" for settings, names in gaze_settings.items())
        notes.append(f"the gaze results were scored with different settings, so their rows do not compare: {kinds}")
    saliency = []
    gaze_games = sorted({g for g, _, _ in gaze}, key=game_order)
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
                    "kl_dropped_frames": int(sum(m.get("kl_dropped_frames", 0) for _, m in cell)),
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
                grid, mean, std = mean_curve([c for _, c in found], grid_points, ddof)
                curves.append(Curve(game, label, grid, mean, std, len(found)))
    pool = curve_key == REWARD_KEY  # only returns human-normalise
    iqm = iqm_curves(
        raw_curves,
        [lab for lab in labels if any(k[1] == lab for k in raw_curves)],
        games,
        points=grid_points,
        pool=pool,
    )
    return Report(title, list(runs), status, scores, saliency, curves, checkpoint, curve_key, ddof, notes, mixed, iqm)


# What decides how an evaluation's games are played; scores made under two of these do not compare.
PROTOCOL_KEYS = ("deterministic", "epsilon", "max_episode_steps", "repeat_action_probability")


def check_sticky_actions(evaluations: Mapping[tuple[str, str], Sequence[tuple[Run, Evaluation]]]) -> None:
    """Refuse a report whose evaluations were played with different sticky actions (``repeat_action_probability``;
    records made before the key: 0): their scores, tables and aggregates would pool two protocols. One line naming
    the runs of each value and how to report them."""
    by_value: dict[float, list[str]] = {}
    for cell in evaluations.values():
        for run, evaluation in cell:
            value = float(header_value(evaluation.header, "repeat_action_probability") or 0.0)
            by_value.setdefault(value, []).append(run.name)
    if len(by_value) > 1:
        kinds = "; ".join(f"{value:g} in runs {', '.join(sorted(names))}" for value, names in sorted(by_value.items()))
        raise ConfigError(
            f"the evaluations were played with different sticky actions (repeat_action_probability {kinds}), which "
            "no table or aggregate pools: report each value's runs separately (sweep=[<run dir>,...]), or move the "
            "others' eval/<checkpoint>/ records aside and evaluate them again with eval.repeat_action_probability=<p>"
        )


def protocol_notes(evaluations: Mapping[tuple[str, str], Sequence[tuple[Run, Evaluation]]]) -> list[str]:
    """One note per game whose evaluations were played under different protocols (greedy or sampled actions, ε,
    the step limit, sticky actions: records made before that key count as 0), naming the runs of each: their
    scores, pooled in a cell or set side by side, do not compare."""
    notes = []
    by_game: dict[str, dict[str, list[str]]] = {}
    for (game, _label), cell in evaluations.items():
        for run, evaluation in cell:
            protocol = ", ".join(f"{k}={header_value(evaluation.header, k)}" for k in PROTOCOL_KEYS)
            by_game.setdefault(game, {}).setdefault(protocol, []).append(run.name)
    for game, protocols in by_game.items():
        if len(protocols) > 1:
            kinds = "; ".join(f"{p} in {', '.join(sorted(names))}" for p, names in protocols.items())
            notes.append(f"{game}: the evaluations were played under different protocols and do not compare: {kinds}")
    return notes


# ----------------------------------------------------------------------------------------------------------------
# Writing it


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
    "kl_dropped_frames",
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
    labels = [lab for lab in label_order(report.runs) if any(r["label"] == lab for r in report.scores)]
    games = [g for g in ordered_games(report.runs) if any(r["game"] == g for r in report.scores)]
    cells = {(r["game"], r["label"]): r for r in report.scores}
    shapes = {(r["seeds"], r["episodes_per_seed_min"], r["episodes_per_seed_max"]) for r in report.scores}
    uniform = len(shapes) == 1
    rows = []
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
        rows.append([game, *row])
    columns = ["Game", *(column for label in labels for column in (label, "seed std"))]
    lines = [markdown_table(columns, rows, "l" + "r" * 2 * len(labels))]
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
    rows = []
    dropped = False
    for row in report.saliency:
        cells = ["n/a" if not math.isfinite(row[m]) else f"{row[m]:.3f} ± {row[f'{m}_std']:.3f}" for m in GAZE_METRICS]
        if row["kl_dropped_frames"]:
            cells[GAZE_METRICS.index("kl")] += f" (without {row['kl_dropped_frames']} frames)"
            dropped = True
        rows.append([row["game"], row["label"], row["method"], *cells, row["seeds"], row["frames"]])
    columns = ["Game", "Model", "Method", *(_GAZE_LABELS[m] for m in GAZE_METRICS), "Seeds", "Frames"]
    lines = [markdown_table(columns, rows, "lll" + "r" * (len(GAZE_METRICS) + 2))]
    lines += [
        "",
        "Each run's metric is its mean over frames (Atari-HEAD network inputs with fixations); cells are the mean "
        f"over seeds ± std across seeds (ddof {report.ddof}). Frames: summed over seeds. "
        "Per-frame stds are in saliency.csv.",
    ]
    if dropped:
        lines += [
            "",
            "KL is the exact KL(P‖Q), undefined (infinite) on frames where the map is 0 at a pixel the blurred "
            "fixations cover; such frames are left out of its mean, and a cell says how many (summed over seeds).",
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
        markdown_table(
            ["Run", "Model", "Game", "Seed", "Missing"],
            [[f"`{row['run']}`", row["label"], row["game"], row["seed"], row["missing"]] for row in missing],
            "lllrl",
        ),
    ]
    no_eval = [row["path"] for row in missing if "evaluation" in row["missing"]]
    if no_eval:
        lines += ["", "Evaluate them with `python evaluate.py run=<run dir>`, for example:", ""]
        lines += [f"    python evaluate.py run={path}" for path in no_eval[:5]]
        if len(no_eval) > 5:
            lines.append(f"    ... and {len(no_eval) - 5} more (runs.csv lists them all)")
    return "\n".join(lines) + "\n"


def report_markdown(report: Report, figure: str = "reward_curves.png", aggregates: str = "") -> str:
    """The whole report as one markdown document."""
    models = sorted({r.label for r in report.runs}, key=label_order(report.runs).index)
    seeds = sorted({r.seed for r in report.runs})
    y = "mean unclipped return of the last 100 games" if report.curve_key == REWARD_KEY else f"`{report.curve_key}`"
    curve_lines = [f"- {c.game}, {c.label}: {c.seeds} seed{'s' if c.seeds != 1 else ''}" for c in report.curves]
    parts = [
        f"# {report.title}",
        "",
        f"{len(report.runs)} runs: {', '.join(models)} on {', '.join(ordered_games(report.runs))}; "
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
        "![learning curves, IQM](learning_curves.png)",
        "",
        describe(report.curve_key),
        "",
        "## Evaluation scores",
        "",
        scores_markdown(report),
        *(["## Aggregates across games and seeds (IQM, CIs, profiles)", "", aggregates] if aggregates else []),
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
