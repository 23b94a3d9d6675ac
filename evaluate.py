"""Evaluate an agent: python evaluate.py run=<run dir> (see README). Same as fls-evaluate."""

from fls.commands import evaluate_command

if __name__ == "__main__":
    evaluate_command()
