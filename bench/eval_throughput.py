"""Evaluation throughput: fls's batched runner against SB3's ``evaluate_policy`` (same model, SB3's own Atari
VecEnv: make_atari_env + VecFrameStack) and against the raw stepping rate of the native vector env under random
actions (the limit), in one run.

    python bench/eval_throughput.py [--game Breakout] [--model sparse_fls] [--episodes 32] [--num-envs 16]

The policy is an untrained network of the chosen model (speed does not depend on the weights, episode lengths
do: both sides play the same number of episodes with the same kind of agent, and rates are per agent step).
Writes bench/results/eval_throughput.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_json  # noqa: E402
from fls.agents.agent import load_agent  # noqa: E402
from fls.envs import make_vec_env  # noqa: E402
from fls.evaluation.runner import run_episodes  # noqa: E402
from fls.models import policy_kwargs  # noqa: E402
from fls.models.policy import FLSPolicy  # noqa: E402
from fls.ppo import AttentionPPO  # noqa: E402
from fls.tables import markdown_table  # noqa: E402


def raw_rate(game: str, num_envs: int, steps: int) -> float:
    env = make_vec_env(game, num_envs=num_envs, seed=0, clip_rewards=False)
    env.reset()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps // num_envs):
        env.step(rng.integers(0, env.action_space.n, num_envs))
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--model", default="sparse_fls")
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--max-episode-steps", type=int, default=5000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    env = make_vec_env(args.game, num_envs=1, seed=0)
    model = AttentionPPO(FLSPolicy, env, policy_kwargs=policy_kwargs({"name": args.model}), device=args.device, seed=0)
    env.close()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.zip"
        model.save(path)
        agent = load_agent(path, args.device)

    start = time.perf_counter()  # includes creating and seeding the envs (a few seconds, once per evaluation)
    episodes = run_episodes(
        agent,
        args.game,
        range(args.episodes),
        base_seed=1000,
        streams=args.num_envs,
        max_episode_steps=args.max_episode_steps,
        progress=False,
    )
    fls_time = time.perf_counter() - start
    fls_steps = sum(e.length for e in episodes)

    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

    gym.register_envs(ale_py)

    sb3_vec = VecTransposeImage(
        VecFrameStack(make_atari_env(f"{args.game}NoFrameskip-v4", n_envs=args.num_envs, seed=1000), n_stack=4)
    )
    start = time.perf_counter()
    rewards, lengths = evaluate_policy(
        model, sb3_vec, n_eval_episodes=args.episodes, deterministic=False, return_episode_rewards=True
    )
    sb3_time = time.perf_counter() - start
    sb3_vec.close()
    # make_atari_env puts Monitor under the frame-skip wrapper: its lengths are raw frames, 4 per agent step.
    sb3_steps = int(sum(lengths)) // 4

    limit = raw_rate(args.game, args.num_envs, 8192)
    fls_rate, sb3_rate = fls_steps / fls_time, sb3_steps / sb3_time
    columns = ["runner", "episodes/s", "agent steps/s", "vs SB3 evaluate_policy", "vs raw env stepping"]
    table = [
        [f"fls run_episodes ({args.num_envs} envs, batched)", f"{args.episodes / fls_time:.2f}", f"{fls_rate:.0f}"]
        + [f"{fls_rate / sb3_rate:.2f}x", f"{fls_rate / limit:.0%}"],
        [f"SB3 evaluate_policy (make_atari_env, {args.num_envs} envs)", f"{args.episodes / sb3_time:.2f}"]
        + [f"{sb3_rate:.0f}", "1.00x", f"{sb3_rate / limit:.0%}"],
        ["native vector env, random actions (limit)", "–", f"{limit:.0f}", "–", "100%"],
    ]
    rows = [markdown_table(columns, table)]
    payload = {
        "benchmark": "eval_throughput",
        "machine": machine(),
        "settings": vars(args),
        "fls": {"seconds": fls_time, "agent_steps": fls_steps, "steps_per_s": fls_rate},
        "sb3_evaluate_policy": {"seconds": sb3_time, "agent_steps": sb3_steps, "steps_per_s": sb3_rate},
        "raw_env_steps_per_s": limit,
        "markdown": "\n".join(rows),
    }
    out = write_json("eval_throughput", payload, args.out)
    print("\n".join(rows))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
