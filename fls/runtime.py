"""Run-time helpers shared by training and evaluation: which device a command runs on."""

from __future__ import annotations

import torch

from fls.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda requested without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available (valid here: auto, cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}' (valid: auto, cpu, cuda, cuda:N)") from None
