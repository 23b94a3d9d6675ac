"""task=gaze: the agent's saliency maps against Atari-HEAD human gaze (NSS, KL, CC, shuffled AUC), as a table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig

from fls.errors import ConfigError
from fls.locks import LOCK_FILE, hold, remove_orphans
from fls.logging import publish_to_wandb
from fls.rundir import SUMMARY_FILE, atomic_write_json, gaze_dir, make_dirs, refuse_other_results
from fls.saliency.settings import saliency_methods, saliency_target

if TYPE_CHECKING:
    from fls.agents.loading import Loaded


def gaze_agreement(cfg: DictConfig, loaded: Loaded) -> Path:
    """Replay every trial of the game, score each method and the baselines, write CSV + markdown + W&B."""
    from fls.gaze import list_trials

    g = cfg.gaze
    if not g.data:
        raise ConfigError("task=gaze needs gaze.data=<Atari-HEAD directory>")
    game = str(g.game or loaded.game)
    trials = list_trials(Path(str(g.data)).expanduser(), game)
    methods = saliency_methods(cfg, loaded)
    target = saliency_target(cfg, loaded.agent.n_actions)
    settings = gaze_settings(cfg, loaded, game, [t.name for t in trials], list(methods))
    out = make_dirs(gaze_dir(g.out, loaded.run_dir, loaded.checkpoint, game, list(methods)))
    with hold(out / LOCK_FILE, f"gaze results in {out}"):  # one writer per results folder
        remove_orphans(out)
        refuse_other_results(out, settings, "gaze", recorded=lambda summary: summary.get("settings"))
        return _score_and_write(cfg, loaded, trials, methods, target, out, settings)


def gaze_settings(cfg: DictConfig, loaded: Loaded, game: str, trials: list[str], methods: list[str]) -> dict[str, Any]:
    """Everything the numbers of a gaze result depend on, kept in its summary.json: the model (file name and
    digest), the data (game, trials) and every setting of the scoring."""
    g = cfg.gaze
    return {
        "checkpoint": loaded.checkpoint.stem,
        "digest": loaded.agent.digest,
        "game": game,
        "trials": trials,
        "methods": methods,
        "target": cfg.saliency.target,
        "gradcam_rectified": bool(cfg.saliency.get("gradcam_rectified", False)),
        "layer": cfg.saliency.layer,
        "max_frames": None if g.max_frames is None else int(g.max_frames),
        "splits": int(g.splits),
        "other_frames": int(g.other_frames),
        "seed": int(g.seed),
        "kl_eps": float(g.kl_eps),
    }


def check_usable_gaze(trials: list, results: Any) -> None:
    """Warn (one line each) about trials without a single network input with a fixation inside the frame; refuse
    when no trial has one (the table would be empty)."""
    scored = {record[1] for record in results.records}
    empty = [trial for trial in trials if trial.name not in scored]
    for trial in empty:
        report = results.reports.get(trial.name)
        found = f"{report.gaze_points} gaze points in {report.frames} frames" if report else "no gaze file rows"
        why = f"{trial.describe()} has no usable gaze: no network input with a fixation inside the frame ({found})"
        if len(trials) == 1:
            raise ConfigError(f"{why}; nothing to score")
        if len(empty) == len(trials):
            names = ", ".join(t.name for t in trials)
            raise ConfigError(
                f"none of the {len(trials)} trials ({names}) has a network input with a fixation inside the "
                "frame; nothing to score"
            )
        print(f"warning: {why}; left out", file=sys.stderr)


def _score_and_write(
    cfg: DictConfig, loaded: Loaded, trials: list, methods: dict, target: Any, out: Path, settings: dict[str, Any]
) -> Path:
    from fls.gaze import score_trials

    g = cfg.gaze
    game = str(g.game or loaded.game)
    policy = loaded.agent.policy
    device = loaded.agent.device

    def saliency_fn(obs: np.ndarray) -> dict[str, np.ndarray]:
        batch = torch.as_tensor(obs, device=device)
        return {name: method(policy, batch, target).detach().cpu().numpy() for name, method in methods.items()}

    results = score_trials(
        trials,
        saliency_fn,
        list(methods),
        batch_size=int(g.batch_size),
        max_frames=None if g.max_frames is None else int(g.max_frames),
        other_frames=int(g.other_frames),
        splits=int(g.splits),
        seed=int(g.seed),
        eps=float(g.kl_eps),
    )
    check_usable_gaze(trials, results)
    results.write_csv(out / "frames.csv")
    results.write_markdown(out / "summary.md")
    summary = results.summary()
    record = {"checkpoint": str(loaded.checkpoint), "game": game, "settings": settings, **summary}
    atomic_write_json(out / SUMMARY_FILE, record)
    print(results.to_markdown())
    print(f"per-frame metrics and summary in {out}")
    from fls.gaze.scoring import METRICS

    rows = []
    for (game_name, method), values in results.table().items():
        for metric, column in zip(METRICS, values.T, strict=True):
            finite = column[np.isfinite(column)]
            mean = float(finite.mean()) if len(finite) else float("nan")
            std = float(finite.std()) if len(finite) else float("nan")
            rows.append([game_name, method, metric, mean, std, len(finite)])
    publish_to_wandb(
        out,
        name=f"gaze-{game}-{loaded.checkpoint.stem}",
        mode=str(cfg.logger.wandb.mode),
        project=str(cfg.logger.wandb.project),
        job_type="gaze",
        config=settings,
        tags=[f"env:{game}", "gaze"],
        tables={"gaze/table": (["game", "method", "metric", "mean", "std", "frames"], rows)},
        summary=summary,
    )
    return out
