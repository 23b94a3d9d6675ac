"""Cost of each saliency method relative to the policy's plain forward pass, on a batch of real Atari observations.

    python bench/saliency_cost.py [--model sparse_fls] [--batch 32] [--repeats 3] [--methods all] [--device cpu]

Rows:

* ``forward``: the acting pass alone (``policy_forward`` under ``no_grad``), the unit of the "x forward" column;
* ``attention (same pass)``: that pass plus rendering its attention (``AttentionSaliency.from_forward``), i.e. the
  free-lunch map as an agent gets it; ``attention render only`` times just the rendering of maps already computed;
* every other method: one call ``method(policy, obs)`` with its default settings (it runs its own forward passes);
* ``tree (one frame, n=N)``: one attention tree of a single observation (``fls.saliency.tree.attention_trees``, its
  own forward pass included), the interactive use: the time per tree (``--tree-n``, default 3; run when ``tree`` is
  among the methods);
* for a game with an object decoder (unless ``--no-objects``), the cost the game objects add per frame:
  ``objects: detect`` reads the boxes of ``--batch`` real frames from their RAM (``fls.objects.detect``), and
  ``objects: draw (one panel)`` outlines and labels them on one video panel at scale 2
  (``fls.objects.drawing.draw_objects``, as ``saliency.objects=true`` does on every panel of a frame), and
  ``objects: score one map`` upsamples one (84, 84) map to the raw frame and scores it against the frame's boxes
  (``fls.objects.scores.frame_scores``: pointing game, energy share and ratio per category and for any object, as
  ``task=objects`` does for every method and baseline).

Times are medians over ``--repeats`` calls after one warm-up call (the warm-up is the only sample when it took longer
than ``--budget`` seconds divided by the repeats: perturbation is ~300 forward passes per frame). Memory: on CUDA
``torch.cuda.max_memory_allocated`` during the warm-up call minus what was allocated before it; on CPU the peak
resident set size (RSS, sampled every 0.5 ms from /proc/self/statm during the warm-up call) minus the RSS just before
it, after returning freed heap pages to the OS (glibc ``malloc_trim``). CPU numbers are the extra memory the process
needed, and approximate (a peak shorter than the sampling interval can be missed).

Writes bench/results/saliency_cost.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_json  # noqa: E402
from fls.envs import make_single_env, make_vec_env  # noqa: E402
from fls.models import build_policy  # noqa: E402
from fls.objects import games_with_decoder  # noqa: E402
from fls.saliency import METHODS, AttentionSaliency, get_method, policy_forward  # noqa: E402
from fls.saliency.tree import attention_trees  # noqa: E402
from fls.tables import markdown_table  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def real_observations(game: str, batch: int, steps: int = 40) -> torch.Tensor:
    """``batch`` observations of a game after ``steps`` random steps (seeded), one per env."""
    env = make_vec_env(game, num_envs=batch, seed=0)
    rng = np.random.default_rng(0)
    obs = env.reset()
    for _ in range(steps):
        obs, *_ = env.step(rng.integers(0, env.action_space.n, batch))
    env.close()
    return torch.as_tensor(obs)


def real_frames(game: str, frames: int, steps: int = 40) -> list[tuple[np.ndarray, np.ndarray]]:
    """``frames`` (raw RGB frame, RAM) pairs of one seeded game played with random actions, after ``steps``."""
    env = make_single_env(game, seed=0)
    rng = np.random.default_rng(0)
    _, info = env.reset()
    pairs = []
    for step in range(steps + frames):
        if step >= steps:
            pairs.append((info["rgb"], info["ram"]))
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            _, info = env.reset()
    env.close()
    return pairs


def object_rows(game: str, frames: int, repeats: int, budget: float) -> list[dict]:
    """The per-frame cost of the game objects (rows named ``objects: ...``), on ``frames`` real frames."""
    from PIL import Image

    from fls.models.renderer import upsample_to_frame
    from fls.objects import categories, detect
    from fls.objects.drawing import draw_objects, object_colours
    from fls.objects.scores import frame_scores

    pairs = real_frames(game, frames)
    boxes = [detect(game, ram) for _, ram in pairs]
    colours = object_colours(game)
    panels = [np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1) for frame, _ in pairs]  # scale 2, as videos

    def draw() -> None:
        for panel, objects in zip(panels, boxes, strict=True):
            draw_objects(Image.fromarray(panel), objects, colours, scale=2)

    maps = torch.rand(len(pairs), 84, 84, generator=torch.Generator().manual_seed(0))
    groups = list(categories(game))

    def score() -> None:
        for saliency, (frame, _), objects in zip(maps, pairs, boxes, strict=True):
            raw = upsample_to_frame(saliency[None], frame.shape[:2])[0].numpy()
            frame_scores(raw, objects, groups, tolerance=8.0)

    cpu = torch.device("cpu")
    rows = [
        {"method": "objects: detect", **measure(lambda: [detect(game, ram) for _, ram in pairs], cpu, repeats, budget)},
        {"method": "objects: draw (one panel)", **measure(draw, cpu, repeats, budget)},
        {"method": "objects: score one map", **measure(score, cpu, repeats, budget)},
    ]
    return [{**row, "frames": frames} for row in rows]


def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so a method cannot hide its peak in memory that
    an earlier method freed but the allocator kept; a no-op where glibc is absent."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakMemory:
    """Peak extra memory during a block: CUDA allocator statistics, or sampled RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            release_free_memory()
            self._base = rss_bytes()
            self._peak = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_bytes())
            time.sleep(0.0005)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(0, max(self._peak, rss_bytes()) - self._base)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(fn: Callable[[], object], device: torch.device, repeats: int, budget: float) -> dict:
    """Warm-up call (with memory), then ``repeats`` timed calls unless the warm-up says they would not fit."""
    with PeakMemory(device) as memory:
        first = timed(fn, device)
    times = [first] if first * repeats > budget else [timed(fn, device) for _ in range(repeats)]
    return {"seconds": statistics.median(times), "runs": len(times), "peak_bytes": memory.peak_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sparse_fls", help="fls model name (must have attention for that row)")
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="all", help="comma-separated method names, or 'all'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of timed repeats allowed per method")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--tree-n", type=int, default=3, help="children per node of the one-frame tree row")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/saliency_cost.json)")
    parser.add_argument("--no-objects", action="store_true", help="leave out the game objects' rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    names = list(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    methods = {name: get_method(name) for name in names}  # ConfigError for unknown names, before the slow setup
    device = torch.device(args.device)
    obs = real_observations(args.game, args.batch)
    env = make_vec_env(args.game, num_envs=1, seed=0)
    torch.manual_seed(0)
    policy = build_policy({"name": args.model}, env.observation_space, env.action_space).to(device)
    env.close()
    policy.set_training_mode(False)
    obs = obs.to(device)

    def forward() -> object:
        with torch.no_grad():
            return policy_forward(policy, obs)

    rows: list[dict] = []
    # The cheap rows get more repeats: their medians are compared with each other.
    base = measure(forward, device, max(args.repeats, 20), args.budget)
    rows.append({"method": "forward", **base})
    attention = AttentionSaliency()
    if "attention" in methods and getattr(policy.features_extractor, "has_attention", False):

        def forward_and_render() -> object:
            forward()
            return attention.from_forward(policy)

        same_pass = measure(forward_and_render, device, max(args.repeats, 20), args.budget)
        rows.append({"method": "attention (same pass)", **same_pass})
        forward()
        rows.append(
            {"method": "attention render only", **measure(lambda: attention.from_forward(policy), device, 20, 60)}
        )
    if "tree" in methods:
        tree_row = measure(lambda: attention_trees(policy, obs[:1], n=args.tree_n), device, max(args.repeats, 20), 60)
        rows.append({"method": f"tree (one frame, n={args.tree_n})", "frames": 1, **tree_row})
    if not args.no_objects and args.game in games_with_decoder():
        rows.extend(object_rows(args.game, args.batch, max(args.repeats, 20), args.budget))
    for name, method in methods.items():
        if name == "attention":
            continue
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows.append(
            {
                "method": name,
                "options": repr(method),
                **measure(lambda m=method: m(policy, obs), device, args.repeats, args.budget),
            }
        )

    memory_kind = "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS increase (sampled)"
    cells = []
    for row in rows:
        row.setdefault("frames", args.batch)
        row["ms_per_batch"] = 1000 * row["seconds"]  # per call, of row["frames"] frames
        row["ms_per_frame"] = row["ms_per_batch"] / row["frames"]
        row["relative_to_forward"] = (row["seconds"] / row["frames"]) / (base["seconds"] / args.batch)
        row["peak_memory_mib"] = row["peak_bytes"] / 2**20
        cells.append(
            [row["method"], row["frames"], f"{row['ms_per_batch']:.3g}", f"{row['ms_per_frame']:.3g}"]
            + [f"{row['relative_to_forward']:.3g}", f"{row['peak_memory_mib']:.1f}", row["runs"]]
        )
    columns = ["method", "frames", "ms / call", "ms / frame", "x forward", "peak extra memory (MiB)", "runs"]
    table = [markdown_table(columns, cells)]
    payload = {
        "benchmark": "saliency_cost",
        "machine": machine(),
        "settings": vars(args),
        "memory": memory_kind,
        "rows": rows,
        "markdown": "\n".join(table),
    }
    out = write_json("saliency_cost", payload, args.out)
    print("\n".join(table))
    print(f"\nmemory: {memory_kind}; wrote {out}")


if __name__ == "__main__":
    main()
