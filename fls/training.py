"""Training: config -> env -> policy -> PPO (+ attention entropy) -> callbacks -> run directory."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.callbacks import BaseCallback

from fls.envs import get_game, make_vec_env
from fls.errors import ConfigError, FlsError
from fls.logging import init_wandb, make_logger
from fls.model_files import allow_pickle_flag
from fls.models import build_policy, count_parameters, describe_policy, policy_kwargs
from fls.models.policy import FLSPolicy
from fls.ppo import AttentionPPO, LinearDecay, NonFiniteError
from fls.progress import progress_bar
from fls.resume import restore_checkpoint
from fls.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    FINAL_MODEL,
    atomic_write_text,
    checkpoint_path,
    latest_model,
    save_model,
)
from fls.runtime import StopSignals, resolve_device
from fls.sweep import in_sweep_worker

# Exit status of a run stopped by a NaN or infinity (1 is a crash, 2 a refused command).
EXIT_NON_FINITE = 3

# Settings a resumed run may change; every other override must agree with the run's own config.
RESUME_MAY_CHANGE = ("device", "logger", "checkpoint_every", "env.num_threads")
# Overrides that say how to run this command, not what the run is.
RESUME_NOT_SETTINGS = ("resume", "hydra", "dry_run", "allow_pickle")


def _may_change(key: str) -> bool:
    """Whether a resumed run may change ``key`` (a setting in RESUME_MAY_CHANGE or inside one)."""
    return any(key == name or key.startswith(f"{name}.") for name in RESUME_MAY_CHANGE)


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
        "compile": bool(p.get("compile", False)),
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

    def __init__(self, run_dir: Path, total_timesteps: int, checkpoint_every: int, stop: StopSignals):
        super().__init__()
        self.run_dir = run_dir
        self.total = total_timesteps
        self.checkpoint_every = checkpoint_every
        self.boundary_step = 0
        self.last_checkpoint_step = 0
        self.stop = stop
        self.bar: Any = None  # tqdm on a terminal, else LineProgress (one plain line every few seconds)
        self.games = 0  # whole games finished in this process

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
        return not self.stop.requested

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
        self.model.check_parameters_finite()  # never let a NaN network become the newest checkpoint
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


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def same_setting(old: Any, new: Any) -> bool:
    """Whether two config values mean the same (0 and 0.0, 1e6 and 1000000 do; True and 1 do not)."""
    old, new = _plain(old), _plain(new)
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(same_setting(old[k], new[k]) for k in old)
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return len(old) == len(new) and all(same_setting(a, b) for a, b in zip(old, new, strict=True))
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    numbers = [v for v in (old, new) if isinstance(v, int | float)]
    if len(numbers) == 2:
        return old == new
    if len(numbers) == 1 and isinstance(old, str) != isinstance(new, str):  # "1e6" read as text on one side
        try:
            return float(old) == float(new)
        except ValueError:
            return False
    return old == new


def _keys_set_by(key: str, value: str) -> list[str]:
    """The settings an override fixes: a group choice names its config, an experiment sets everything it lists."""
    from fls.cli import CONFIG_DIR

    if key in ("model", "env", "ppo"):
        return [f"{key}.name"]
    if key != "experiment":
        return [key]
    path = CONFIG_DIR / "experiment" / f"{value}.yaml"
    if not path.is_file():
        return []
    experiment = OmegaConf.load(path)
    keys = []
    for entry in experiment.get("defaults", []):
        for group in entry if isinstance(entry, dict) else {}:
            name = str(group).replace("override", "").strip().strip("/")
            if name in ("model", "env", "ppo"):
                keys.append(f"{name}.name")

    def leaves(node: Any, prefix: str) -> None:
        for child, sub in node.items():
            if child in ("defaults", "hydra") and not prefix:
                continue
            dotted = f"{prefix}{child}"
            if isinstance(sub, dict) and sub:
                leaves(sub, dotted + ".")
            else:
                keys.append(dotted)

    leaves(OmegaConf.to_container(experiment, resolve=False), "")
    return keys


def _restore(cfg: DictConfig, saved: DictConfig) -> DictConfig:
    """The run's own config, with settings added since it was made taken from today's defaults."""
    base = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    if "model" in saved:
        base.model = saved.model  # one model's options, not today's default model's merged into them
    return OmegaConf.merge(base, saved)


def resume_config(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """The resumed run's own config and its directory.

    Every setting comes from the run's config.yaml; an override given again on the command line must agree with
    it (after type conversion), except those in RESUME_MAY_CHANGE, which replace the run's.
    """
    run_dir = Path(str(cfg.resume)).expanduser().resolve()
    checkpoint = latest_model(run_dir)  # None: stopped before its first checkpoint, resumed from step 0
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        if checkpoint is None:
            raise ConfigError(
                f"run directory {run_dir} has no checkpoint (looked for {FINAL_MODEL} and {CHECKPOINT_DIR}/step_*.zip) "
                f"and no {CONFIG_FILE}: it is not a run written by train.py"
            )
        raise ConfigError(f"run directory {run_dir} has no {CONFIG_FILE}: it was not written by train.py")
    try:
        saved = OmegaConf.load(saved_path)
    except Exception as error:  # yaml and OmegaConf errors alike: the file is damaged
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{saved_path} is not readable YAML ({first_line}); restore it from .hydra/") from None
    resumed = _restore(cfg, saved)
    for key, value in _explicit_overrides():
        root = key.split(".")[0].split("/")[0]
        if root in RESUME_NOT_SETTINGS:
            continue
        if _may_change(key.split("/")[0]):
            OmegaConf.update(resumed, key, _plain(OmegaConf.select(cfg, key)), merge=False, force_add=True)
            continue
        for setting in _keys_set_by(key, value):
            if _may_change(setting):
                OmegaConf.update(resumed, setting, _plain(OmegaConf.select(cfg, setting)), merge=False)
                continue
            old = OmegaConf.select(saved, setting, default=None)
            new = OmegaConf.select(cfg, setting, default=None)
            if not same_setting(old, new):
                given = f"{key}={value}" if setting in (key, f"{key}.name") else f"{key}={value} (sets {setting}={new})"
                raise ConfigError(
                    f"resume: {given} differs from the run's {setting}={_plain(old)}; a resumed run keeps its own "
                    f"settings (only {', '.join(RESUME_MAY_CHANGE)} may change)"
                )
    resumed.resume = str(run_dir)
    resumed.dry_run = bool(cfg.dry_run)  # how to run this command, not a setting of the run
    resumed.allow_pickle = allow_pickle_flag(cfg)
    return resumed, run_dir


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


def check_config(cfg: DictConfig) -> None:
    """Every check that can refuse a run, done before anything is written."""
    check_env_config(cfg)
    resolve_device(str(cfg.device))
    ppo_kwargs(cfg)
    policy_kwargs(model_config(cfg))
    get_game(str(cfg.env.name))


def check_fresh(cfg: DictConfig, run_dir: Path) -> None:
    """A fresh run never writes into another run's directory (an explicit hydra.run.dir may name one)."""
    if cfg.resume:
        return
    if any((run_dir / name).exists() for name in (CONFIG_FILE, CHECKPOINT_DIR, FINAL_MODEL, "progress.csv")):
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with resume={run_dir} or choose another hydra.run.dir"
        )


def record_invocation(cfg: DictConfig, run_dir: Path, resumed_from: Path | None) -> None:
    """Hydra's record of a fresh run (.hydra/config.yaml, hydra.yaml, overrides.yaml), written once the run is
    accepted; a resume appends one line to .hydra/resumes.jsonl instead (checkpoint null: resumed from step 0)."""
    import json
    import socket
    from datetime import datetime

    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    record_dir = run_dir / ".hydra"
    if not cfg.resume:
        atomic_write_text(record_dir / "config.yaml", OmegaConf.to_yaml(cfg))
        atomic_write_text(record_dir / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
        atomic_write_text(record_dir / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))
        return
    line = {
        "time": datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "overrides": list(hydra_cfg.overrides.task),
        "checkpoint": None if resumed_from is None else resumed_from.name,
    }
    record_dir.mkdir(exist_ok=True)
    with open(record_dir / "resumes.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n")


class TrainingStopped(FlsError):
    """Training ended before its budget: interrupted by a signal (checkpoint written; exit code 128 + signal) or
    stopped by a NaN or infinity (the newest checkpoint is the last good one; exit code 3)."""

    def __init__(self, message: str, exit_code: int, *, interrupted: bool) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.interrupted = interrupted


def new_model(cfg: DictConfig, env: Any) -> AttentionPPO:
    """The run's model as its config describes it (a resume then restores what training learned into it)."""
    return AttentionPPO(
        FLSPolicy,
        env,
        policy_kwargs=policy_kwargs(model_config(cfg)),
        seed=int(cfg.seed),
        device=resolve_device(str(cfg.device)),
        verbose=0,
        **ppo_kwargs(cfg),
    )


def start_wandb(cfg: DictConfig, run_dir: Path) -> Any:
    """The run's W&B run (continued on a resume), None when W&B is disabled."""
    if cfg.logger.wandb.mode == "disabled":
        return None
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
    return wandb_run


def train(cfg: DictConfig, run_dir: Path) -> AttentionPPO | None:
    """Train (or resume) the run described by ``cfg`` in ``run_dir``; returns the model (None if already done).

    The caller holds the run directory's lock; a resume continues from the newest checkpoint found under it (from
    step 0 when there is none yet). Nothing is written before the model is built and the checkpoint is loaded and
    checked: a refused run or resume leaves the run directory as it was.
    """
    check_config(cfg)
    checkpoint = latest_model(run_dir) if cfg.resume else None
    if checkpoint is not None and checkpoint.name == FINAL_MODEL:
        print(f"run {run_dir} already finished ({checkpoint}); nothing to resume")
        return None
    seed = int(cfg.seed)
    env = make_vec_env(
        cfg.env.name,
        num_envs=int(cfg.env.num_envs),
        seed=seed,
        num_threads=int(cfg.env.num_threads),
        repeat_action_probability=float(cfg.env.repeat_action_probability),
    )
    try:
        model = new_model(cfg, env)
        if checkpoint is not None:
            restore_checkpoint(model, checkpoint, allow_pickle=allow_pickle_flag(cfg))
            # Fresh episodes after a resume: envs cannot be restored, so use seeds no earlier segment used.
            model.set_random_seed(seed + model.num_timesteps)
        # Accepted: from here on the run directory is written.
        if cfg.resume:
            where = f"{checkpoint.name} at step {model.num_timesteps}" if checkpoint else "step 0 (no checkpoint yet)"
            print(f"resuming {run_dir} from {where}")
        else:
            atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        record_invocation(cfg, run_dir, checkpoint)
        wandb_run = start_wandb(cfg, run_dir)
        resume_step = model.num_timesteps if cfg.resume else None
        model.set_logger(
            make_logger(run_dir, tensorboard=bool(cfg.logger.tensorboard), wandb_run=wandb_run, resume_step=resume_step)
        )
        model.log_last_update()  # the update before the checkpoint: SB3 logs it with the next rollout's row
    except BaseException:
        env.close()
        raise

    total = int(cfg.total_timesteps)
    # in a worker of a parallel sweep the sweep's process, not the job, stops everything on a second signal
    stop = StopSignals("stopping at the next step, checkpointing", repeat_stops=not in_sweep_worker())
    callback = TrainingCallback(run_dir, total, int(cfg.checkpoint_every), stop)
    started = time.time()
    try:
        with stop:
            model.learn(
                total_timesteps=total - model.num_timesteps,
                callback=callback,
                log_interval=int(cfg.logger.log_interval),
                reset_num_timesteps=checkpoint is None,
            )
            if stop.requested:  # still under the handlers: a signal passed on late cannot cut the checkpoint short
                path = callback.save_checkpoint()
    except NonFiniteError as error:
        # The parameters are checked after every update and before every checkpoint: nothing non-finite was saved.
        if wandb_run is not None:
            wandb_run.finish(exit_code=EXIT_NON_FINITE)
        raise TrainingStopped(str(error), EXIT_NON_FINITE, interrupted=False) from None
    finally:
        env.close()
    if stop.requested:
        if wandb_run is not None:
            wandb_run.finish(exit_code=stop.exit_code)
        raise TrainingStopped(
            f"interrupted: checkpoint {path} at step {model.num_timesteps}; continue with resume={run_dir}",
            stop.exit_code,
            interrupted=True,
        )
    final = save_model(model, run_dir / FINAL_MODEL)
    elapsed = time.time() - started
    print(f"trained {model.num_timesteps} steps in {elapsed:.0f}s; final model {final}")
    if wandb_run is not None:
        wandb_run.finish()
    return model


def main(cfg: DictConfig) -> float | None:
    """Hydra task of train.py: validate, then train and run the after-training steps holding the run's lock.

    Returns the run's objective for sweepers (Optuna): the after-training evaluation's mean score when one runs,
    else the mean return of the last 100 training games (NaN when none finished); see fls/objective.py."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fls.locks import LOCK_FILE, hold, remove_orphans
    from fls.sweep import job_stopped, skip_if_stopped
    from fls.tasks.after_training import after_training

    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    job = int(hydra_cfg.job.get("num", 0) or 0)
    if cfg.resume:
        cfg, run_dir = resume_config(cfg)
    else:
        run_dir = Path(hydra_cfg.runtime.output_dir)
    if cfg.dry_run:
        dry_run(cfg)
        return None
    if skip_if_stopped(sweep_dir, job, run_dir):
        return math.nan
    check_config(cfg)
    check_fresh(cfg, run_dir)
    print(f"run directory: {run_dir}", flush=True)  # in a sweep, where each job's files and logs go
    with hold(run_dir / LOCK_FILE, f"run {run_dir}"):
        check_fresh(cfg, run_dir)  # again under the lock: another launch may have started it meanwhile
        for folder in (run_dir, run_dir / CHECKPOINT_DIR):
            remove_orphans(folder)
        try:
            model = train(cfg, run_dir)
        except TrainingStopped as stopped:  # in a sweep, one job's end does not end the others (fls/sweep.py)
            if sweep_dir is None:
                raise  # a single run (train.py, fls.train): the caller reports it (one line, 128 + signal or 3)
            reason = str(stopped) if stopped.interrupted else f"error: {stopped}"
            return job_stopped(sweep_dir, job, run_dir, reason, stopped.exit_code, stopped.interrupted)
        stats = after_training(cfg, run_dir, model)  # the tasks use the trained model in memory
    return report_objective(model, run_dir, stats)


def report_objective(model: AttentionPPO | None, run_dir: Path, stats: dict[str, Any] | None) -> float:
    """Print, record (``objective.json``) and return the run's objective (fls/objective.py)."""
    from fls import objective

    if stats:
        result = objective.from_evaluation(stats)
    elif model is not None and model.ep_info_buffer:
        result = objective.from_training_window([info["r"] for info in model.ep_info_buffer])
    else:  # a run that had already finished: its last logged window
        from fls.logging import PROGRESS_FILE

        result = objective.from_progress(run_dir / PROGRESS_FILE)
    objective.write(run_dir, result)
    print(f"objective: {result.describe()}", flush=True)
    return result.value
