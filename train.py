"""Train a PPO agent on Atari: python train.py model=sparse_fls env=Seaquest (see README)."""

from fls.cli import run_hydra


def train(cfg):
    from fls.training import main  # torch and the emulator load only once the command line has passed its checks

    return main(cfg)


if __name__ == "__main__":
    run_hydra(train, "train")
