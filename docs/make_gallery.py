"""Render the README gallery: one real overlay per saliency method, from a trained run, as small PNGs.

    python docs/make_gallery.py <run dir> [--step 300] [--seed 2000] [--out docs/gallery]

Plays one seeded game with the run's final model (sampled actions, as evaluation does) up to ``--step``,
computes every method's map on the observation the agent acted on at that step, and writes
``<out>/<method>.png`` (raw frame with the overlay, 2x) plus ``<out>/frame.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fls.agents.loading import evaluation_config, load  # noqa: E402
from fls.saliency import METHODS, get_method  # noqa: E402
from fls.saliency.video import overlay, play  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory (its final model is used)")
    parser.add_argument("--step", type=int, default=300, help="agent step of the game to explain")
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "gallery"))
    args = parser.parse_args()

    import cv2

    loaded = load(evaluation_config(run=args.run, device="cpu"))
    # The tree is a drawing, not a map to overlay: it has its own figure (docs/make_tree_figure.py).
    methods = {name: get_method(name) for name in METHODS if name != "tree"}
    steps = []
    play(
        loaded.agent.policy,
        loaded.game,
        seed=args.seed,
        episodes=1,
        methods=methods,
        max_steps=args.step + 1,
        on_step=steps.append,
    )
    chosen = steps[min(args.step, len(steps) - 1)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(name: str, rgb: np.ndarray) -> None:
        big = cv2.resize(rgb, (rgb.shape[1] * 2, rgb.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(out / f"{name}.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))

    save("frame", chosen.frame)
    for name, raw in chosen.maps.items():
        peak = float(raw.max())
        save(name, overlay(chosen.frame, raw / peak if peak > 0 else raw))
    print(
        f"{loaded.game} step {chosen.step} (action {chosen.action_name}, score {chosen.score:g}): "
        f"{len(chosen.maps)} overlays in {out}"
    )


if __name__ == "__main__":
    main()
