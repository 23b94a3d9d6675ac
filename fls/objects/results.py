"""The scores of ``task=objects`` over whole games: per-step scores of every map (:func:`fls.objects.scores.
frame_scores`), their means as a table (CSV, markdown) and the two figures.

A row is a method (or a baseline); for each category and :data:`~fls.objects.scores.ANY` the mean over the frames
where that category is on screen of the pointing game (as a rate), the energy share and the energy ratio, with
the number of frames they average over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fls.objects.scores import ANY, SCORES
from fls.rundir import atomic_path
from fls.tables import markdown_table

__all__ = ["BASELINE_LABELS", "ObjectResults", "columns"]

# the baselines of fls.gaze.baselines, scored the same way as the methods; how the tables name them
BASELINE_LABELS = {"random": "*random*", "center_prior": "*centre prior*"}
HEADINGS = {"pointing": "pointing game", "energy": "energy share", "ratio": "energy ratio"}


def columns(groups: Sequence[str]) -> list[str]:
    """The CSV's columns: ``method``, ``kind``, then ``<group>_<score>`` and ``<group>_frames`` per group."""
    return ["method", "kind", *(f"{g}_{s}" for g in groups for s in (*SCORES, "frames"))]


@dataclass
class ObjectResults:
    """Per-step scores of ``methods`` (the chosen methods, then the baselines) for ``groups`` (the game's
    categories, then ANY): ``add`` one (methods, groups, scores) array per step, read the means with ``table``."""

    methods: list[str]
    baselines: list[str]
    groups: list[str]
    steps: list[np.ndarray] = field(default_factory=list)
    episodes: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)

    def add(self, scores: np.ndarray, episode: int, reward: float) -> None:
        """One step's (len(methods) + len(baselines), len(groups), len(SCORES)) scores (NaN: category absent)."""
        self.steps.append(np.asarray(scores, np.float64))
        self.episodes.append(int(episode))
        self.rewards.append(float(reward))

    @property
    def names(self) -> list[str]:
        """Methods then baselines, the order of every table and figure."""
        return [*self.methods, *self.baselines]

    def array(self) -> np.ndarray:
        """(steps, methods + baselines, groups, scores)."""
        shape = (0, len(self.names), len(self.groups), len(SCORES))
        return np.stack(self.steps) if self.steps else np.zeros(shape)

    def table(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{method: {group: {"pointing", "energy", "ratio", "frames"}}}``: means over the frames where the
        group is present (NaN and 0 frames when it never is)."""
        data = self.array()
        present = ~np.isnan(data[..., 0])
        frames = present.sum(axis=0)
        with np.errstate(invalid="ignore"):
            means = np.nansum(data, axis=0) / frames[..., None]
        return {
            name: {
                group: {
                    **{s: float(means[m, g, k]) if frames[m, g] else math.nan for k, s in enumerate(SCORES)},
                    "frames": int(frames[m, g]),
                }
                for g, group in enumerate(self.groups)
            }
            for m, name in enumerate(self.names)
        }

    def rows(self) -> list[dict[str, Any]]:
        """The table as CSV rows (:func:`columns`)."""
        rows = []
        for name, groups in self.table().items():
            row: dict[str, Any] = {"method": name, "kind": "baseline" if name in self.baselines else "method"}
            for group, values in groups.items():
                row.update({f"{group}_{key}": value for key, value in values.items()})
            rows.append(row)
        return rows

    def frames(self) -> dict[str, int]:
        """Group -> the number of steps it is on screen (the same for every method and baseline)."""
        present = ~np.isnan(self.array()[:, 0, :, 0])
        return {group: int(present[:, g].sum()) for g, group in enumerate(self.groups)}

    def absent(self) -> list[str]:
        """The categories never on screen in these games (no score, left out of the tables' columns)."""
        return [group for group, n in self.frames().items() if n == 0]

    def markdown(self, tolerance: float) -> str:
        """The table as markdown, one table per score (a row per method, a column per group on screen headed by
        its number of frames), with a line saying what the numbers are."""
        table, frames, absent = self.table(), self.frames(), self.absent()
        shown = [g for g in self.groups if g not in absent]
        heads = ["Method", *(f"{g} ({frames[g]} frames)" for g in shown)]
        what = {
            "pointing": f"share of frames whose map maximum lies in a box grown by {tolerance:g} px",
            "energy": "share of the map's sum inside the boxes",
            "ratio": "energy share / the boxes' share of the frame (1: as much as a uniform map)",
        }
        parts = []
        for score in SCORES:
            body = [
                [BASELINE_LABELS.get(name, name), *(f"{table[name][g][score]:.3g}" for g in shown)]
                for name in self.names
            ]
            parts.append(f"**{HEADINGS[score].capitalize()}**: {what[score]}.\n\n")
            parts.append(markdown_table(heads, body, "l" + "r" * len(shown)) + "\n\n")
        never = f" Never on screen (no score): {', '.join(absent)}." if absent else ""
        note = (
            f"Means over the frames where each category is on screen ({ANY}: any object).{never} Baselines: "
            "uniform noise (seeded) and a centre-prior Gaussian, scored the same way."
        )
        return "".join(parts) + note + "\n"

    def plot_by_category(self, path: Path) -> None:
        """:meth:`figure_by_category` as a PNG."""
        _save(self.figure_by_category(), path)

    def figure_by_category(self) -> Any:
        """A panel per group and score (energy ratio above, with a dashed line at 1, a uniform map's ratio;
        pointing game below): a bar per method, the baselines grey and hatched; a group never on screen says so
        instead."""
        plt = _pyplot()
        table = self.table()
        shown = ("ratio", "pointing")
        fig, axes = plt.subplots(
            len(shown), len(self.groups), figsize=(1.2 + (0.5 + 0.45 * len(self.names)) * len(self.groups), 5.2)
        )
        axes = np.asarray(axes).reshape(len(shown), len(self.groups))
        x = np.arange(len(self.names))
        colours = ["0.75" if n in self.baselines else f"C{i}" for i, n in enumerate(self.names)]
        hatches = [("//" if n == "random" else "..") if n in self.baselines else "" for n in self.names]
        frames = self.frames()
        for g, group in enumerate(self.groups):
            for row, score in enumerate(shown):
                ax = axes[row, g]
                if not frames[group]:  # no score, not a score of 0
                    ax.set_title(f"{group}: {HEADINGS[score]}", fontsize=9)
                    ax.text(0.5, 0.5, "never on screen", ha="center", va="center", transform=ax.transAxes)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    continue
                values = np.nan_to_num([table[n][group][score] for n in self.names])
                ax.bar(x, values, 0.8, color=colours, hatch=hatches, edgecolor="0.3")
                ax.set_xticks(x, [n.replace("_", " ") for n in self.names], rotation=45, ha="right", fontsize=7)
                ax.set_title(f"{group}: {HEADINGS[score]}", fontsize=9)
                if score == "pointing":
                    ax.set_ylim(0, 1)
                else:
                    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8)
            if frames[group]:
                axes[0, g].set_xticks(x, [""] * len(x))
                axes[0, g].set_title(f"{group}: energy ratio (1: uniform; {frames[group]} frames)", fontsize=9)
        return fig

    def plot_over_time(self, path: Path, window: int = 400) -> None:
        """One panel per method: each category's energy ratio (log scale; 1, a uniform map's, dashed) at each of the
        first game's first ``window`` steps (gaps: off screen; a category never on screen is left out), rewarded
        steps as thin green lines. One game's stretch rather than every step, so that the map can be followed as
        the ball comes and goes."""
        plt = _pyplot()
        data = self.array()
        first = np.asarray(self.episodes) == self.episodes[0] if self.episodes else np.zeros(0, bool)
        shown = np.flatnonzero(first)[:window]
        fig, axes = plt.subplots(len(self.methods), 1, figsize=(10, 2.4 * len(self.methods)), squeeze=False)
        rewarded = [i for i in shown if self.rewards[i] > 0]
        absent = self.absent()
        floor = 1e-2  # a ratio of 0 (no mass on the object) is drawn at the floor of the log axis
        for m, ax in enumerate(axes[:, 0]):
            for i, step in enumerate(rewarded):
                ax.axvline(step, color="green", linewidth=0.6, alpha=0.6, label="reward" if i == 0 else None)
            ax.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8, label="uniform map")
            for g, group in enumerate(self.groups[:-1]):  # the categories; ANY is their union
                if group not in absent:
                    ratio = np.maximum(data[shown, m, g, 2], floor)
                    ax.plot(shown, ratio, label=group, linewidth=1.0, color=f"C{g}")
            ax.set_yscale("log")
            ax.set_ylabel("energy ratio")
            ax.set_title(f"{self.methods[m]}: the map's share on each object over its area share", fontsize=9)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))  # beside the curves, not on them
        axes[-1, 0].set_xlabel(f"agent step (the first game, up to {window} steps)")
        _save(fig, path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
