"""Train a PPO agent on Atari: python train.py model=sparse_fls env=Seaquest (see README). Same as fls-train."""

from fls.commands import train_command

if __name__ == "__main__":
    train_command()
