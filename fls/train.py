"""``python -m fls.train``: the training command (fls-train). Only run, never imported: ``fls.train`` is the API
function (fls/api.py); the training code is fls/training.py."""

from fls.commands import train_command

if __name__ == "__main__":
    train_command()
