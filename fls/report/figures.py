"""``task=report``'s figure: the reward curves (the paper's Figure 3) as PNG and SVG, and their values as CSV."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fls.report.runs import REWARD_KEY, Report, label_order, ordered_games
from fls.rundir import atomic_path
from fls.tables import csv_text


def plot_curves(report: Report, png: Path, svg: Path) -> None:
    """Figure 3: one panel per game, one line per label (mean across seeds, ±std shaded), as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = ordered_games(report.runs)
    labels = label_order(report.runs)
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


def curves_csv(report: Report) -> str:
    """The plotted curves as CSV: one row per (game, label, grid step) with mean, std and seed count."""
    rows = [
        {"game": c.game, "label": c.label, "step": s, "mean": m, "std": d, "seeds": c.seeds}
        for c in report.curves
        for s, m, d in zip(c.steps.tolist(), c.mean.tolist(), c.std.tolist(), strict=True)
    ]
    return csv_text(rows, ("game", "label", "step", "mean", "std", "seeds"))
