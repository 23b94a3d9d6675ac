"""The results of ``task=faithfulness``: per-frame AUCs, mean curves and sanity checks, and the files they are
written to in ``<run>/eval/<checkpoint>/faithfulness/<methods>_<baseline>/``: ``faithfulness.csv`` (per method
and frame), ``curves.csv`` (mean curves), ``sanity.csv`` (per method, step and frame), ``faithfulness.md``,
``summary.json`` (what ``task=report`` collects), ``deletion.png``, ``insertion.png``, ``sanity.png``, and a W&B
run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fls.gaze.baselines import CENTER_PRIOR, RANDOM
from fls.rundir import SUMMARY_FILE, atomic_path, atomic_write_json, atomic_write_text
from fls.saliency.metrics.faithfulness import BASELINE_ORDERS, CURVES, Curves, DrawnFrames
from fls.tables import csv_text, markdown_table

if TYPE_CHECKING:
    from fls.saliency.metrics.sanity import SanityResult


@dataclass
class FaithfulnessResult:
    """Everything one faithfulness evaluation measured."""

    frames: DrawnFrames
    actions: np.ndarray
    probs: np.ndarray
    curves: dict[str, Curves]
    """By method name (methods first, then the random and centre-prior baselines)."""
    sanity: list[SanityResult]
    sanity_frames: int

    def kind(self, name: str) -> str:
        """``baseline`` for the random and centre-prior orders, else ``method``."""
        return "baseline" if name in BASELINE_ORDERS else "method"

    def summary(self) -> dict[str, dict[str, float]]:
        """Per order: mean and std (over frames, population) of each AUC."""
        out = {}
        for name, curves in self.curves.items():
            row: dict[str, Any] = {"kind": self.kind(name), "frames": len(curves.deletion)}
            for key, values in curves.aucs().items():
                row[key], row[f"{key}_std"] = float(values.mean()), float(values.std())
            out[name] = row
        return out

    def sanity_steps(self) -> list[str]:
        """The randomisation steps in cascade order."""
        steps: list[str] = []
        for r in self.sanity:
            if r.step not in steps:
                steps.append(r.step)
        return steps

    def sanity_summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per method and step: mean and std over frames of Spearman and SSIM, and how many frames had an
        undefined correlation (a constant map)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for r in self.sanity:
            finite = r.spearman[np.isfinite(r.spearman)]
            out.setdefault(r.method, {})[r.step] = {
                "spearman": float(finite.mean()) if len(finite) else math.nan,
                "spearman_std": float(finite.std()) if len(finite) else math.nan,
                "ssim": float(r.ssim.mean()),
                "ssim_std": float(r.ssim.std()),
                "undefined": int(len(r.spearman) - len(finite)),
            }
        return out


FRAME_COLUMNS = (
    "method",
    "kind",
    "frame",
    "episode",
    "step",
    "action",
    "action_prob",
    "deletion_auc",
    "insertion_auc",
    "deletion_same_auc",
    "insertion_same_auc",
)


def frames_csv(result: FaithfulnessResult) -> str:
    """faithfulness.csv: one row per (method, frame)."""
    rows = []
    for name, curves in result.curves.items():
        aucs = curves.aucs()
        for i in range(len(curves.deletion)):
            rows.append(
                {
                    "method": name,
                    "kind": result.kind(name),
                    "frame": i,
                    "episode": int(result.frames.episodes[i]),
                    "step": int(result.frames.steps[i]),
                    "action": int(result.actions[i]),
                    "action_prob": float(result.probs[i]),
                    **{key: float(values[i]) for key, values in aucs.items()},
                }
            )
    return csv_text(rows, FRAME_COLUMNS)


def curves_csv(result: FaithfulnessResult) -> str:
    """curves.csv: the mean (and std over frames) of each curve at each percentage, per method."""
    rows = []
    for name, curves in result.curves.items():
        for j, percent in enumerate(curves.percents):
            row: dict[str, Any] = {"method": name, "kind": result.kind(name), "percent": float(percent)}
            for curve in CURVES:
                values = getattr(curves, curve)[:, j]
                row[f"{curve}_mean"], row[f"{curve}_std"] = float(values.mean()), float(values.std())
                row[f"{curve}_same"] = float(getattr(curves, f"{curve}_same")[:, j].mean())
            rows.append(row)
    columns = ["method", "kind", "percent"] + [f"{c}_{s}" for c in CURVES for s in ("mean", "std", "same")]
    return csv_text(rows, columns)


def sanity_csv(result: FaithfulnessResult) -> str:
    """sanity.csv: Spearman and SSIM per (method, randomisation step, frame)."""
    rows = [
        {"method": r.method, "step": r.step, "frame": i, "spearman": float(rho), "ssim": float(s)}
        for r in result.sanity
        for i, (rho, s) in enumerate(zip(r.spearman, r.ssim, strict=True))
    ]
    return csv_text(rows, ("method", "step", "frame", "spearman", "ssim"))


STEP_LABELS = {"heads": "heads", "hidden": "hidden 512", "full": "fully re-initialised"}


def step_label(step: str) -> str:
    """Column / axis label of a cascade step: ``attention_conv2`` -> "attention at conv2", ``full`` -> "fully
    re-initialised"."""
    return STEP_LABELS.get(step, step.replace("_", " at "))


def _fmt(mean: float, std: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.3f} ± {std:.3f}"


def faithfulness_markdown(result: FaithfulnessResult, setting: Mapping[str, Any]) -> str:
    """faithfulness.md: the AUC table (methods beside the baselines) and the sanity-check tables."""
    summary = result.summary()
    n = len(result.frames.observations)
    lines = [
        f"# Faithfulness: {setting['game']}, `{setting['checkpoint']}`",
        "",
        f"{n} frames drawn from {setting['games']} evaluation games ({result.frames.seen} inputs, seed "
        f"{setting['seed']}); pixels replaced by the {setting['baseline_text']}; k = 0, {setting['percent_step']}, …, "
        "100 % of the 84×84 pixels (all 4 stacked frames). AUC over the fraction of pixels of the probability of the "
        "action the policy prefers on the clean frame; mean ± std over frames.",
        "",
    ]
    table = []
    for name, row in summary.items():
        label = {RANDOM: "*random order*", CENTER_PRIOR: "*centre prior*"}.get(name, name)
        cells = [
            _fmt(row[k], row[f"{k}_std"])
            for k in ("deletion_auc", "insertion_auc", "deletion_same_auc", "insertion_same_auc")
        ]
        table.append([label, *cells])
    columns = ["Method", "Deletion AUC ↓", "Insertion AUC ↑", "Deletion, same action ↓", "Insertion, same action ↑"]
    lines.append(markdown_table(columns, table, "lrrrr"))
    lines += [
        "",
        "'Same action': area under the fraction of frames whose greedy action is still the explained one.",
        "",
    ]
    if result.sanity:
        steps = result.sanity_steps()
        sanity = result.sanity_summary()
        columns, align = ["Method", *(step_label(s) for s in steps)], "l" + "r" * len(steps)
        lines += [
            "## Sanity checks (cascading randomisation)",
            "",
            f"{result.sanity_frames} frames. Each column re-initialises one more layer group, from the heads down "
            "(cumulative; each attention module just before the conv whose output it reads); the last column is the "
            "fully re-initialised network (every layer drawn afresh). A map that does not change when the weights are "
            "destroyed (values near 1) does not explain what the agent learned.",
            "",
            "Spearman rank correlation with the trained network's maps (mean ± std over frames):",
            "",
        ]
        spearman = []
        for method, by_step in sanity.items():
            cells = []
            for s in steps:
                cell = _fmt(by_step[s]["spearman"], by_step[s]["spearman_std"])
                if by_step[s]["undefined"]:
                    cell += f" ({by_step[s]['undefined']} constant)"
                cells.append(cell)
            spearman.append([method, *cells])
        lines += [markdown_table(columns, spearman, align)]
        lines += ["", "SSIM (Gaussian window 11, σ 1.5, maps in [0, 1]):", ""]
        ssim = [[m, *(_fmt(by[s]["ssim"], by[s]["ssim_std"]) for s in steps)] for m, by in sanity.items()]
        lines += [markdown_table(columns, ssim, align), ""]
    return "\n".join(lines)


def plot_curves(result: FaithfulnessResult, curve: str, path: Path) -> None:
    """Mean deletion or insertion curve, one line per method (baselines dashed), AUC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    summary = result.summary()
    for i, (name, curves) in enumerate(result.curves.items()):
        style = {"linestyle": "--", "color": "0.35" if name == RANDOM else "0.65"} if name in BASELINE_ORDERS else {}
        if not style:
            style = {"color": plt.get_cmap("tab10")(i % 10)}
        mean = getattr(curves, curve).mean(axis=0)
        ax.plot(curves.percents, mean, label=f"{name} (AUC {summary[name][f'{curve}_auc']:.3f})", **style)
    ax.set_xlabel("pixels " + ("removed" if curve == "deletion" else "restored") + " (%)")
    ax.set_ylabel("probability of the explained action")
    ax.set_title(f"{curve.capitalize()} ({'lower' if curve == 'deletion' else 'higher'} AUC is better)")
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)


def plot_sanity(result: FaithfulnessResult, path: Path) -> None:
    """Mean Spearman and SSIM against the randomisation step (the trained network first, at 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result.sanity_steps()
    sanity = result.sanity_summary()
    labels = ["trained", *(step_label(s) for s in steps)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (method, by_step) in enumerate(sanity.items()):
        color = plt.get_cmap("tab10")(i % 10)
        for ax, key in zip(axes, ("spearman", "ssim"), strict=True):
            ax.plot(range(len(labels)), [1.0, *(by_step[s][key] for s in steps)], marker="o", color=color, label=method)
    for ax, title in zip(axes, ("Spearman rank correlation", "SSIM"), strict=True):
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_title(f"{title} with the trained network's maps")
        ax.set_xlabel("randomised down to")
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)


def write_outputs(result: FaithfulnessResult, setting: Mapping[str, Any], out: Path) -> None:
    """Every file of a faithfulness evaluation, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "faithfulness.csv", frames_csv(result))
    atomic_write_text(out / "curves.csv", curves_csv(result))
    atomic_write_text(out / "faithfulness.md", faithfulness_markdown(result, setting))
    summary = {**setting, "results": result.summary(), "sanity": result.sanity_summary()}
    summary["sanity_steps"] = result.sanity_steps()
    atomic_write_json(out / SUMMARY_FILE, summary)
    plot_curves(result, "deletion", out / "deletion.png")
    plot_curves(result, "insertion", out / "insertion.png")
    if result.sanity:
        atomic_write_text(out / "sanity.csv", sanity_csv(result))
        plot_sanity(result, out / "sanity.png")


def log_to_wandb(result: FaithfulnessResult, setting: Mapping[str, Any], out: Path, *, mode: str, project: str) -> None:
    """The AUC and sanity tables and the three figures as a W&B run (job_type=faithfulness)."""
    from fls.logging import publish_to_wandb

    columns = ["method", "kind", "deletion_auc", "deletion_auc_std", "insertion_auc", "insertion_auc_std", "frames"]
    rows = [[name, *(row[c] for c in columns[1:])] for name, row in result.summary().items()]
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {"faithfulness/table": (columns, rows)}
    files = {"faithfulness/deletion": out / "deletion.png", "faithfulness/insertion": out / "insertion.png"}
    if result.sanity:
        sanity_rows = [
            [method, step, v["spearman"], v["spearman_std"], v["ssim"], v["ssim_std"], v["undefined"]]
            for method, by_step in result.sanity_summary().items()
            for step, v in by_step.items()
        ]
        sanity_columns = ["method", "step", "spearman", "spearman_std", "ssim", "ssim_std", "undefined"]
        tables["faithfulness/sanity_table"] = (sanity_columns, sanity_rows)
        files["faithfulness/sanity"] = out / "sanity.png"
    publish_to_wandb(
        out,
        name=f"faithfulness-{setting['game']}-{Path(str(setting['checkpoint'])).stem}",
        mode=mode,
        project=project,
        job_type="faithfulness",
        config={k: v for k, v in setting.items() if k not in ("percents", "baseline_text")},
        tags=[f"env:{setting['game']}", "faithfulness"],
        files=files,
        tables=tables,
        summary={
            f"faithfulness/{name}/{key}": row[key]
            for name, row in result.summary().items()
            for key in ("deletion_auc", "insertion_auc")
        },
    )
