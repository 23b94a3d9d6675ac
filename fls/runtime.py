"""Run-time helpers shared by training and evaluation: which device a command runs on, how host arrays reach it, and
a clean stop on a signal."""

from __future__ import annotations

import signal
import sys
from types import FrameType, TracebackType

import numpy as np
import torch

from fls.errors import ConfigError
from fls.sweep import note_stop


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


def to_device(data: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host data (an array or a CPU tensor) as a tensor on ``device``. On CUDA it is staged in pinned (page-locked)
    memory and copied without blocking the host (torch's pinned-memory cache keeps the staging block until the copy
    has run); elsewhere it is ``torch.as_tensor(data, device=device)``, as before."""
    if device.type != "cuda":
        return torch.as_tensor(data, device=device)
    host = torch.as_tensor(data)  # no copy: a view of the array
    if host.device.type != "cpu":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


class StopSignals:
    """While active, SIGINT and SIGTERM ask a long loop to stop at its next step: the first sets ``signal`` (and
    prints ``received SIGINT: <announce>``), a second raises KeyboardInterrupt at once, unless ``repeat_stops=False``:
    a job in a worker of a parallel sweep gets each request twice (the process group's copy and the one the sweep
    passes on), and there the sweep's own process stops everything at once on a second Ctrl-C.

    A flag rather than KeyboardInterrupt, because an exception raised wherever the signal lands can be swallowed
    by native code waiting for the emulator (a lost Ctrl-C) or cut a record in half; the loop checks the flag
    between steps, so what it has finished is kept and nothing is half-written.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: str, *, repeat_stops: bool = True) -> None:
        self.announce = announce
        self.signal: int | None = None
        self.repeat_stops = repeat_stops
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        self._previous = {s: signal.signal(s, self._request) for s in self.SIGNALS}
        return self

    def __exit__(self, kind: type | None, value: BaseException | None, traceback: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """The shell's code for death by this signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(self.signal or 0)

    def _request(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is not None:
            if self.repeat_stops:
                raise KeyboardInterrupt  # a second signal: give up on the clean stop
            return
        self.signal = signum
        note_stop(signum)  # a job of a parallel sweep that was stopped lets the next jobs of its process skip
        print(f"\nreceived {signal.Signals(signum).name}: {self.announce}", file=sys.stderr, flush=True)
