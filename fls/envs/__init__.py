"""Atari environments with the OpenAI-baselines protocol: a fast native vector env for training and a
Python single env (with raw RGB frames) for videos, with the same semantics (see ``vector.py``); games the native
env cannot run (``BreakoutInfinite``) get a Python vector env with the same interface (``python_vector.py``)."""

from fls.envs.games import GAMES, GameSpec, get_game
from fls.envs.python_vector import PythonAtariVecEnv
from fls.envs.single import make_single_env
from fls.envs.vector import AtariVecEnv, make_vec_env

__all__ = ["GAMES", "AtariVecEnv", "GameSpec", "PythonAtariVecEnv", "get_game", "make_single_env", "make_vec_env"]
