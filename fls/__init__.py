"""fls: PPO agents for Atari with built-in attention (Free-Lunch Saliency) and the tools to study them.

The Python API (fls/api.py), loaded on first use so that ``import fls`` stays light::

    agent = fls.load("outputs/.../my_run")          # a run directory, an SB3 zip (game=...) or an rl-zoo3 folder
    maps = fls.explain(agent, observations, ["attention", "gradcam"])
    result = fls.evaluate(agent, episodes=64)
    run = fls.train(["experiment=quickstart"])

Every refusal raises :class:`FlsError` (one-line message); nothing here exits the process.
"""

from __future__ import annotations

from typing import Any

from fls.errors import ConfigError, FlsError, Interrupted

__version__ = "0.1.0"
# The API (fls/api.py), imported on first use. score_gaze, score_objects and report_sweep are named apart from the
# packages of the same concept (fls.gaze, fls.objects, fls.report), whose import would bind their names here.
_API = ("EvalResult", "Run", "evaluate", "explain", "faithfulness", "load", "report_sweep", "score_gaze", "train")
_API += ("score_objects", "trees", "video")
__all__ = ["ConfigError", "FlsError", "Interrupted", "stats", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from fls import api

        return getattr(api, name)
    if name == "stats":
        import importlib

        return importlib.import_module("fls.stats")
    raise AttributeError(f"module 'fls' has no attribute {name!r}")
