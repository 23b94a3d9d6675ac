"""Train a PPO agent on Atari: python train.py model=sparse_fls env=Seaquest (see README)."""

from fls.cli import run_hydra
from fls.train import main

if __name__ == "__main__":
    run_hydra(main, "train")
