"""Does training learn? Sparse FLS on Breakout for 1M frames (250k agent steps) on the CPU, against a random policy.

    python bench/learning_check.py [--frames 1000000] [--model sparse_fls] [--game Breakout] [--seed 1]

Slow (about half an hour on a 2-core CPU; not run in CI). Trains through train.py (paper PPO settings, 8 envs),
takes the mean unclipped return of the last 100 training games (SB3's rollout/ep_rew_mean at the end) and plays
100 whole games with uniformly random actions on the same env stack. Writes bench/results/learning_check.json.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, write_json  # noqa: E402
from fls.envs import make_vec_env  # noqa: E402


def random_policy_return(game: str, games: int, seed: int) -> float:
    """Mean unclipped return of ``games`` whole games under uniformly random actions."""
    env = make_vec_env(game, num_envs=8, seed=seed, clip_rewards=False)
    env.reset()
    rng = np.random.default_rng(seed)
    returns: list[float] = []
    while len(returns) < games:
        _, _, _, infos = env.step(rng.integers(0, env.action_space.n, env.num_envs))
        returns += [info["episode"]["r"] for info in infos if "episode" in info]
    env.close()
    return float(np.mean(returns[:games]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="raw frames (4 per agent step)")
    parser.add_argument("--model", default="sparse_fls")
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    steps = args.frames // 4
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        command = [
            sys.executable,
            str(ROOT / "train.py"),
            f"model={args.model}",
            f"env={args.game}",
            f"total_timesteps={steps}",
            f"seed={args.seed}",
            "logger.wandb.mode=disabled",
            f"hydra.run.dir={run_dir}",
        ]
        subprocess.run(command, check=True, cwd=ROOT)
        with open(run_dir / "progress.csv", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("rollout/ep_rew_mean")]
    trained = float(rows[-1]["rollout/ep_rew_mean"])
    random_return = random_policy_return(args.game, 100, args.seed)
    verdict = "learns" if trained > random_return else "does NOT beat random"
    line = (
        f"| {args.model} | {args.game} | {args.frames:,} frames | {trained:.1f} | {random_return:.1f} | "
        f"{trained / max(random_return, 1e-9):.1f}x | {verdict} |"
    )
    payload = {
        "benchmark": "learning_check",
        "machine": machine(),
        "settings": vars(args),
        "trained_last100_mean": trained,
        "random_mean": random_return,
        "markdown": line,
    }
    path = write_json("learning_check", payload, args.out)
    print("| model | game | budget | last-100 mean return | random policy | ratio | verdict |")
    print("|---|---|---|---|---|---|---|")
    print(line)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
