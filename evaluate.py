"""Evaluate an agent: python evaluate.py run=<run dir> (see README)."""

from fls.cli import run_hydra


def evaluate(cfg):
    from fls.evaluation.tasks import main  # torch and the emulator load only once the command line passed its checks

    return main(cfg)


if __name__ == "__main__":
    run_hydra(evaluate, "evaluate")
