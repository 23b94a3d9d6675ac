"""What the two Atari vector envs (native C++ and Python-backed) share: SB3's VecEnv plumbing for envs whose
sub-envs have no Python objects to reach into."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices


class AtariVecEnvBase(VecEnv):
    """Per-env attributes kept here, ``get_action_meanings`` as the only sub-env method, Monitor-style infos.

    Subclasses set ``self._env_attrs`` (one dict per env) and ``self.action_meanings``.
    """

    _env_attrs: list[dict[str, Any]]
    action_meanings: list[str]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Per-env attribute (set by :meth:`set_attr`, or ``render_mode``), else the shared one of this env."""
        idx = list(self._get_indices(indices))
        if all(attr_name in self._env_attrs[i] for i in idx):
            return [self._env_attrs[i][attr_name] for i in idx]
        if attr_name.startswith("_") or not hasattr(self, attr_name):
            raise AttributeError(f"the Atari sub-envs have no attribute {attr_name!r}")
        return [getattr(self, attr_name) for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Store a per-env attribute (the emulators have no Python attributes to change)."""
        for i in self._get_indices(indices):
            self._env_attrs[i][attr_name] = value

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a sub-env method; only ``get_action_meanings`` exists."""
        if method_name != "get_action_meanings":
            raise AttributeError(f"the Atari sub-envs have no method {method_name!r}")
        return [list(self.action_meanings) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True for SB3's ``Monitor`` (``infos`` carry its episode records, so evaluation uses them), else False."""
        return [wrapper_class is Monitor for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed env ``i`` with ``seed + i`` at the next reset (random when None)."""
        return super().seed(seed)
