"""The two commands, ``fls-train`` and ``fls-evaluate`` (also ``python -m fls.train``, ``python -m fls.evaluate`` and
the checkout's ``train.py`` / ``evaluate.py``): Hydra parses and checks the command line, the task runs, and an
:class:`fls.FlsError` becomes one line on stderr and an exit code. They read the configs shipped in the package
(``fls/configs/``) and write under the current directory, wherever they are run from."""

from __future__ import annotations

from typing import Any

from fls.cli import run_hydra


def _train(cfg: Any) -> Any:
    from fls.training import main  # torch and the emulator load only once the command line has passed its checks

    return main(cfg)


def _evaluate(cfg: Any) -> Any:
    from fls.tasks.registry import main

    return main(cfg)


def train_command() -> None:
    """``fls-train [overrides]``: train a PPO agent (README: Training)."""
    run_hydra(_train, "train")


def evaluate_command() -> None:
    """``fls-evaluate [overrides]``: score, explain or report (README: Evaluation)."""
    run_hydra(_evaluate, "evaluate")
