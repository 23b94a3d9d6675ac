"""Atari environments with the OpenAI-baselines protocol: a fast native vector env for training and a
Python single env (with raw RGB frames) for videos, with the same semantics (see ``vector.py``); games the native
env cannot run (``BreakoutInfinite``) get a Python vector env with the same interface (``python_vector.py``).

The names below load their module (and the emulator) on first use, so that ``fls.envs.games`` stays cheap to import
for the command lines' checks.
"""

from typing import Any

__all__ = ["GAMES", "AtariVecEnv", "GameSpec", "PythonAtariVecEnv", "get_game", "make_single_env", "make_vec_env"]


def __getattr__(name: str) -> Any:
    if name in ("GAMES", "GameSpec", "get_game"):
        from fls.envs import games as module
    elif name == "PythonAtariVecEnv":
        from fls.envs import python_vector as module
    elif name == "make_single_env":
        from fls.envs import single as module
    elif name in ("AtariVecEnv", "make_vec_env"):
        from fls.envs import vector as module
    else:
        raise AttributeError(f"module 'fls.envs' has no attribute {name!r}")
    return getattr(module, name)
