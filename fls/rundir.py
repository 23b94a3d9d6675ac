"""The run directory: one place that knows its layout, and atomic writes for everything in it.

<run dir>/
  config.yaml            resolved config of the run (what resume and evaluate read)
  .hydra/                Hydra's record of the invocation (.hydra-resume-<time>/ for each resume)
  checkpoints/step_<N>.zip
  final_model.zip        written when the budget is reached
  progress.csv, tb/, wandb/
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from fls.errors import ConfigError

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
FINAL_MODEL = "final_model.zip"
_CHECKPOINT_RE = re.compile(r"^step_(\d+)\.zip$")
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, else it is removed.

    Readers never see a half-written file, and an interrupted write leaves the old file in place.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_model(model, path: str | os.PathLike) -> Path:
    """Save an SB3 model to ``path`` (a .zip) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            model.save(handle)
    return Path(path)


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Path of the checkpoint taken after ``step`` agent steps."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:012d}.zip"


def checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = []
    for path in folder.glob("step_*.zip") if folder.is_dir() else []:
        match = _CHECKPOINT_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def check_model_file(path: Path) -> Path:
    """Raise a ConfigError unless ``path`` is a readable SB3 model archive."""
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        raise ConfigError(f"checkpoint {path} is corrupt ({error}); delete it to fall back to an older one") from None
    if bad is not None or "data" not in names or "policy.pth" not in names:
        raise ConfigError(
            f"checkpoint {path} is corrupt (incomplete SB3 archive); delete it to fall back to an older one"
        )
    return path


def newest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The newest checkpoint of a run (the final model once training finished), validated; ConfigError if none."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run directory {run} does not exist")
    candidates = [path for _, path in checkpoints(run)]
    final = run / FINAL_MODEL
    if final.is_file():
        candidates.append(final)
    if not candidates:
        raise ConfigError(
            f"run directory {run} has no checkpoint (looked for {FINAL_MODEL} and {CHECKPOINT_DIR}/step_*.zip)"
        )
    return check_model_file(candidates[-1])


def resume_subdir(resume: str | None) -> str:
    """Hydra's output subdir: .hydra for a new run, a fresh one per resume so the original record survives."""
    return ".hydra" if not resume else f".hydra-resume-{datetime.now():%Y-%m-%d_%H-%M-%S}"
