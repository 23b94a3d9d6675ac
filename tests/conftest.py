"""Shared fixtures: run the real command-line entry points in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(script: str, *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run ``python <script> args...`` from the repo and return the CompletedProcess (text output)."""
    # One torch thread: these runs are tiny, and torch's spinning thread pool slows them down badly whenever
    # another process (or the emulator's threads) wants the same cores.
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run tests marked slow (CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A real (tiny) training run directory: sparse_fls on Breakout, one PPO update, offline W&B off."""
    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    result = run_cli(
        "train.py",
        "model=sparse_fls",
        "env=Breakout",
        "env.num_envs=2",
        "ppo.n_steps=64",
        "ppo.batch_size=64",
        "total_timesteps=128",
        "logger.wandb.mode=disabled",
        "logger.tensorboard=false",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def tiny_eval(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """One evaluation of ``tiny_run`` (5 episodes, 3 envs, 250 steps each, W&B offline), shared by the tests that
    read its outputs: (output folder, stdout). Tests that change the folder work on a copy."""
    out = tmp_path_factory.mktemp("tiny_eval") / "eval"
    result = run_cli(
        "evaluate.py",
        f"run={tiny_run}",
        "eval.episodes=5",
        "eval.num_envs=3",
        "eval.max_episode_steps=250",
        f"eval.out={out}",
        "logger.wandb.mode=offline",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout
