"""Training throughput: fls (native vector env + AttentionPPO) against the pipeline a user would otherwise write
(SB3 PPO + make_atari_env + VecFrameStack), same hyperparameters, interleaved in one run on the same machine.

    python bench/train_throughput.py [--game Breakout] [--updates 3] [--rounds 2] [--device auto] [--num-envs 8]
        [--stacks fls sb3] [--compile]

--compile adds fls with ppo.compile=true (torch.compile of the policy's forward and the PPO loss) beside eager fls and
reports the compiled/eager ratio (the first, compiling, update is the untimed warm-up).

Writes bench/results/train_throughput.json and prints markdown rows for the README. Agent steps per second
include everything PPO does (rollout + update); rollout and update time are reported apart to show where
the time goes, with the raw env-stepping rate of both env stacks under random actions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_atari_env  # noqa: E402
from stable_baselines3.common.vec_env import VecFrameStack  # noqa: E402

from bench.common import machine, write_json  # noqa: E402
from fls.envs import make_vec_env  # noqa: E402
from fls.models import policy_kwargs  # noqa: E402
from fls.models.policy import FLSPolicy  # noqa: E402
from fls.ppo import AttentionPPO, LinearDecay  # noqa: E402
from fls.tables import markdown_table  # noqa: E402

NUM_ENVS = 8
N_STEPS = 128
PPO_SETTINGS = dict(
    n_steps=N_STEPS,
    batch_size=256,
    n_epochs=4,
    learning_rate=LinearDecay(2.5e-4),
    clip_range=0.1,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    gamma=0.99,
    gae_lambda=0.95,
    verbose=0,
)


class Timer(BaseCallback):
    """Wall time of each rollout and each update."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[str, float]] = []

    def _on_rollout_start(self) -> None:
        self.marks.append(("rollout_start", time.perf_counter()))

    def _on_rollout_end(self) -> None:
        self.marks.append(("rollout_end", time.perf_counter()))

    def _on_step(self) -> bool:
        return True

    def split(self, warmup: int) -> tuple[float, float, int]:
        """(rollout seconds, update seconds, updates) over complete iterations after ``warmup``."""
        starts = [t for k, t in self.marks if k == "rollout_start"]
        ends = [t for k, t in self.marks if k == "rollout_end"]
        rollout = sum(e - s for s, e in zip(starts[warmup:], ends[warmup:], strict=False))
        update = sum(s2 - e for e, s2 in zip(ends[warmup:], starts[warmup + 1 :], strict=False))
        return rollout, update, len(starts) - 1 - warmup


def sb3_env(game: str, seed: int, num_envs: int):
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    return VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=num_envs, seed=seed), n_stack=4)


def run_once(
    stack: str, model_name: str, game: str, updates: int, device: str, seed: int, num_envs: int = NUM_ENVS
) -> dict:
    """One training run of ``1 + updates + 1`` iterations; the first is warm-up, the last closes the timing.
    ``stack``: "fls", "fls_compiled" (ppo.compile=true) or "sb3"."""
    if stack.startswith("fls"):
        env = make_vec_env(game, num_envs=num_envs, seed=seed)
        model = AttentionPPO(
            FLSPolicy,
            env,
            policy_kwargs=policy_kwargs({"name": model_name}),
            clip_range_vf=0.1,
            device=device,
            seed=seed,
            compile=stack == "fls_compiled",
            **PPO_SETTINGS,
        )
    else:
        env = sb3_env(game, seed, num_envs)
        extra = (
            {}
            if model_name == "nature_cnn"
            else {"policy_kwargs": {**policy_kwargs({"name": model_name}), "ortho_init": True}}
        )
        extra.get("policy_kwargs", {}).pop("optimizer_kwargs", None)
        model = PPO("CnnPolicy", env, device=device, seed=seed, clip_range_vf=0.1, **extra, **PPO_SETTINGS)
    timer = Timer()
    model.learn(total_timesteps=(updates + 2) * num_envs * N_STEPS, callback=timer)
    env.close()
    rollout, update, n = timer.split(warmup=1)
    n = min(n, updates)
    steps = n * num_envs * N_STEPS
    return {
        "stack": stack,
        "model": model_name,
        "steps_per_s": steps / (rollout + update),
        "rollout_s_per_update": rollout / n,
        "update_s_per_update": update / n,
    }


def env_rate(stack: str, game: str, steps: int, seed: int = 0, num_envs: int = NUM_ENVS) -> float:
    """Agent steps per second of the env stack alone, random actions."""
    env = make_vec_env(game, num_envs=num_envs, seed=seed) if stack == "fls" else sb3_env(game, seed, num_envs)
    env.reset()
    rng = np.random.default_rng(seed)
    n_actions = env.action_space.n
    start = time.perf_counter()
    for _ in range(steps // num_envs):
        env.step(rng.integers(0, n_actions, num_envs))
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--models", nargs="+", default=["nature_cnn", "sparse_fls"])
    parser.add_argument("--updates", type=int, default=3, help="timed updates per run (1024 agent steps each)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every configuration")
    parser.add_argument("--device", default="auto", help="auto: the CPU, and CUDA when present; cpu; cuda")
    parser.add_argument("--num-envs", type=int, default=NUM_ENVS, help="envs stepped together (the paper: 8)")
    parser.add_argument("--stacks", nargs="+", default=["fls", "sb3"], choices=["fls", "sb3"])
    parser.add_argument("--compile", action="store_true", help="also fls with ppo.compile=true: compiled/eager ratio")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch

    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    stacks = [*args.stacks, *(["fls_compiled"] if args.compile else [])]
    num_envs = args.num_envs

    runs = []
    for round_index in range(args.rounds):
        for device in devices:
            for model_name in args.models:
                for stack in stacks:
                    result = run_once(stack, model_name, args.game, args.updates, device, round_index, num_envs)
                    result.update(device=device, round=round_index, num_envs=num_envs)
                    runs.append(result)
                    print(
                        f"round {round_index} {device} {model_name:10s} {stack}: {result['steps_per_s']:.0f} steps/s "
                        f"(rollout {result['rollout_s_per_update']:.2f}s, update {result['update_s_per_update']:.2f}s"
                        f" per {num_envs * N_STEPS} steps)",
                        flush=True,
                    )
    env_rates = {
        stack: statistics.median(env_rate(stack, args.game, 4096, r, num_envs) for r in range(args.rounds))
        for stack in args.stacks
    }

    keys = ("steps_per_s", "rollout_s_per_update", "update_s_per_update")
    summary = []
    table = []
    for device in devices:
        for model_name in args.models:
            med = {}
            for s in stacks:
                pick = [r for r in runs if r["device"] == device and r["model"] == model_name and r["stack"] == s]
                med[s] = {k: statistics.median(r[k] for r in pick) for k in keys}
            row = {"device": device, "model": model_name, "num_envs": num_envs, **med}
            if "sb3" in med and "fls" in med:
                row["ratio"] = med["fls"]["steps_per_s"] / med["sb3"]["steps_per_s"]
            if "fls_compiled" in med and "fls" in med:
                row["compile_ratio"] = med["fls_compiled"]["steps_per_s"] / med["fls"]["steps_per_s"]
            summary.append(row)
            cells = [device, model_name, str(num_envs)]
            for s in stacks:
                m = med[s]
                cells.append(
                    f"{m['steps_per_s']:.0f} ({m['rollout_s_per_update']:.2f} / {m['update_s_per_update']:.2f})"
                )
            cells += [f"{row[k]:.2f}x" for k in ("ratio", "compile_ratio") if k in row]
            table.append(cells)
    names = {"fls": "fls", "sb3": "SB3", "fls_compiled": "fls compiled"}
    columns = ["device", "model", "envs", *(f"{names[s]} steps/s (rollout / update s)" for s in stacks)]
    columns += [c for c, k in (("fls / SB3", "ratio"), ("compiled / eager", "compile_ratio")) if k in summary[0]]
    rows = [markdown_table(columns, table)]
    if "sb3" in env_rates and "fls" in env_rates:
        rows.append(
            f"\nEnv stepping alone (random actions, {num_envs} envs): fls {env_rates['fls']:.0f} steps/s, "
            f"SB3 make_atari_env + VecFrameStack {env_rates['sb3']:.0f} steps/s "
            f"({env_rates['fls'] / env_rates['sb3']:.2f}x)"
        )
    else:
        rows.append(
            f"\nEnv stepping alone (random actions, {num_envs} envs): "
            + ", ".join(f"{s} {v:.0f} steps/s" for s, v in env_rates.items())
        )
    payload = {
        "benchmark": "train_throughput",
        "game": args.game,
        "machine": machine(),
        "settings": vars(args),
        "summary": summary,
        "env_steps_per_s": env_rates,
        "runs": runs,
        "markdown": "\n".join(rows),
    }
    path = write_json("train_throughput", payload, args.out)
    print("\n".join(rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
