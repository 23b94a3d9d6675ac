"""Progress reports that suit where stderr goes: tqdm's bar on a terminal, one plain line every few seconds elsewhere.

A carriage-return bar written to a log file, a pipe or a SLURM output becomes one ever-growing line (or nothing at
all on a terminal that reports 0 columns), so training, evaluation and videos ask :func:`progress_bar` for their
bar: on anything that is not a usable terminal it returns a :class:`LineProgress`, which prints a whole line with
the count, the rate and the time left every ``LINE_INTERVAL_S`` seconds, and a last line when it closes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

LINE_INTERVAL_S = 10.0
# Narrower than this, a bar has no room for its numbers; some job runners give a pty of 0 x 0.
MIN_TERMINAL_COLUMNS = 20


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal wide enough to show a carriage-return bar."""
    try:
        if not stream.isatty():
            return False
        return os.get_terminal_size(stream.fileno()).columns >= MIN_TERMINAL_COLUMNS
    except (AttributeError, OSError, ValueError):
        return False


def _format_count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


class LineProgress:
    """tqdm's ``update`` / ``set_postfix`` / ``close`` interface, printing one plain line every ``interval`` seconds.

    A line reads ``train: 12,288/30,720 steps (40%), 150.2 steps/s, ETA 02:03, games=12, mean_return=1.3``; the
    rate counts only what this process did (``initial`` is excluded), so a resumed run's ETA is honest.
    """

    def __init__(
        self,
        total: float | None,
        desc: str,
        unit: str,
        *,
        initial: float = 0,
        stream: TextIO | None = None,
        interval: float = LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.initial = initial
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.started = self.last_line = clock()
        self.postfix: dict[str, Any] = {}
        self.closed = False

    def line(self) -> str:
        """The current state as one line (no trailing newline)."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = (self.n - self.initial) / elapsed
        count = _format_count(self.n)
        if self.total:
            count = f"{count}/{_format_count(self.total)} {self.unit}s ({100 * self.n / self.total:.0f}%)"
        else:
            count = f"{count} {self.unit}s"
        parts = [f"{self.desc}: {count}"]
        parts.append(f"{rate:.1f} {self.unit}s/s")
        if self.total and not self.closed:
            eta = tqdm.format_interval((self.total - self.n) / rate) if rate > 0 else "?"
            parts.append(f"ETA {eta}")
        if self.closed:
            parts.append(f"took {tqdm.format_interval(elapsed)}")
        parts.extend(f"{key}={value}" for key, value in self.postfix.items())
        return ", ".join(parts)

    def _print(self) -> None:
        print(self.line(), file=self.stream or sys.stderr, flush=True)
        self.last_line = self.clock()

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units; print a line if ``interval`` seconds have passed since the last one."""
        self.n += n
        if self.clock() - self.last_line >= self.interval:
            self._print()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **values: Any) -> None:
        """Values appended to every line (``refresh`` is accepted for tqdm compatibility; lines keep their pace)."""
        self.postfix = {**(ordered_dict or {}), **values}

    def close(self) -> None:
        """Print the final line (once)."""
        if self.closed:
            return
        self.closed = True
        if self.n > self.initial:
            self._print()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(
    total: float | None,
    desc: str,
    unit: str,
    *,
    initial: float = 0,
    disable: bool = False,
    stream: TextIO | None = None,
    interval: float = LINE_INTERVAL_S,
    **bar_options: Any,
) -> tqdm | LineProgress:
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a :class:`LineProgress` writing to it.

    ``bar_options`` are passed to tqdm only (e.g. ``mininterval``, ``smoothing``).
    """
    out = stream or sys.stderr
    if disable or is_terminal(out):
        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            initial=initial,
            disable=disable,
            file=out,
            dynamic_ncols=True,
            **bar_options,
        )
    return LineProgress(total, desc, unit, initial=initial, stream=stream, interval=interval)


class SweepNotice(Callback):
    """Hydra callback (configs/train.yaml): at the start of a multirun, say where each job writes, where a
    launcher's per-job logs go, and what every job does after training, before the first job starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = OmegaConf.select(config, "hydra.sweep.dir")
        lines = [f"sweep: each job writes its run directory to {sweep}/<job number>/"]
        logs = OmegaConf.select(config, "hydra.launcher.submitit_folder", default=None)
        if logs:
            lines.append(f"sweep: each job's output and errors go to {str(logs).replace('%j', '<job id>')}/")
        after = OmegaConf.select(config, "after_training", default=None)
        if after is not None and (int(after.eval_episodes) > 0 or bool(after.video)):
            steps = [f"evaluates {int(after.eval_episodes)} episodes"] if int(after.eval_episodes) > 0 else []
            if after.video:
                steps.append(f"records a saliency video ({', '.join(after.video_methods)})")
            lines.append(f"sweep: after training, each job {' and '.join(steps)} (after_training.*)")
        print("\n".join(lines), flush=True)
