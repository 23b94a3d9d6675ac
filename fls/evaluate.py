"""``python -m fls.evaluate``: the evaluation command (fls-evaluate). Only run, never imported: ``fls.evaluate`` is
the API function (fls/api.py)."""

from fls.commands import evaluate_command

if __name__ == "__main__":
    evaluate_command()
