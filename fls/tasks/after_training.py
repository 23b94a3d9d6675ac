"""What train.py runs once the budget is reached: evaluate.py's episode protocol and a saliency video, in the run.

Training calls this module; it calls the same evaluation functions evaluate.py's tasks do, so the records and the
video it writes are the ones evaluate.py would write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fls.agents.loading import Loaded, evaluation_config, load
from fls.config_schema import default_config
from fls.evaluation.episodes import evaluate_episodes
from fls.rundir import FINAL_MODEL, evaluation_dir


def after_training(cfg: DictConfig, run_dir: Path, model: Any = None) -> dict[str, Any] | None:
    """What the config asks for once the budget is reached: an evaluation (evaluate.py's protocol) and a
    saliency video, both written into the run directory as evaluate.py would. Returns the evaluation's
    statistics, with the first ``seed`` and the ``records`` folder (None when none ran).

    ``after_training.eval_seed`` null plays evaluate.py's own episodes (its ``eval.seed``, records in
    ``eval/final_model/``, which ``evaluate.py run=<run>`` continues); another seed keeps its records apart, in
    ``eval/final_model_seed<seed>/``, so that a search can select on episodes the final evaluation never plays.

    ``model``: the trained model, still in memory (saved as the run's final model); None: read that file."""
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
        settings = {"eval.episodes": episodes, "eval.num_envs": int(after.eval_num_envs)}
        seed = int(default_config("evaluate").eval.seed)  # evaluate.py's eval.seed, declared once
        if after.get("eval_seed") is not None and int(after.eval_seed) != seed:
            seed = int(after.eval_seed)
            settings["eval.seed"] = seed
            settings["eval.out"] = str(evaluation_dir(run_dir, f"{Path(FINAL_MODEL).stem}_seed{seed}"))
        eval_cfg = evaluation_config(**common, **settings)
        stats = evaluate_episodes(eval_cfg, _in_memory(model, run_dir, cfg))
        if stats is not None:
            stats = {
                **stats,
                "seed": seed,
                "records": str(evaluation_dir(run_dir, run_dir / FINAL_MODEL, eval_cfg.eval.out)),
            }
    if after.video:
        from fls.tasks.video import saliency_video

        video = {"saliency.methods": list(after.video_methods), "saliency.max_steps": int(after.video_steps)}
        if after.get("video_objects") is not None:  # null: saliency.objects's own default
            video["saliency.objects"] = bool(after.video_objects)
        video_cfg = evaluation_config(**common, **video)
        saliency_video(video_cfg, _in_memory(model, run_dir, cfg) or load(video_cfg))
    return stats


def _in_memory(model: Any, run_dir: Path, cfg: DictConfig) -> Loaded | None:
    """The trained model as the tasks' agent, without reading back the file it was just saved to."""
    if model is None:
        return None
    from fls.agents.agent import agent_in_memory
    from fls.agents.loading import loaded

    return loaded(agent_in_memory(model, run_dir / FINAL_MODEL, str(cfg.env.name), run_dir))
