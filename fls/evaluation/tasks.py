"""evaluate.py's tasks: score episodes (sharded, resumable), merge shards, saliency videos, trees, gaze agreement,
faithfulness and reports; each task loads what it needs and calls the module that does the work."""

from __future__ import annotations

from omegaconf import DictConfig

from fls.errors import ConfigError
from fls.evaluation.agent import resolve_checkpoint
from fls.evaluation.episodes import evaluate_episodes, evaluation_dir, merge
from fls.evaluation.loading import load, zoo_model

TASKS = ("episodes", "merge", "video", "gaze", "report", "faithfulness", "tree")


def main(cfg: DictConfig) -> None:
    """Hydra task of evaluate.py."""
    if cfg.task not in TASKS:
        raise ConfigError(f"unknown task '{cfg.task}' (valid: {', '.join(TASKS)})")
    if cfg.task == "episodes":
        evaluate_episodes(cfg)
    elif cfg.task == "video":
        from fls.evaluation.video_task import saliency_video

        saliency_video(cfg, load(cfg))
    elif cfg.task == "tree":
        from fls.evaluation.tree_task import attention_tree_task

        attention_tree_task(cfg, load(cfg))
    elif cfg.task == "gaze":
        from fls.evaluation.gaze_task import gaze_agreement

        gaze_agreement(cfg, load(cfg))
    elif cfg.task == "faithfulness":
        from fls.evaluation.faithfulness_task import faithfulness_task

        faithfulness_task(cfg, load(cfg))
    elif cfg.task == "report":
        from fls.evaluation.report import make_report

        make_report(cfg)  # a report reads many runs (sweep=), not the one agent load() resolves
    else:
        checkpoint, run_dir = resolve_checkpoint(cfg.run, cfg.checkpoint, zoo_model(cfg))
        merge(evaluation_dir(cfg, checkpoint, run_dir), cfg)
