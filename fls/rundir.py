"""The run directory: one place that knows its layout, and atomic writes for everything in it.

<run dir>/
  config.yaml            resolved config of the run (what resume and evaluate read)
  .lock                  while a process writes the run: its flock, one writer at a time (fls.locks)
  .hydra/                the invocation (config.yaml, hydra.yaml, overrides.yaml; resumes.jsonl, one line a resume)
  checkpoints/step_<N>.zip
  final_model.zip        written when the budget is reached
  progress.csv, tb/, wandb/
  eval/<checkpoint>/     evaluate.py's records and summary of that checkpoint (evaluation_dir)
    faithfulness/<methods>_<baseline>/   its faithfulness results (faithfulness_dir)
  gaze/<checkpoint>_<game>_<methods>/    gaze agreement (gaze_dir)
  objects/<checkpoint>_<game>_seed<seed>_<episodes>ep_<methods>/   saliency against game objects (objects_dir)
  videos/, trees/        saliency videos and attention trees (videos_dir, trees_dir)
<sweep dir>/report/      a sweep's report (report_dir)

A checkpoint file outside a run gets ``<checkpoint stem>_eval/``, ``_gaze/``, ``_objects/``, ``_videos/``,
``_trees/`` beside it; every task's ``<task>.out=`` replaces the default folder.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fls.errors import ConfigError

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
FINAL_MODEL = "final_model.zip"
SUMMARY_FILE = "summary.json"  # every result folder's summary (evaluation, gaze, faithfulness)
EVAL_DIR = "eval"
FAITHFULNESS_DIR = "faithfulness"
GAZE_DIR = "gaze"
OBJECTS_DIR = "objects"
VIDEOS_DIR = "videos"
TREES_DIR = "trees"
REPORT_DIR = "report"
OUTPUT_DIRS = (EVAL_DIR, GAZE_DIR, OBJECTS_DIR, VIDEOS_DIR, TREES_DIR, REPORT_DIR)  # what the tasks write inside a run
_CHECKPOINT_RE = re.compile(r"^step_(\d+)\.zip$")
_UMASK = os.umask(0)
os.umask(_UMASK)


def naming(error: OSError, target: Path, tmp: Path | None = None) -> OSError:
    """``error`` naming ``target`` when it names no file or only the temporary one (a full disk, a folder in
    the way of the rename): messages name the file the user asked for, not ``.<name>.*.tmp``."""
    if error.filename is not None and (tmp is None or Path(error.filename) != tmp):
        return error
    return OSError(error.errno, error.strerror or str(error), str(target))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, else it is removed.

    Readers never see a half-written file, and an interrupted write leaves the old file in place. An OSError
    names ``path`` (not the temporary file) unless it is about another file.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise naming(error, target) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    except OSError as error:
        raise naming(error, target, tmp_path) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf: undefined numbers) replaced by None, in any nesting."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def to_json(value: Any, **options: Any) -> str:
    """Strict JSON text of ``value`` (``json.dumps`` options): an undefined number is ``null``, never the bare
    ``NaN`` / ``Infinity`` that other JSON readers reject. Every JSON file fls writes goes through here."""
    return json.dumps(strict_json(value), allow_nan=False, **options)


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> None:
    """Write ``value`` as strict JSON (:func:`to_json`) atomically."""
    atomic_write_text(path, to_json(value, indent=indent) + "\n")


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


def check_model_file(path: Path, in_run: bool = False) -> Path:
    """Raise a ConfigError unless ``path`` is a readable SB3 model archive. ``in_run``: ``path`` is the newest
    model of a run that has older checkpoints, used once it is deleted (the message says so only then)."""
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    what = "delete it to fall back to the run's previous checkpoint" if in_run else "copy it again from its source"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        raise ConfigError(f"checkpoint {path} is corrupt ({error}); {what}") from None
    if bad is not None or "data" not in names or "policy.pth" not in names:
        raise ConfigError(f"checkpoint {path} is corrupt (incomplete SB3 archive); {what}")
    return path


def latest_model(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of a run (the final model once training finished), validated; None if it has none
    yet (e.g. it was stopped during start-up). ConfigError if the directory does not exist."""
    run = Path(run_dir)
    if run.is_file():
        raise ConfigError(f"{run} is a file, not a run directory")
    if not run.is_dir():
        raise ConfigError(f"run directory {run} does not exist")
    candidates = [path for _, path in checkpoints(run)]
    final = run / FINAL_MODEL
    if final.is_file():
        candidates.append(final)
    return check_model_file(candidates[-1], in_run=len(candidates) > 1) if candidates else None


def newest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """:func:`latest_model`, a ConfigError if there is none."""
    found = latest_model(run_dir)
    if found is None:
        raise ConfigError(
            f"run directory {run_dir} has no checkpoint (looked for {FINAL_MODEL} and {CHECKPOINT_DIR}/step_*.zip)"
        )
    return found


# Directories this process created (parents first): removed again if still empty when the command ends, so a
# refused or dry command leaves nothing behind.
_CREATED: list[Path] = []


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p path``, remembering each folder it created (see remove_created_if_empty)."""
    target = Path(path).absolute()
    missing = []
    for folder in (target, *target.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # another process made it meanwhile: not ours to remove
        _CREATED.append(folder)
    return target


def new_directory(path: str | os.PathLike) -> Path:
    """Create ``path`` exclusively; if it exists, ``<path>_2``, ``<path>_3``, ... (the first that does not).

    Two processes asking for the same name (two launches in one second, one job number on two machines) get two
    directories: ``os.mkdir`` fails for all but one of them.
    """
    target = Path(path).absolute()
    for attempt in range(1, 10_000):
        candidate = target if attempt == 1 else target.with_name(f"{target.name}_{attempt}")
        make_dirs(candidate.parent)
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except FileNotFoundError:  # a parent was removed by a refused command's clean-up just now: try again
            make_dirs(candidate.parent)
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
        _CREATED.append(candidate)
        return candidate
    raise ConfigError(f"{target}: 10,000 directories of this name exist; choose another name")


def remove_created_if_empty() -> None:
    """Remove the directories this process created that are still empty (deepest first)."""
    while _CREATED:
        folder = _CREATED.pop()
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty (the command wrote there) or gone


def new_sweep_dir(path: str) -> str:
    """Resolver of hydra.sweep.dir: a sweep directory created exclusively (cached by Hydra's resolver cache, which
    its launchers copy into every job's config, so it is created once per sweep)."""
    return str(new_directory(path))


def new_job_dir(sweep_dir: str, job_num: Any) -> str:
    """Resolver of hydra.sweep.subdir: ``<job num>`` created exclusively in the sweep (``<num>_2`` if taken)."""
    return new_directory(Path(sweep_dir) / str(job_num)).name


def _explicit(config: Any, key: str) -> bool:
    return any(str(item).lstrip("+~").split("=", 1)[0] == key for item in config.hydra.overrides.hydra)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - Hydra is a dependency; this keeps the module importable without it
    Callback = object  # type: ignore[assignment,misc]


class OutputDirs(Callback):  # type: ignore[misc,valid-type]
    """Hydra callback (configs' hydra.callbacks) that decides, before Hydra creates it, where a run writes.

    fresh=true (train.py): a new run gets its directory created exclusively (``_2``, ... on a name collision);
    ``resume=`` and ``dry_run=true`` create nothing (Hydra is pointed at the current directory, and nothing is
    written there). fresh=false (evaluate.py): Hydra's run dir is the current directory, the tasks write only
    into their output folders. An explicit ``hydra.run.dir=`` is created as given. Folders made here are
    removed again when the command ends with them still empty (remove_created_if_empty).
    """

    def __init__(self, fresh: bool = False) -> None:
        self.fresh = fresh

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf, read_write

        from fls.errors import fail, os_error_message

        target = Path(".")
        try:
            if self.fresh and (OmegaConf.select(config, "resume") or OmegaConf.select(config, "dry_run")):
                target = Path(".")
            elif self.fresh and not _explicit(config, "hydra.run.dir"):
                target = new_directory(str(config.hydra.run.dir))
            else:
                target = make_dirs(str(config.hydra.run.dir))
        except OSError as error:
            fail(os_error_message(error, str(config.hydra.job.name)))
        with read_write(config.hydra):
            config.hydra.run.dir = str(target)


# Settings recorded beside results only since a later version, with the value older results were made with.
# Sticky actions: none before the setting; a video's game objects: not drawn before the setting.
ADDED_SETTINGS: dict[str, Any] = {"repeat_action_probability": 0.0, "objects": False}


def settings_differ(
    path: Path, settings: Mapping[str, Any], recorded: Callable[[Any], Any] = lambda record: record
) -> str | None:
    """None when the JSON file ``path`` records (``recorded(its content)``) the same ``settings``; else how they
    differ, as ``with <key>=<recorded>, not <asked>`` (or ``of an unknown set-up`` when it records none)."""
    try:
        earlier = recorded(json.loads(path.read_text()))
    except (OSError, ValueError, AttributeError, TypeError):
        earlier = None
    if not isinstance(earlier, Mapping):
        return "of an unknown set-up"
    old = {**{k: v for k, v in ADDED_SETTINGS.items() if k in settings}, **earlier}
    key = next((k for k in settings if old.get(k) != settings[k]), None)
    return None if key is None else f"with {key}={old.get(key)!r}, not {settings[key]!r}"


def refuse_other_results(
    out: Path, settings: Mapping[str, Any], what: str, recorded: Callable[[Any], Any] = lambda summary: summary
) -> None:
    """Refuse to replace the ``what`` results in ``out`` (its ``summary.json``) made from another model, other data
    or other settings: ``recorded(summary)`` gives the settings they were made with. The same settings again are
    accepted (they give the same numbers); the message names ``<what>.out=``, which keeps both."""
    path = out / SUMMARY_FILE
    if not path.is_file():
        return
    differs = settings_differ(path, settings, recorded)
    if differs is None:
        return
    differs = f"results {differs}"
    raise ConfigError(
        f"{out} already holds {what} {differs}; give {what}.out=<another folder> to keep both, "
        f"or delete {out} to replace them"
    )


def _task_dir(configured: Any, run_dir: Path | None, checkpoint: Path, folder: str) -> Path:
    """``configured``, else <run>/<folder>/, else <checkpoint stem>_<folder>/ beside the file."""
    if configured:
        return Path(str(configured)).expanduser().resolve()
    if run_dir is not None:
        return run_dir / folder
    return checkpoint.parent / f"{checkpoint.stem}_{folder}"


def evaluation_dir(run_dir: Path | None, checkpoint: Path | str, configured: Any = None) -> Path:
    """Where a checkpoint's evaluation lives: ``configured`` (eval.out), else <run>/eval/<checkpoint stem>/
    (``checkpoint`` a file, or a stem such as ``final_model_seed7``), else <checkpoint stem>_eval/ beside the file."""
    if configured:
        return Path(str(configured)).expanduser().resolve()
    stem = checkpoint.stem if isinstance(checkpoint, Path) else str(checkpoint)
    if run_dir is not None:
        return run_dir / EVAL_DIR / stem
    return Path(checkpoint).parent / f"{stem}_{EVAL_DIR}"


def faithfulness_root(evaluation: Path) -> Path:
    """The folder of an evaluation's faithfulness results, one subfolder per :func:`faithfulness_dir`."""
    return evaluation / FAITHFULNESS_DIR


def faithfulness_dir(evaluation: Path, methods: list[str], baseline: str) -> Path:
    """A faithfulness result below its evaluation, named by what it scores so that another set of methods or
    another baseline never replaces it: ``faithfulness/attention-gradcam_blur``."""
    return faithfulness_root(evaluation) / f"{'-'.join(methods)}_{baseline}"


def gaze_root(run_dir: Path | None, checkpoint: Path) -> Path:
    """The folder of gaze results: <run>/gaze/, else <checkpoint stem>_gaze/ beside the file."""
    return _task_dir(None, run_dir, checkpoint, GAZE_DIR)


def gaze_dir(configured: Any, run_dir: Path | None, checkpoint: Path, game: str, methods: list[str]) -> Path:
    """``configured`` (gaze.out), else a folder below :func:`gaze_root` named by what it scores so that another
    checkpoint, game or set of methods never replaces it: ``final_model_Breakout_attention-gradcam``."""
    if configured:
        return _task_dir(configured, run_dir, checkpoint, GAZE_DIR)
    return gaze_root(run_dir, checkpoint) / f"{checkpoint.stem}_{game}_{'-'.join(methods)}"


def objects_root(run_dir: Path | None, checkpoint: Path) -> Path:
    """The folder of object-scoring results: <run>/objects/, else <checkpoint stem>_objects/ beside the file."""
    return _task_dir(None, run_dir, checkpoint, OBJECTS_DIR)


def objects_dir(configured: Any, run_dir: Path | None, checkpoint: Path, name: str) -> Path:
    """``configured`` (objects.out), else ``<objects_root>/<name>``, ``name`` saying which games and maps were
    scored (:func:`fls.saliency.settings.video_stem`: ``final_model_Breakout_seed2000_1ep_attention-gradcam``), so that
    results of another checkpoint, game, seed or set of methods never replace these."""
    if configured:
        return _task_dir(configured, run_dir, checkpoint, OBJECTS_DIR)
    return objects_root(run_dir, checkpoint) / name


def videos_dir(configured: Any, run_dir: Path | None, checkpoint: Path) -> Path:
    """Where saliency videos go: ``configured`` (saliency.out), else <run>/videos/, else <stem>_videos/."""
    return _task_dir(configured, run_dir, checkpoint, VIDEOS_DIR)


def trees_dir(configured: Any, run_dir: Path | None, checkpoint: Path) -> Path:
    """Where attention trees go: ``configured`` (tree.out), else <run>/trees/, else <stem>_trees/."""
    return _task_dir(configured, run_dir, checkpoint, TREES_DIR)


def report_dir(sweep_dir: Path) -> Path:
    """A sweep's report folder when report.out is not given."""
    return sweep_dir / REPORT_DIR
