"""evaluate.py's tasks: score episodes (sharded, resumable), merge shards, saliency videos, trees, gaze agreement,
faithfulness, saliency against game objects and reports; each task loads what it needs and calls the module that
does the work."""

from __future__ import annotations

from omegaconf import DictConfig

from fls.agents.agent import resolve_checkpoint
from fls.agents.loading import load, zoo_model
from fls.errors import ConfigError
from fls.evaluation.episodes import evaluate_episodes, merge
from fls.rundir import evaluation_dir

TASKS = ("episodes", "merge", "video", "gaze", "report", "faithfulness", "tree", "objects")


def main(cfg: DictConfig) -> None:
    """Hydra task of evaluate.py."""
    if cfg.task not in TASKS:
        raise ConfigError(f"unknown task '{cfg.task}' (valid: {', '.join(TASKS)})")
    if cfg.task == "episodes":
        evaluate_episodes(cfg)
    elif cfg.task == "video":
        from fls.tasks.video import saliency_video

        saliency_video(cfg, load(cfg))
    elif cfg.task == "tree":
        from fls.tasks.tree import attention_tree_task

        attention_tree_task(cfg, load(cfg))
    elif cfg.task == "gaze":
        from fls.tasks.gaze import gaze_agreement

        gaze_agreement(cfg, load(cfg))
    elif cfg.task == "faithfulness":
        from fls.tasks.faithfulness import faithfulness_task

        faithfulness_task(cfg, load(cfg))
    elif cfg.task == "objects":
        from fls.tasks.objects import objects_task

        objects_task(cfg, load(cfg))
    elif cfg.task == "report":
        from fls.report.make import make_report

        make_report(cfg)  # a report reads many runs (sweep=), not the one agent load() resolves
    else:
        checkpoint, run_dir = resolve_checkpoint(cfg.run, cfg.checkpoint, zoo_model(cfg))
        merge(evaluation_dir(run_dir, checkpoint, cfg.eval.out), cfg)
