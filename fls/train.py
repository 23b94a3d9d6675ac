"""Training: config -> env -> policy -> PPO (+ attention entropy) -> callbacks -> run directory."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.callbacks import BaseCallback

from fls.envs import make_vec_env
from fls.errors import ConfigError
from fls.logging import init_wandb, make_logger
from fls.models import build_policy, count_parameters, describe_policy, policy_kwargs
from fls.models.policy import FLSPolicy
from fls.ppo import AttentionPPO, LinearDecay
from fls.progress import progress_bar
from fls.rundir import (
    CONFIG_FILE,
    FINAL_MODEL,
    atomic_write_text,
    checkpoint_path,
    newest_checkpoint,
    save_model,
)

# Overrides a resumed run may change; everything else must match the run's own config.
RESUME_MAY_CHANGE = ("resume", "device", "logger", "hydra", "checkpoint_every", "after_training")


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda requested without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available (valid here: auto, cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}' (valid: auto, cpu, cuda, cuda:N)") from None


def model_config(cfg: DictConfig) -> dict:
    """The model group as a plain dict."""
    return OmegaConf.to_container(cfg.model, resolve=True)  # type: ignore[return-value]


def check_env_config(cfg: DictConfig) -> None:
    """num_envs and the budget must be positive integers."""
    if int(cfg.env.num_envs) < 1:
        raise ConfigError(f"env.num_envs must be >= 1, got {cfg.env.num_envs}")
    if int(cfg.total_timesteps) < 1:
        raise ConfigError(f"total_timesteps must be >= 1, got {cfg.total_timesteps}")
    if int(cfg.checkpoint_every) < 1:
        raise ConfigError(f"checkpoint_every must be >= 1, got {cfg.checkpoint_every}")


def ppo_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """AttentionPPO keyword arguments from the ppo and model groups."""
    p = cfg.ppo
    for key, kind in (("lr_schedule", p.lr_schedule), ("clip_schedule", p.clip_schedule)):
        if kind not in ("linear", "constant"):
            raise ConfigError(f"ppo.{key} must be linear or constant, got '{kind}'")
    return {
        "n_steps": int(p.n_steps),
        "batch_size": int(p.batch_size),
        "n_epochs": int(p.n_epochs),
        "learning_rate": LinearDecay(p.learning_rate) if p.lr_schedule == "linear" else float(p.learning_rate),
        "clip_range": LinearDecay(p.clip_range) if p.clip_schedule == "linear" else float(p.clip_range),
        "clip_range_vf": None if p.clip_range_vf is None else float(p.clip_range_vf),
        "value_loss": str(p.value_loss),
        "ent_coef": float(p.ent_coef),
        "vf_coef": float(p.vf_coef),
        "max_grad_norm": float(p.max_grad_norm),
        "gamma": float(p.gamma),
        "gae_lambda": float(p.gae_lambda),
        "normalize_advantage": bool(p.normalize_advantage),
        "entropy_lambda": float(cfg.model.entropy_lambda or 0.0),
    }


def dry_run(cfg: DictConfig) -> int:
    """Build the env spaces and the policy, print the architecture and the parameter count."""
    env = make_vec_env(cfg.env.name, num_envs=1, seed=int(cfg.seed))
    try:
        policy = build_policy(model_config(cfg), env.observation_space, env.action_space)
    finally:
        env.close()
    print(describe_policy(policy))
    n_params = count_parameters(policy)
    print(f"params: {n_params}")
    return n_params


class TrainingCallback(BaseCallback):
    """Progress bar, periodic atomic checkpoints at update boundaries, and a clean stop on SIGINT/SIGTERM.

    Checkpoints are taken when a rollout starts, i.e. right after an update, so a resumed run neither repeats
    nor skips an update. On a signal the rollout in progress is dropped and the run's step counter is rewound to
    the last update boundary before the checkpoint is written.
    """

    def __init__(self, run_dir: Path, total_timesteps: int, checkpoint_every: int):
        super().__init__()
        self.run_dir = run_dir
        self.total = total_timesteps
        self.checkpoint_every = checkpoint_every
        self.boundary_step = 0
        self.last_checkpoint_step = 0
        self.stop_signal: int | None = None
        self.bar: Any = None  # tqdm on a terminal, else LineProgress (one plain line every few seconds)
        self.games = 0  # whole games finished in this process

    def request_stop(self, signum: int, _frame: Any) -> None:
        if self.stop_signal is not None:  # second signal: give up on the clean stop
            raise KeyboardInterrupt
        self.stop_signal = signum
        print(f"\nreceived {signal.Signals(signum).name}: stopping at the next step, checkpointing", file=sys.stderr)

    def _on_training_start(self) -> None:
        self.boundary_step = self.last_checkpoint_step = self.num_timesteps
        self.bar = progress_bar(
            self.total, "train", "step", initial=self.num_timesteps, unit_scale=True, mininterval=1.0, smoothing=0.1
        )

    def _on_rollout_start(self) -> None:
        self.boundary_step = self.num_timesteps
        if self.num_timesteps - self.last_checkpoint_step >= self.checkpoint_every:
            self.save_checkpoint()

    def _on_step(self) -> bool:
        self.games += sum("episode" in info for info in self.locals.get("infos", ()))
        if self.bar is not None:
            self.bar.update(self.training_env.num_envs)
        return self.stop_signal is None

    def _on_rollout_end(self) -> None:
        buffer = self.model.ep_info_buffer
        if self.bar is not None and buffer:
            mean_return = sum(info["r"] for info in buffer) / len(buffer)
            self.bar.set_postfix(games=self.games, mean_return=f"{mean_return:.1f}", refresh=False)

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def save_checkpoint(self) -> Path:
        """Checkpoint the model as of the last update boundary."""
        self.model.num_timesteps = self.boundary_step
        path = save_model(self.model, checkpoint_path(self.run_dir, self.boundary_step))
        self.last_checkpoint_step = self.boundary_step
        return path


def _explicit_overrides() -> list[tuple[str, str]]:
    from hydra.core.hydra_config import HydraConfig

    pairs = []
    for item in HydraConfig.get().overrides.task:
        key, _, value = item.partition("=")
        pairs.append((key.lstrip("+~"), value))
    return pairs


def resume_config(cfg: DictConfig) -> tuple[DictConfig, Path, Path]:
    """The resumed run's own config (device and logger may change), its directory and newest checkpoint."""
    run_dir = Path(str(cfg.resume)).resolve()
    checkpoint = newest_checkpoint(run_dir)
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        raise ConfigError(f"run directory {run_dir} has no {CONFIG_FILE}: it was not written by train.py")
    saved = OmegaConf.load(saved_path)
    for key, value in _explicit_overrides():
        if key.split(".")[0].split("/")[0] in RESUME_MAY_CHANGE:
            continue
        if key in ("model", "env", "ppo"):
            key = f"{key}.name"
        if key == "experiment":
            continue
        old = OmegaConf.select(saved, key, default=None)
        new = OmegaConf.select(cfg, key, default=None)
        if str(old) != str(new):
            raise ConfigError(
                f"resume: {key}={value} differs from the run's {key}={old}; a resumed run keeps its own config "
                f"(only {', '.join(RESUME_MAY_CHANGE[1:])} may change)"
            )
    saved.device = cfg.device
    saved.logger = cfg.logger
    saved.checkpoint_every = cfg.checkpoint_every
    saved.resume = str(run_dir)
    return saved, run_dir, checkpoint


def wandb_identity(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Name, group and tags that let the runs of a sweep sit side by side on a dashboard."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    group = cfg.logger.wandb.group
    if group is None and str(hydra_cfg.mode) == "RunMode.MULTIRUN":
        group = Path(hydra_cfg.sweep.dir).name
    lam = float(cfg.model.entropy_lambda or 0.0)
    tags = [f"model:{cfg.model.name}", f"env:{cfg.env.name}", f"lambda:{lam:g}", f"seed:{cfg.seed}"]
    return {
        "name": f"{cfg.env.name}-{cfg.model.name}-lambda{lam:g}-seed{cfg.seed}",
        "group": group,
        "tags": [*tags, *cfg.logger.wandb.tags],
    }


def train(cfg: DictConfig, run_dir: Path) -> AttentionPPO | None:
    """Train (or resume) the run described by ``cfg`` in ``run_dir``; returns the model (None if already done)."""
    checkpoint = None
    if cfg.resume:
        cfg, run_dir, checkpoint = resume_config(cfg)
        if checkpoint.name == FINAL_MODEL:
            print(f"run {run_dir} already finished ({checkpoint}); nothing to resume")
            return None
    check_env_config(cfg)
    device = resolve_device(str(cfg.device))
    kwargs = ppo_kwargs(cfg)
    policy_kw = policy_kwargs(model_config(cfg))  # validates the model options before any env starts
    if not cfg.resume:
        atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))

    seed = int(cfg.seed)
    env = make_vec_env(cfg.env.name, num_envs=int(cfg.env.num_envs), seed=seed)
    if checkpoint is None:
        model = AttentionPPO(FLSPolicy, env, policy_kwargs=policy_kw, seed=seed, device=device, verbose=0, **kwargs)
        resume_step = None
    else:
        model = AttentionPPO.load(checkpoint, env=env, device=device)
        # Fresh episodes after a resume: envs cannot be restored, so use seeds no earlier segment used.
        model.set_random_seed(seed + model.num_timesteps)
        resume_step = model.num_timesteps
        print(f"resuming {run_dir} from {checkpoint.name} at step {resume_step}")

    wandb_run = None
    if cfg.logger.wandb.mode != "disabled":
        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        wandb_run = init_wandb(
            run_dir,
            mode=str(cfg.logger.wandb.mode),
            project=str(cfg.logger.wandb.project),
            entity=cfg.logger.wandb.entity,
            config=OmegaConf.to_container(cfg, resolve=True),
            run_id=run_id,
            **wandb_identity(cfg, run_dir),
        )
        if run_id is None:
            atomic_write_text(id_file, wandb_run.id)
    model.set_logger(
        make_logger(run_dir, tensorboard=bool(cfg.logger.tensorboard), wandb_run=wandb_run, resume_step=resume_step)
    )

    total = int(cfg.total_timesteps)
    callback = TrainingCallback(run_dir, total, int(cfg.checkpoint_every))
    previous = {s: signal.signal(s, callback.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.time()
    try:
        model.learn(
            total_timesteps=total - model.num_timesteps,
            callback=callback,
            log_interval=int(cfg.logger.log_interval),
            reset_num_timesteps=checkpoint is None,
        )
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        env.close()
    if callback.stop_signal is not None:
        path = callback.save_checkpoint()
        print(
            f"interrupted: checkpoint {path} at step {model.num_timesteps}; continue with resume={run_dir}",
            file=sys.stderr,
        )
        if wandb_run is not None:
            wandb_run.finish(exit_code=128 + callback.stop_signal)
        sys.exit(128 + callback.stop_signal)
    final = save_model(model, run_dir / FINAL_MODEL)
    elapsed = time.time() - started
    print(f"trained {model.num_timesteps} steps in {elapsed:.0f}s; final model {final}")
    if wandb_run is not None:
        wandb_run.finish()
    return model


def after_training(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """What the config asks for once the budget is reached: an evaluation (evaluate.py's protocol) and a
    saliency video, both written into the run directory as evaluate.py would. Returns the evaluation's
    statistics (None when none ran)."""
    from fls.evaluate import evaluate_episodes, evaluation_config, load

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


def training_objective(model: AttentionPPO | None, run_dir: Path) -> float:
    """The mean return of the last (up to) 100 whole training games: SB3's episode buffer, or for a run that was
    already finished, the last ``rollout/ep_rew_mean`` in progress.csv; NaN when no game finished."""
    if model is not None and model.ep_info_buffer:
        return float(sum(info["r"] for info in model.ep_info_buffer) / len(model.ep_info_buffer))
    import csv

    from fls.logging import PROGRESS_FILE

    last = float("nan")
    if (run_dir / PROGRESS_FILE).is_file():
        with open(run_dir / PROGRESS_FILE, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("rollout/ep_rew_mean"):  # empty in rows logged before the first game ended
                    last = float(row["rollout/ep_rew_mean"])
    return last


def main(cfg: DictConfig) -> float | None:
    """Hydra task of train.py. Returns the run's objective for sweepers (Optuna): the after-training evaluation's
    mean score when one runs, else the mean return of the last 100 training games (NaN when none finished)."""
    if cfg.dry_run:
        dry_run(cfg)
        return None
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(str(cfg.resume)).resolve() if cfg.resume else Path(HydraConfig.get().runtime.output_dir)
    print(f"run directory: {run_dir}", flush=True)  # in a sweep, where each job's files and logs go
    model = train(cfg, run_dir)
    stats = after_training(cfg, run_dir)
    objective = float(stats["mean"]) if stats else training_objective(model, run_dir)
    print(f"objective: {objective:g} ({'evaluation mean' if stats else 'mean return of the last 100 training games'})")
    return objective
