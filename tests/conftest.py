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
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    full_env.pop("HYDRA_FULL_ERROR")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def cli():
    return run_cli
