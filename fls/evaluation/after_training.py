"""What train.py runs once the budget is reached: evaluate.py's episode protocol and a saliency video, in the run.

Training calls this module; it calls the same evaluation functions evaluate.py's tasks do, so the records and the
video it writes are the ones evaluate.py would write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fls.evaluation.episodes import evaluate_episodes
from fls.evaluation.loading import evaluation_config, load


def after_training(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """What the config asks for once the budget is reached: an evaluation (evaluate.py's protocol) and a
    saliency video, both written into the run directory as evaluate.py would. Returns the evaluation's
    statistics (None when none ran)."""
    after = cfg.after_training
    common = {
        "run": str(run_dir),
        "device": str(cfg.device),
        "logger.wandb.mode": str(cfg.logger.wandb.mode),
        "logger.wandb.project": str(cfg.logger.wandb.project),
    }
    stats = None
    episodes = int(after.eval_episodes)
    if episodes > 0:
        print(f"evaluating the final model on {episodes} episodes")
        stats = evaluate_episodes(
            evaluation_config(**common, **{"eval.episodes": episodes, "eval.num_envs": int(after.eval_num_envs)})
        )
    if after.video:
        from fls.evaluation.video_task import saliency_video

        video_cfg = evaluation_config(
            **common, **{"saliency.methods": list(after.video_methods), "saliency.max_steps": int(after.video_steps)}
        )
        saliency_video(video_cfg, load(video_cfg))
    return stats
