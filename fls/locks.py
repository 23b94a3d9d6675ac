"""One writer per output: an OS advisory lock on a file inside what a process writes.

``hold(lock_file)`` takes ``fcntl.flock`` on the file and writes who holds it (PID, host, command line, start
time) into it. A second writer is refused at once with a ConfigError naming the holder. The kernel drops the lock
when the process ends however it ends (exit, crash, kill -9), so a lock is never stale. On Linux, flock also
works across machines on NFS (it is emulated with fcntl byte-range locks).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from fls.errors import ConfigError

LOCK_FILE = ".lock"
_COMMAND_CHARS = 300  # the holder's command line is shown in a one-line error


class LockedError(ConfigError):
    """Another process holds the lock (a ConfigError, so the CLIs print one line and exit 2)."""


class _Held:
    def __init__(self, fd: int):
        self.fd = fd
        self.depth = 1


_HELD: dict[Path, _Held] = {}  # flock is per open file: a process re-entering a lock must reuse its descriptor


def _command() -> str:
    args = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    command = " ".join(args)
    return command if len(command) <= _COMMAND_CHARS else command[: _COMMAND_CHARS - 1] + "…"


def _identity() -> bytes:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "started": datetime.now().isoformat(timespec="seconds"),
    }
    return (json.dumps(record) + "\n").encode()


def describe_holder(lock_file: Path, attempts: int = 10) -> str:
    """'PID 123 on host (command, since time)' from a held lock file (the holder may still be writing it)."""
    for _ in range(attempts):
        try:
            record = json.loads(lock_file.read_text() or "null")
        except (OSError, json.JSONDecodeError):
            record = None
        if isinstance(record, dict):
            return (
                f"PID {record.get('pid')} on {record.get('host')} ({record.get('command')}, "
                f"since {record.get('started')})"
            )
        time.sleep(0.05)
    return "another process (it has not said who it is yet)"


def _open_locked(lock_file: Path, wait: float) -> int | None:
    """A descriptor of ``lock_file`` holding its flock, or None if another process holds it past ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
            continue
        # A releasing holder may have unlinked the file between our open and flock: then we hold a lock on a
        # name nobody else will open. Only a lock on the file the path still names counts.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def hold(lock_file: str | os.PathLike, what: str, wait: float = 0.0) -> Iterator[Path]:
    """Hold the lock on ``lock_file`` (its folder must exist) while writing ``what``.

    Refuses with a LockedError naming the holder when another process holds it (after waiting up to ``wait``
    seconds). Re-entrant within a process. The lock file is removed on release (a holder killed with -9 leaves it
    behind, unlocked, for the next writer to take over), so finished outputs carry no lock files.
    """
    path = Path(lock_file).absolute()
    held = _HELD.get(path)
    if held is not None:
        held.depth += 1
        try:
            yield path
        finally:
            held.depth -= 1
        return
    fd = _open_locked(path, wait)
    if fd is None:
        raise LockedError(
            f"{what} is being written by {describe_holder(path)}; wait for it to finish (or stop it) and run again"
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, _identity(), 0)
    _HELD[path] = _Held(fd)
    try:
        yield path
    finally:
        del _HELD[path]
        try:
            path.unlink()  # while still held: a process that opened it meanwhile sees the unlink and retries
        except OSError:
            pass
        os.close(fd)


def remove_orphans(folder: str | os.PathLike, pattern: str = ".*.tmp") -> list[Path]:
    """Remove leftovers of interrupted atomic writes (``.<name>.*.tmp``) in ``folder``.

    Call only while holding the lock of whatever writes there: then no write in progress can own them.
    """
    removed = []
    directory = Path(folder)
    for path in directory.glob(pattern) if directory.is_dir() else []:
        if path.is_file():
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
    if removed:
        print(f"removed {len(removed)} unfinished file(s) of an interrupted write in {directory}", file=sys.stderr)
    return removed
