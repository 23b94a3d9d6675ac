"""How a multirun (``train.py -m``) ends when one of its jobs cannot finish.

One job's end must not take the others down:

- a job stopped by a NaN or infinity (exit code 3 on its own) is recorded in ``<sweep dir>/failed_jobs.jsonl``
  and returns NaN (a failed trial for Optuna); the sweep goes on, and once it has ended it names every failed job
  in one line each and exits with the job's code;
- a job interrupted by SIGINT/SIGTERM checkpoints first. When it runs in the sweep's own process (the basic
  launcher, Optuna's sequential trials) it then ends the sweep at once, as a single run does. In a joblib worker
  (``hydra/launcher=local_parallel``) raising SystemExit there would make joblib kill the other jobs while they
  checkpoint, so the job is recorded and returns; the sweep's process, which ignores the first Ctrl-C, waits for
  every running job to checkpoint, skips the jobs not started, and exits with 128 + signal.

No torch here: the sweep's own process imports this module from the Hydra callback (fls/cli.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

FAILED_JOBS = "failed_jobs.jsonl"
# "<pid>:<launch id>" of the process running the sweep; jobs in other processes (joblib, submitit) inherit it
SWEEP_ENV = "FLS_SWEEP"

_stop_signal: int | None = None  # the first SIGINT/SIGTERM this process received during training or a sweep


def note_stop(signum: int) -> None:
    """Remember that this process was asked to stop (by :class:`fls.runtime.StopSignals` or the sweep)."""
    global _stop_signal
    if _stop_signal is None:
        _stop_signal = signum


def stop_requested() -> int | None:
    """The signal that asked this process to stop, if any."""
    return _stop_signal


def _launch() -> tuple[int, str] | None:
    value = os.environ.get(SWEEP_ENV, "")
    pid, _, launch = value.partition(":")
    return (int(pid), launch) if pid.isdigit() and launch else None


def in_sweep_worker() -> bool:
    """Whether this process runs jobs for a sweep that runs in another process (joblib's workers, submitit's jobs)."""
    launch = _launch()
    return launch is not None and launch[0] != os.getpid()


def start_sweep(launcher_target: str) -> None:
    """In the sweep's process, before any job: mark the launch for its jobs, and with joblib take the first Ctrl-C
    as "let every running job checkpoint" rather than killing them."""
    global _stop_signal
    _stop_signal = None
    os.environ[SWEEP_ENV] = f"{os.getpid()}:{uuid.uuid4().hex}"
    if "Joblib" in launcher_target:
        for signum in (signal.SIGINT, signal.SIGTERM):
            _previous[signum] = signal.signal(signum, _sweep_signal)


_previous: dict[int, Any] = {}


def _sweep_signal(signum: int, _frame: FrameType | None) -> None:
    if _stop_signal is not None:  # a second signal: stop at once
        raise KeyboardInterrupt
    note_stop(signum)
    print(
        f"\nreceived {signal.Signals(signum).name}: every running job checkpoints and stops, jobs not started are "
        "skipped (a second signal stops at once)",
        file=sys.stderr,
        flush=True,
    )
    # A Ctrl-C reaches the workers too; a `kill` of this process alone does not: pass it on (a job in a worker
    # takes any further signal as the same request, see fls.runtime.StopSignals).
    for pid in _children():
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def _children() -> list[int]:
    """The PIDs of this process's child processes (joblib's workers), from /proc (none where there is no /proc)."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(me):
            found.append(int(stat.parent.name))
    return found


def job_stopped(
    sweep_dir: Path | None, job: int, run_dir: Path, message: str, exit_code: int, interrupted: bool
) -> float:
    """A job that could not finish: outside a multirun (``sweep_dir`` None), and for an interruption in the
    sweep's own process, print ``message`` and exit with ``exit_code``; otherwise record it in
    ``<sweep_dir>/failed_jobs.jsonl`` and return NaN."""
    print(message, file=sys.stderr, flush=True)
    launch = _launch()
    if sweep_dir is None or launch is None or (interrupted and launch[0] == os.getpid()):
        sys.exit(exit_code)
    record = {"launch": launch[1], "job": job, "run": str(run_dir), "exit_code": exit_code, "reason": message}
    line = (json.dumps(record) + "\n").encode()
    descriptor = os.open(sweep_dir / FAILED_JOBS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)  # one small O_APPEND write: whole lines even with jobs writing side by side
    finally:
        os.close(descriptor)
    return math.nan


def skip_if_stopped(sweep_dir: Path | None, job: int, run_dir: Path) -> bool:
    """In a worker of a multirun that was interrupted during an earlier job: record this job as not started,
    remove the folder Hydra made for it (holding only .hydra/) and return True."""
    signum, launch = stop_requested(), _launch()
    if signum is None or sweep_dir is None or launch is None or launch[0] == os.getpid():
        return False
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra"}:
        shutil.rmtree(run_dir)
    job_stopped(sweep_dir, job, run_dir, f"job {job} not started: the sweep was interrupted", 128 + signum, True)
    return True


def end_sweep(sweep_dir: Path) -> None:
    """In the sweep's process once every job has returned: name the jobs of this launch that stopped early and
    exit with their code (an interruption's 128 + signal first), or with 128 + signal if the sweep was stopped."""
    launch = _launch()
    if launch is None:
        return
    os.environ.pop(SWEEP_ENV, None)  # the launch is over (a process that runs several, e.g. tests, starts clean)
    for signum, handler in _previous.items():
        signal.signal(signum, handler)
    _previous.clear()
    failed = []
    try:
        lines = (sweep_dir / FAILED_JOBS).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("launch") == launch[1]:
            failed.append(record)
    codes = [int(r["exit_code"]) for r in failed]
    if _stop_signal is not None:
        codes.append(128 + _stop_signal)
    if not codes:
        return
    for record in failed:
        print(f"job {record['job']} ({record['run']}): {record['reason']}", file=sys.stderr)
    interrupted = [c for c in codes if c > 128]
    print(
        f"sweep: {len(failed)} job(s) stopped early (listed above and in {sweep_dir / FAILED_JOBS})"
        + ("; resume an interrupted job with train.py resume=<its folder>" if interrupted else ""),
        file=sys.stderr,
    )
    sys.exit(interrupted[0] if interrupted else max(codes))
