"""Does fls learn as fast as the stack a user would otherwise pick? A learning curve at equal budget.

    python bench/learning_check.py [--frames 1000000] [--game Breakout] [--seeds 1] [--systems ...] [--jobs 3]

Trains, on the same game, budget and seeds, with the paper's PPO hyperparameters (8 envs x 128 steps, 4 epochs of
4 minibatches, Adam 2.5e-4 linearly to 0 with eps 1e-5, clip 0.1, entropy 0.01, value 0.5, grad-norm 0.5,
gamma 0.99, GAE 0.95):

* ``fls_nature_cnn``  - ``train.py model=nature_cnn`` (fls's native env, baselines' value loss);
* ``fls_sparse_fls``  - ``train.py model=sparse_fls``;
* ``sb3_cnn``         - SB3 ``PPO("CnnPolicy")`` on ``make_atari_env`` + ``VecFrameStack(4)`` (clip_range_vf 0.1,
  SB3's own value loss), the rl-zoo3-style pipeline;

and plays 100 whole games with uniformly random actions. Every system's final model is then scored with one
protocol, fls's ``evaluate.py`` (it reads SB3 zips, so SB3's model plays exactly the episodes fls's do):
``--eval-episodes`` (512) seeded episodes with sampled actions, unclipped game score. Reported per system: that
evaluation's mean, std, 95% CI of the mean and episode count — the headline — beside the mean unclipped return of
the last 100 training games (SB3's ``rollout/ep_rew_mean`` at the end of training; a window over games played by
many successive policies, which one outlier game moves by points), as a markdown table and a plot of the window
against frames (one line per system, mean over seeds). Slow (about an hour and a half of a 2-core CPU for all three
systems at 1M frames, plus a few minutes per evaluation); not run in CI. Every run keeps its directory under
``bench/results/learning/<system>_seed<seed>/`` (the fls ones are ordinary run directories, usable by evaluate.py),
and a finished run is not trained again, so an interrupted check continues where it stopped (an unfinished run is
started over). ``--report-only`` tabulates runs that are still going or were cut short, comparing the systems at
the frames every run has reached (and evaluates only the runs that finished). An interrupted evaluation continues
its records. Writes ``bench/results/learning_check.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS_DIR, machine, write_json  # noqa: E402

SYSTEMS = {
    "fls_nature_cnn": "fls nature_cnn",
    "fls_sparse_fls": "fls sparse_fls",
    "sb3_cnn": 'SB3 PPO("CnnPolicy") + make_atari_env',
}
PROGRESS = "progress.csv"  # columns: time/total_timesteps, rollout/ep_rew_mean (both pipelines)
STEPS = "time/total_timesteps"
RETURN = "rollout/ep_rew_mean"


def random_policy_return(game: str, games: int, seed: int) -> float:
    """Mean unclipped return of ``games`` whole games under uniformly random actions (fls's env stack)."""
    from fls.envs import make_vec_env

    env = make_vec_env(game, num_envs=8, seed=seed, clip_rewards=False)
    env.reset()
    rng = np.random.default_rng(seed)
    returns: list[float] = []
    while len(returns) < games:
        _, _, _, infos = env.step(rng.integers(0, env.action_space.n, env.num_envs))
        returns += [info["episode"]["r"] for info in infos if "episode" in info]
    env.close()
    return float(np.mean(returns[:games]))


def train_fls(model: str, game: str, steps: int, seed: int, run_dir: Path, log: Path) -> None:
    """One fls run through train.py into ``run_dir`` (W&B off, TensorBoard off)."""
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"model={model}",
        f"env={game}",
        f"total_timesteps={steps}",
        f"seed={seed}",
        f"checkpoint_every={max(steps // 4, 1)}",
        "logger.wandb.mode=disabled",
        "logger.tensorboard=false",
        f"hydra.run.dir={run_dir}",
    ]
    with open(log, "w") as handle:
        subprocess.run(command, check=True, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)


def train_sb3(game: str, steps: int, seed: int, run_dir: Path, log: Path) -> None:
    """One SB3 run in a child process (its own torch threads), writing the same progress.csv columns."""
    with open(log, "w") as handle:
        subprocess.run(
            [sys.executable, __file__, "--sb3-child", str(run_dir), "--game", game, "--seed", str(seed)]
            + ["--frames", str(steps * 4)],
            check=True,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def sb3_child(run_dir: Path, game: str, steps: int, seed: int) -> None:
    """SB3 PPO('CnnPolicy') on make_atari_env + VecFrameStack with the paper's hyperparameters."""
    import ale_py
    import gymnasium
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gymnasium.register_envs(ale_py)
    env = VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=8, seed=seed), n_stack=4)
    progress = open(run_dir / PROGRESS, "w")  # appended as training goes, so a cut-short run still has its curve
    progress.write(f"{STEPS},{RETURN}\n")

    class Curve(BaseCallback):
        def _on_rollout_end(self) -> None:
            buffer = self.model.ep_info_buffer
            if buffer:
                progress.write(f"{self.num_timesteps},{float(np.mean([info['r'] for info in buffer]))}\n")
                progress.flush()

        def _on_step(self) -> bool:
            return True

    model = PPO(
        "CnnPolicy",
        env,
        n_steps=128,
        batch_size=256,
        n_epochs=4,
        learning_rate=lambda progress: 2.5e-4 * progress,
        clip_range=0.1,
        clip_range_vf=0.1,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        gamma=0.99,
        gae_lambda=0.95,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=steps, callback=Curve(), progress_bar=False)
    progress.close()
    model.save(run_dir / "final_model.zip")
    env.close()


def read_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(agent steps, mean return of the last 100 games) of a run's progress.csv, rows with a return only."""
    with open(run_dir / PROGRESS, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get(RETURN)]
    return np.array([float(r[STEPS]) for r in rows]), np.array([float(r[RETURN]) for r in rows])


EVAL_DIR = "eval_final_model"  # inside each run directory: the evaluation's records and summary.json


def evaluate(system: str, game: str, run_dir: Path, episodes: int, log: Path) -> dict | None:
    """Score a finished run's final model with fls's evaluate.py (the same protocol for every system); returns its
    summary.json (mean, std, sem, ci95, episodes, ...). Resumable: evaluate.py continues the records it finds."""
    source = [f"run={run_dir}"] if system.startswith("fls_") else [f"checkpoint={run_dir / 'final_model.zip'}"]
    source += [] if system.startswith("fls_") else [f"env={game}"]
    command = [
        sys.executable,
        str(ROOT / "evaluate.py"),
        *source,
        f"eval.episodes={episodes}",
        f"eval.out={run_dir / EVAL_DIR}",
        "device=cpu",
        "logger.wandb.mode=disabled",
    ]
    print(f"{system}: evaluating the final model on {episodes} episodes (log {log})", flush=True)
    with open(log, "a") as handle:
        subprocess.run(command, check=True, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    return json.loads((run_dir / EVAL_DIR / "summary.json").read_text())


def finished(run_dir: Path) -> bool:
    return (run_dir / "final_model.zip").is_file() and (run_dir / PROGRESS).is_file()


def run_one(system: str, game: str, steps: int, seed: int) -> Path:
    """Train one system/seed unless a finished run exists; returns its directory."""
    run_dir = RESULTS_DIR / "learning" / f"{system}_seed{seed}"
    if finished(run_dir):
        print(f"{system} seed {seed}: finished run found in {run_dir}", flush=True)
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run starts over
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if system == "sb3_cnn":
        run_dir.mkdir()
    log = run_dir.parent / f"{system}_seed{seed}.log"
    started = time.time()
    print(f"{system} seed {seed}: training {steps} agent steps -> {run_dir} (log {log})", flush=True)
    if system == "sb3_cnn":
        train_sb3(game, steps, seed, run_dir, log)
    else:
        train_fls(system.removeprefix("fls_"), game, steps, seed, run_dir, log)
    print(f"{system} seed {seed}: done in {time.time() - started:.0f} s", flush=True)
    return run_dir


def plot(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], random_return: float, game: str, path: Path) -> None:
    """Return vs frames, one line per system (mean over seeds on a common grid), random policy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for system, runs in curves.items():
        end = min(steps[-1] for steps, _ in runs)
        grid = np.linspace(max(steps[0] for steps, _ in runs), end, 200)
        values = np.array([np.interp(grid, steps, returns) for steps, returns in runs])
        ax.plot(grid * 4 / 1e6, values.mean(axis=0), label=f"{SYSTEMS[system]} ({len(runs)} seed(s))")
        if len(runs) > 1:
            ax.fill_between(grid * 4 / 1e6, values.min(axis=0), values.max(axis=0), alpha=0.2)
    ax.axhline(random_return, color="grey", linestyle="--", label="random policy")
    ax.set_xlabel("frames (millions)")
    ax.set_ylabel("mean return of the last 100 training games")
    ax.set_title(f"{game}: PPO, paper hyperparameters (training window of 100 games)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def table(results: list[dict], curves: dict, random_return: float, game: str, budget: str) -> str:
    """The markdown table: each system's evaluated score (the headline) beside its training window."""
    lines = [
        f"{game}, {budget}. Evaluation: the final model, fls's protocol (seeded episodes, sampled actions, unclipped "
        "score; mean ± std over episodes, 95% CI of the mean); window: mean return of the last 100 training games.",
        "",
        "| system | evaluated score | 95% CI | episodes | last 100 training games | seeds |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for system in curves:
        mine = [r for r in results if r["system"] == system]
        window = np.mean([r["last100_at_common_frames"] for r in mine])
        scored = [r for r in mine if r.get("eval_mean") is not None]
        if scored and len(scored) == len(mine):
            # pooled over seeds' episodes when several seeds (each seed plays the same number of episodes)
            mean = float(np.mean([r["eval_mean"] for r in scored]))
            episodes = sum(int(r["eval_episodes"]) for r in scored)
            std = float(np.sqrt(np.mean([r["eval_std"] ** 2 + (r["eval_mean"] - mean) ** 2 for r in scored])))
            sem = std / np.sqrt(episodes)
            score, ci = f"**{mean:.2f}** ± {std:.2f}", f"{mean - 1.96 * sem:.2f} – {mean + 1.96 * sem:.2f}"
        else:
            score, ci, episodes = "not evaluated", "", ""
        lines.append(f"| {SYSTEMS[system]} | {score} | {ci} | {episodes} | {window:.2f} | {len(mine)} |")
    lines.append(f"| random policy (100 games) | {random_return:.2f} | | 100 | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="raw frames (4 per agent step)")
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--seeds", default="1", help="comma-separated training seeds")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--jobs", type=int, default=len(SYSTEMS), help="runs trained (and evaluated) at the same time")
    parser.add_argument(
        "--eval-episodes", type=int, default=512, help="episodes of each final model's evaluation (0: none)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: tabulate and plot the runs as far as they got (compared at the frames all reached)",
    )
    parser.add_argument("--sb3-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.frames // 4
    if args.sb3_child:
        sb3_child(Path(args.sb3_child), args.game, steps, int(args.seeds))
        return
    systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)} (valid: {', '.join(SYSTEMS)})")
    seeds = [int(s) for s in args.seeds.split(",") if s]

    jobs = [(system, seed) for seed in seeds for system in systems]
    if args.report_only:
        run_dirs = [RESULTS_DIR / "learning" / f"{system}_seed{seed}" for system, seed in jobs]
        missing = [str(d) for d in run_dirs if not (d / PROGRESS).is_file()]
        if missing:
            parser.error(f"no progress.csv in {', '.join(missing)}")
    else:
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            run_dirs = list(pool.map(lambda job: run_one(job[0], args.game, steps, job[1]), jobs))
    random_return = random_policy_return(args.game, 100, seeds[0])
    evaluations: list[dict | None] = [None] * len(jobs)
    if args.eval_episodes > 0:
        todo = [i for i, run_dir in enumerate(run_dirs) if finished(run_dir)]

        def score(i: int) -> dict | None:
            system, seed = jobs[i]
            log = run_dirs[i].parent / f"{system}_seed{seed}.eval.log"
            return evaluate(system, args.game, run_dirs[i], args.eval_episodes, log)

        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            for i, summary in zip(todo, pool.map(score, todo), strict=True):
                evaluations[i] = summary

    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for (system, _), run_dir in zip(jobs, run_dirs, strict=True):
        curves.setdefault(system, []).append(read_curve(run_dir))
    # Compare at equal budget: the frames every run has reached (all of the budget once every run finished).
    common = min(float(steps_seen[-1]) for runs in curves.values() for steps_seen, _ in runs)
    results = []
    for (system, seed), run_dir, summary in zip(jobs, run_dirs, evaluations, strict=True):
        steps_seen, returns = read_curve(run_dir)
        at_common = float(returns[np.searchsorted(steps_seen, common, side="right") - 1])
        evaluated = {}
        if summary is not None:
            keys = ("episodes", "mean", "std", "sem", "ci95", "median", "min", "max", "seed")
            evaluated = {f"eval_{key}": summary.get(key) for key in keys}
        results.append(
            {
                "system": system,
                "seed": seed,
                "run_dir": str(run_dir),
                "finished": finished(run_dir),
                "frames_trained": int(steps_seen[-1]) * 4,
                "last100_at_common_frames": at_common,
                "last100_at_end": float(returns[-1]),
                **evaluated,
            }
        )
    complete = all(r["finished"] for r in results)
    budget = f"{args.frames:,} frames" if complete else f"{int(common) * 4:,} of {args.frames:,} frames (cut short)"
    markdown = table(results, curves, random_return, args.game, budget)
    plot(curves, random_return, args.game, RESULTS_DIR / "learning_check.png")
    (RESULTS_DIR / "learning_check.md").write_text(markdown + "\n")
    payload = {
        "benchmark": "learning_check",
        "machine": machine(),
        "settings": {
            "frames": args.frames,
            "game": args.game,
            "seeds": seeds,
            "systems": systems,
            "eval_episodes": args.eval_episodes,
        },
        "complete": complete,
        "common_frames": int(common) * 4,
        "results": results,
        "random_mean": random_return,
        "markdown": markdown,
        "environment": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
    }
    path = write_json("learning_check", payload)
    print(markdown)
    print(f"wrote {path}, {RESULTS_DIR / 'learning_check.png'}")


if __name__ == "__main__":
    main()
