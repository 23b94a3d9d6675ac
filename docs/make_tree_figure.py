"""Render the README's attention-tree figure from any run directory.

    python docs/make_tree_figure.py <run dir> [--step 120] [--seed 2000] [--n 3] [--out docs/tree.png]

Runs ``python evaluate.py task=tree run=<run dir> tree.steps=[<step>] tree.n=<n>`` (same seeded game as the video
task; PNG, HTML and JSON go to <run>/trees/, nothing to W&B) and copies the PNG to ``--out``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fls.agents.loading import evaluation_config, load  # noqa: E402
from fls.tasks.tree import attention_tree_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory (its final model, else its newest checkpoint)")
    parser.add_argument("--step", type=int, default=120, help="agent step of the game to explain")
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--n", type=int, default=3, help="children per node")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "tree.png"))
    args = parser.parse_args()

    cfg = evaluation_config(
        run=args.run,
        device="cpu",
        task="tree",
        **{
            "tree.steps": [args.step],
            "tree.n": args.n,
            "saliency.seed": args.seed,
            "saliency.episodes": 1,
            "logger.wandb.mode": "disabled",
        },
    )
    (png,) = attention_tree_task(cfg, load(cfg))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, out)
    print(f"{out} ({out.stat().st_size / 1024:.0f} KB) from {png}")


if __name__ == "__main__":
    main()
