"""Evaluate an agent: python evaluate.py run=<run dir> (see README)."""

from fls.cli import run_hydra
from fls.evaluation.tasks import main

if __name__ == "__main__":
    run_hydra(main, "evaluate")
