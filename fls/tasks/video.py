"""task=video: seeded games with every chosen saliency method side by side, as mp4/gif (+ PNG frames, W&B)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from fls.errors import ConfigError
from fls.locks import hold
from fls.logging import publish_to_wandb
from fls.rundir import atomic_write_json, make_dirs, settings_differ, videos_dir
from fls.saliency.settings import played_settings, saliency_methods, saliency_target, video_stem

if TYPE_CHECKING:
    from fls.agents.loading import Loaded

FORMATS = ("mp4", "gif")


def video_settings(cfg: DictConfig, loaded: Loaded, methods: list[str], epsilon: float | None) -> dict[str, Any]:
    """Everything a video's frames depend on, kept beside it in ``<video>.json``; the name holds the main ones:
    the games and their maps (:func:`fls.saliency.settings.played_settings`) and how they are drawn."""
    s = cfg.saliency
    drawing = {
        "normalize": str(s.normalize),
        "input_panel": bool(s.input_panel),
        "fps": int(s.fps),
        "objects": bool(s.objects),
    }
    return {**played_settings(cfg, loaded, methods, epsilon), **drawing}


def settings_file(video: Path) -> Path:
    """``<video>.json``: the settings a video was made with."""
    return video.with_name(video.name + ".json")


def refuse_another_video(path: Path, settings: dict[str, Any]) -> None:
    """Refuse to replace a video made with other settings (the same settings again make the same video)."""
    if not path.exists():
        return
    differs = settings_differ(settings_file(path), settings)
    if differs is not None:
        raise ConfigError(
            f"{path} is a video {differs}; give saliency.out=<another folder> to keep both, or delete it to replace it"
        )


def saliency_video(cfg: DictConfig, loaded: Loaded) -> Path:
    """Record the video, log it to W&B, print where it is and what the agent scored."""
    from fls.saliency.video import partial_video_path, record_video

    s = cfg.saliency
    if s.format not in FORMATS:
        raise ConfigError(f"saliency.format must be one of {', '.join(FORMATS)}, got '{s.format}'")
    if s.normalize not in ("video", "frame"):
        raise ConfigError(f"saliency.normalize must be video or frame, got '{s.normalize}'")
    if s.objects:
        from fls.objects.detection import decoder

        decoder(loaded.game)  # a game without an object decoder is refused before anything is played or made
    methods = saliency_methods(cfg, loaded)
    target = saliency_target(cfg, loaded.agent.n_actions)
    from fls.evaluation.runner import acting_epsilon

    epsilon = acting_epsilon(loaded.agent, bool(s.deterministic), cfg.eval.get("epsilon"))
    out = videos_dir(s.out, loaded.run_dir, loaded.checkpoint)
    stem = video_stem(
        loaded.checkpoint.stem, loaded.game, list(methods), int(s.seed), int(s.episodes), s.target, bool(s.objects)
    )
    path = out / f"{stem}.{s.format}"
    settings = video_settings(cfg, loaded, list(methods), epsilon)
    record = settings_file(path)
    make_dirs(out)
    with hold(out / f".{stem}.lock", f"video {path}"):  # one writer per video
        partial_video_path(path).unlink(missing_ok=True)  # left by an interrupted render
        refuse_another_video(path, settings)
        recording = record_video(
            loaded.agent.policy,
            loaded.game,
            path,
            methods=methods,
            seed=int(s.seed),
            episodes=int(s.episodes),
            target=target,
            deterministic=bool(s.deterministic),
            epsilon=epsilon or 0.0,
            max_steps=int(s.max_steps),
            max_episode_steps=loaded.spec.eval_max_episode_steps,
            repeat_action_probability=settings["repeat_action_probability"],
            normalize=str(s.normalize),
            show_input=bool(s.input_panel),
            fps=int(s.fps),
            png_dir=out / f"{stem}_frames" if s.frames else None,
            objects=bool(s.objects),
        )
        atomic_write_json(record, settings)
    scores = ", ".join(f"{e.score:g} in {e.length} steps{'' if e.finished else ' (cut)'}" for e in recording.episodes)
    acting = "" if epsilon is None else f", ε-greedy ε={epsilon:g}"
    print(f"{loaded.game} video with {', '.join(methods)}: {path} (score {scores}{acting})")
    publish_to_wandb(
        out,
        name=f"video-{loaded.game}-{stem}",
        mode=str(cfg.logger.wandb.mode),
        project=str(cfg.logger.wandb.project),
        job_type="saliency",
        config={
            "checkpoint": str(loaded.checkpoint),
            "methods": list(methods),
            "seed": int(s.seed),
            "epsilon": epsilon,
        },
        tags=[f"env:{loaded.game}", "saliency"],
        files={"saliency/video": path},
        id_file=out / f"{stem}.wandb_id",  # rendering the same video again continues its W&B run
    )
    return path
