"""task=objects: how each saliency method's maps point at the game's objects (read from RAM) in the video task's
seeded games, beside a random and a centre-prior baseline: a table (CSV, markdown), two figures, W&B."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig

from fls.errors import ConfigError
from fls.locks import LOCK_FILE, hold, remove_orphans
from fls.logging import publish_to_wandb
from fls.rundir import SUMMARY_FILE, atomic_write_json, atomic_write_text, make_dirs, objects_dir, refuse_other_results
from fls.saliency.settings import played_settings, saliency_methods, saliency_target, video_stem
from fls.tables import csv_text

if TYPE_CHECKING:
    from fls.agents.loading import Loaded
    from fls.objects.results import ObjectResults

FILES = ("objects.csv", "objects.md", "objects_by_category.png", "objects_over_time.png", SUMMARY_FILE)


def objects_settings(cfg: DictConfig, loaded: Loaded, methods: list[str], epsilon: float | None) -> dict[str, Any]:
    """Everything the numbers depend on, kept in the results' summary.json: the video's games and maps
    (:func:`fls.saliency.settings.played_settings`) and the scoring's tolerance and baseline seed."""
    games = played_settings(cfg, loaded, methods, epsilon)
    o = cfg.objects
    return {
        **games,
        "checkpoint": loaded.checkpoint.stem,
        "tolerance": float(o.tolerance),
        "baseline_seed": int(o.seed),
    }


def objects_task(cfg: DictConfig, loaded: Loaded) -> Path:
    """Play the video task's seeded games, score every step's maps against the objects on screen, write the table,
    figures and summary.json into a folder named by what was scored (one writer at a time), log them to W&B."""
    from fls.evaluation.runner import acting_epsilon
    from fls.objects.detection import categories

    s = cfg.saliency
    groups = categories(loaded.game)  # refuses a game without a decoder before anything is played or written
    methods = saliency_methods(cfg, loaded)
    saliency_target(cfg, loaded.agent.n_actions)  # an action index the agent lacks is refused before any folder
    epsilon = acting_epsilon(loaded.agent, bool(s.deterministic), cfg.eval.get("epsilon"))
    name = video_stem(loaded.checkpoint.stem, loaded.game, list(methods), int(s.seed), int(s.episodes), s.target)
    out = objects_dir(cfg.objects.out, loaded.run_dir, loaded.checkpoint, name)
    settings = objects_settings(cfg, loaded, list(methods), epsilon)
    make_dirs(out)
    with hold(out / LOCK_FILE, f"object scores in {out}"):  # one writer per results folder
        remove_orphans(out)
        refuse_other_results(out, settings, "objects", recorded=lambda summary: summary.get("settings"))
        if (out / SUMMARY_FILE).is_file():
            print(f"objects: {out} holds the results of these settings; scoring again (the same numbers)")
        results = score_games(cfg, loaded, methods, list(groups), settings)
        _write(cfg, loaded, results, settings, out)
    return out


def score_games(
    cfg: DictConfig, loaded: Loaded, methods: dict, categories: list[str], settings: dict[str, Any]
) -> ObjectResults:
    """Play the games with :func:`fls.saliency.video.play` and score each step's maps (methods, then the random
    and centre-prior baselines of :mod:`fls.gaze.baselines`) as it comes: no frame is kept."""
    from fls.gaze.baselines import CENTER_PRIOR, RANDOM, BaselineMaps
    from fls.models.renderer import upsample_to_frame
    from fls.objects.detection import detect
    from fls.objects.results import ObjectResults
    from fls.objects.scores import ANY, frame_scores
    from fls.saliency.video import play

    s = cfg.saliency
    tolerance = float(cfg.objects.tolerance)
    baselines = BaselineMaps(int(cfg.objects.seed))
    results = ObjectResults(list(methods), [RANDOM, CENTER_PRIOR], [*categories, ANY])

    def on_step(step: Any) -> None:
        if step.ram is None:
            raise ConfigError(f"{loaded.game}: the environment gives no RAM, so objects cannot be read")
        extra = baselines(step.observation[None])
        maps = [step.maps[m] for m in methods] + [extra[b][0] for b in results.baselines]
        stacked = torch.as_tensor(np.stack(maps).astype(np.float32))
        if not bool(torch.isfinite(stacked).all()):
            bad = [m for m, a in zip(results.names, maps, strict=True) if not np.isfinite(a).all()]
            raise ConfigError(f"the {', '.join(bad)} map of step {step.step} is NaN or inf; nothing was written")
        frames = upsample_to_frame(stacked, step.frame.shape[:2]).numpy()
        objects = detect(loaded.game, step.ram)
        scores = frame_scores(frames, objects, categories, tolerance)  # each box mask once for every map
        results.add(scores, step.episode, step.reward)

    play(
        loaded.agent.policy,
        loaded.game,
        seed=int(s.seed),
        episodes=int(s.episodes),
        methods=methods,
        target=saliency_target(cfg, loaded.agent.n_actions),
        deterministic=bool(s.deterministic),
        epsilon=settings["epsilon"] or 0.0,
        max_steps=int(s.max_steps),
        max_episode_steps=loaded.spec.eval_max_episode_steps,
        repeat_action_probability=settings["repeat_action_probability"],
        on_step=on_step,
        progress=True,
    )
    return results


def _write(cfg: DictConfig, loaded: Loaded, results: ObjectResults, settings: dict[str, Any], out: Path) -> None:
    from fls.objects.results import columns

    tolerance = float(cfg.objects.tolerance)
    table = results.table()
    rows = results.rows()
    text = f"# {loaded.game}: saliency on the game's objects\n\n{results.markdown(tolerance)}"
    atomic_write_text(out / "objects.csv", csv_text(rows, columns(results.groups)))
    atomic_write_text(out / "objects.md", text)
    results.plot_by_category(out / "objects_by_category.png")
    results.plot_over_time(out / "objects_over_time.png")
    record = {
        "checkpoint": str(loaded.checkpoint),
        "game": loaded.game,
        "settings": settings,
        "steps": len(results.steps),
        "categories": results.groups,
        "baselines": results.baselines,
        "scores": table,
    }
    atomic_write_json(out / SUMMARY_FILE, record)  # last: its presence says the folder is complete
    first, absent = results.methods[0], results.absent()
    ratios = ", ".join(
        f"{g} {table[first][g]['ratio']:.2f} (random {table['random'][g]['ratio']:.2f})"
        for g in results.groups
        if g not in absent
    )
    never = f"; never on screen: {', '.join(absent)}" if absent else ""
    print(text)
    print(
        f"objects: {len(results.steps)} steps of {loaded.game}; {first}'s energy ratio (1: a uniform map's) on "
        f"{ratios or 'nothing (no object on screen)'}{never}; in {out}"
    )
    flat = [
        [r["method"], g, *(r[f"{g}_{k}"] for k in ("pointing", "energy", "ratio", "frames"))]
        for r in rows
        for g in results.groups
    ]
    publish_to_wandb(
        out,
        name=f"objects-{loaded.game}-{loaded.checkpoint.stem}",
        mode=str(cfg.logger.wandb.mode),
        project=str(cfg.logger.wandb.project),
        job_type="objects",
        config=settings,
        tags=[f"env:{loaded.game}", "objects"],
        files={f"objects/{Path(f).stem}": out / f for f in FILES if f.endswith(".png")},
        tables={"objects/table": (["method", "category", "pointing", "energy", "ratio", "frames"], flat)},
        summary={
            f"objects/{m}/{g}/{k}": v
            for m, groups in table.items()
            for g, values in groups.items()
            for k, v in values.items()
        },
    )
