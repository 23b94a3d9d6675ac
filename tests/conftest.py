"""Shared fixtures: run the real command-line entry points in subprocesses."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The environment of every process a test starts: one torch thread (the test workers of pytest -n already use
# every core, and torch's spinning thread pool slows everything down badly when another process wants the same
# cores; the runs here are tiny), W&B offline and quiet, no Hydra full tracebacks.
CHILD_ENV = {
    **{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "OMP_NUM_THREADS": "1",
}


def run_cli(script: str, *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run ``python <script> args...`` from the repo and return the CompletedProcess (text output)."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**CHILD_ENV, **(env or {})},
    )


def compose_config(config_name: str, args: list[str] | tuple[str, ...]):
    """The config ``python <config_name>.py args...`` runs with, after the command line's checks (in-process)."""
    from hydra import compose, initialize_config_dir

    from fls.cli import CONFIG_DIR, apply_aliases, check_override_values, register_resolvers
    from fls.config_schema import check_config

    register_resolvers()
    args = apply_aliases(list(args), config_name)
    check_override_values(args, config_name)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=args)
    check_config(cfg, config_name)
    return cfg


def evaluate_in_process(*args: str):
    """What evaluate.py does with ``args``, in this process (no torch import per call); raises its ConfigError."""
    from fls.tasks.registry import main

    return main(compose_config("evaluate", args))


def evaluate_refusal(*args: str) -> str:
    """The one-line error evaluate.py refuses ``args`` with (its ConfigError, in-process). Whether the command line
    prints a ConfigError as one line and exits 2 is tested once for all in tests/test_hostile.py."""
    from fls.errors import ConfigError

    try:
        evaluate_in_process(*args, "logger.wandb.mode=disabled")
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message, message
        return message
    raise AssertionError(f"evaluate.py {' '.join(args)} was accepted")


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


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """``<session temp>/<name>/``, made by ``build(folder)`` once per test session: under ``pytest -n`` the workers
    share the session's temporary root, and the first to need the folder builds it while the others wait."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # <basetemp>/popen-gw<N>/ -> <basetemp>/, shared by the workers of this session
    folder, done = root / name, root / f"{name}.built"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


# Sparse FLS on Breakout at its smallest: 2 envs x 64 steps = one PPO update of 128 agent steps, no W&B or TensorBoard
TINY_SPARSE_FLS = (
    "model=sparse_fls",
    "env=Breakout",
    "env.num_envs=2",
    "ppo.n_steps=64",
    "ppo.batch_size=64",
    "logger.wandb.mode=disabled",
    "logger.tensorboard=false",
)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A real (tiny) training run directory: sparse_fls on Breakout, one PPO update, offline W&B off."""

    def train(folder: Path) -> None:
        result = run_cli("train.py", *TINY_SPARSE_FLS, "total_timesteps=128", f"hydra.run.dir={folder / 'run'}")
        assert result.returncode == 0, result.stderr[-3000:]

    return built_once(tmp_path_factory, "tiny_run", train) / "run"


@pytest.fixture(scope="session")
def unfinished_run(tmp_path_factory) -> Path:
    """A run stopped after its first checkpoint (step 128 of 256; progress.csv still holds the row of step 256):
    resume= continues from it. Tests that change it work on a copy."""

    def train(folder: Path) -> None:
        run_dir = folder / "run"
        args = (*TINY_SPARSE_FLS, "total_timesteps=256", "checkpoint_every=128", f"hydra.run.dir={run_dir}")
        result = run_cli("train.py", *args)
        assert result.returncode == 0, result.stderr[-3000:]
        (run_dir / "final_model.zip").unlink()
        assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step_000000000128.zip"]

    return built_once(tmp_path_factory, "unfinished_run", train) / "run"


@pytest.fixture(scope="session")
def tiny_eval(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """One evaluation of ``tiny_run`` (5 episodes, 3 envs, 250 steps each, W&B offline), shared by the tests that
    read its outputs: (output folder, stdout). Tests that change the folder work on a copy."""

    def evaluate(folder: Path) -> None:
        result = run_cli(
            "evaluate.py",
            f"run={tiny_run}",
            "eval.episodes=5",
            "eval.num_envs=3",
            "eval.max_episode_steps=250",
            f"eval.out={folder / 'eval'}",
            "logger.wandb.mode=offline",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (folder / "stdout.txt").write_text(result.stdout)

    folder = built_once(tmp_path_factory, "tiny_eval", evaluate)
    return folder / "eval", (folder / "stdout.txt").read_text()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): the
    parallel workers share two cores, and one thread per worker keeps them from fighting over them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
