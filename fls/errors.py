"""The errors fls raises on purpose (all derive from :class:`FlsError`), and the commands' one-line report of them.

The library raises; only the commands (train.py, evaluate.py, fls-train, fls-evaluate) turn an error into a line on
stderr and an exit code (:func:`fail`)."""

from __future__ import annotations

import errno
import sys
from typing import NoReturn


class FlsError(Exception):
    """Base of every error fls raises on purpose: a one-line message naming the problem (and the valid choices or
    what to do). ``exit_code`` is what the commands exit with."""

    exit_code: int = 2


class ConfigError(FlsError, ValueError):
    """A user-facing configuration problem: the message names the problem and the valid choices."""


class Interrupted(FlsError):
    """A long job stopped by SIGINT/SIGTERM after keeping what it finished; running it again continues it.
    ``exit_code`` is the shell's code for death by that signal (130, 143)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


# What to do about an OSError, by errno, and where each command can be told to write instead.
_OS_ADVICE = {
    errno.EACCES: "make it writable or write elsewhere",
    errno.EPERM: "make it writable or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.ENOSPC: "the disk is full: free some space (then run the same command again) or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space (then run the same command again) or write elsewhere",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f) or the file system holds: "
    "raise the limit or write elsewhere",
    errno.ENOTDIR: "a file stands where a folder is needed: move it or write elsewhere",
    errno.EEXIST: "something of that name is in the way: move it or write elsewhere",
    errno.EISDIR: "a folder stands where a file is needed: move it or write elsewhere",
    errno.ENOENT: "check the path",
}
_WRITE_ELSEWHERE = {
    "train": "hydra.run.dir=<folder>",
    "evaluate": "eval.out=, saliency.out=, gaze.out= or report.out=<folder>",
}


def os_error_message(error: OSError, command: str) -> str:
    """One line for an OSError: the path, what went wrong and what to do."""
    path = error.filename if error.filename is not None else "a file being written"
    reason = error.strerror or str(error)
    advice = _OS_ADVICE.get(error.errno, "check the path and its permissions")
    if "elsewhere" in advice and command in _WRITE_ELSEWHERE:
        advice += f" ({_WRITE_ELSEWHERE[command]})"
    return f"{path}: {reason.lower()}; {advice}"
