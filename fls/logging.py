"""Log sinks behind SB3's logger interface: progress.csv (append-safe for resume), TensorBoard and W&B."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat

from fls.rundir import atomic_path

PROGRESS_FILE = "progress.csv"
STEP_KEY = "time/total_timesteps"


def read_complete_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the whole rows of a CSV file: a last line without its line end (torn by a kill mid-write)
    and rows with another number of cells than the header are left out."""
    with open(path, newline="") as handle:
        text = handle.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        return [], []
    header = lines[0]
    return header, [dict(zip(header, cells, strict=True)) for cells in lines[1:] if len(cells) == len(header)]


def _logged_by(row: dict[str, str], step: int) -> bool:
    """Whether a progress row was logged at or before ``step`` (rows without a step are kept)."""
    value = row.get(STEP_KEY) or ""
    try:
        return not value or float(value) <= step
    except ValueError:
        return False


class ProgressCSV(KVWriter):
    """progress.csv that survives resumes: keeps earlier rows (dropping those past ``keep_until_step``, which
    were logged after the checkpoint the run resumes from, and a last row torn by a kill mid-write) and widens the
    header when new keys appear."""

    def __init__(self, path: str | os.PathLike, keep_until_step: int | None = None):
        self.path = Path(path)
        self.keys: list[str] = []
        self.rows: list[dict[str, str]] = []
        if keep_until_step is not None and self.path.is_file():
            self.keys, rows = read_complete_rows(self.path)
            self.rows = [row for row in rows if _logged_by(row, keep_until_step)]
            self._rewrite()
        else:
            self.path.write_text("")

    def _rewrite(self) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.keys)
            writer.writeheader()
            writer.writerows(self.rows)

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        row = {
            k: ("" if v is None else str(v)) for k, v in key_values.items() if "csv" not in (key_excluded.get(k) or ())
        }
        self.rows.append(row)
        new_keys = [k for k in row if k not in self.keys]
        if new_keys:
            self.keys.extend(new_keys)
            self._rewrite()
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.keys).writerow(row)

    def close(self) -> None:
        pass


class WandbWriter(KVWriter):
    """Sends every logged row to a W&B run, with the agent step as W&B's x-axis."""

    def __init__(self, run: Any):
        self.run = run
        run.define_metric(STEP_KEY)
        run.define_metric("*", step_metric=STEP_KEY)

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        data = {
            k: v
            for k, v in key_values.items()
            if "wandb" not in (key_excluded.get(k) or ()) and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        data[STEP_KEY] = step
        self.run.log(data)

    def close(self) -> None:
        pass


def init_wandb(
    run_dir: Path,
    *,
    mode: str,
    project: str,
    name: str,
    config: Mapping[str, Any],
    group: str | None = None,
    tags: Sequence[str] = (),
    entity: str | None = None,
    run_id: str | None = None,
    job_type: str = "train",
) -> Any:
    """Start (or, with ``run_id``, continue) a W&B run stored under ``run_dir/wandb``.

    Offline and disabled modes never touch the network or prompt for a login.
    """
    import wandb

    if mode not in ("offline", "online", "disabled"):
        from fls.errors import ConfigError

        raise ConfigError(f"logger.wandb.mode must be offline, online or disabled, got '{mode}'")
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=project,
        entity=entity,
        name=name,
        group=group,
        tags=list(tags),
        config=dict(config),
        dir=str(run_dir),
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        job_type=job_type,
        settings=wandb.Settings(console="off", x_disable_stats=True, save_code=False, disable_git=True),
    )


def init_wandb_once(id_file: Path, run_dir: Path, **options: Any) -> Any:
    """:func:`init_wandb` continuing the run whose id ``id_file`` holds (written on the first call).

    Re-running a finished evaluation or video then adds to its W&B run instead of starting a second one that
    ``wandb sync`` would upload beside the first.
    """
    from fls.rundir import atomic_write_text

    run_id = id_file.read_text().strip() if id_file.is_file() else None
    run = init_wandb(run_dir, run_id=run_id or None, **options)
    if not run_id and options.get("mode") != "disabled":
        atomic_write_text(id_file, run.id)
    return run


# how a published file is shown in W&B, by suffix
_MEDIA = {".png": "Image", ".svg": "Image", ".html": "Html", ".mp4": "Video", ".gif": "Video"}


def publish_to_wandb(
    out_dir: Path,
    *,
    name: str,
    mode: str,
    project: str,
    job_type: str,
    config: Mapping[str, Any],
    tags: Sequence[str] = (),
    group: str | None = None,
    files: Mapping[str, Path] | None = None,
    tables: Mapping[str, tuple[Sequence[str], Sequence[Sequence[Any]]]] | None = None,
    summary: Mapping[str, Any] | None = None,
    id_file: Path | None = None,
) -> None:
    """Publish an output folder as one W&B run (stored under ``out_dir/wandb``; nothing when ``mode`` is disabled):
    ``files`` by key (PNG/SVG as images, HTML as HTML, MP4/GIF as videos), ``tables`` as ``(columns, rows)``,
    ``summary`` as the run's summary. With ``id_file`` (kept beside the outputs) publishing the same output again
    continues its run (:func:`init_wandb_once`)."""
    if mode == "disabled":
        return
    import wandb

    options = dict(mode=mode, project=project, name=name, config=config, group=group, tags=tags, job_type=job_type)
    run = init_wandb_once(id_file, out_dir, **options) if id_file is not None else init_wandb(out_dir, **options)
    logged: dict[str, Any] = {}
    for key, (columns, rows) in (tables or {}).items():
        logged[key] = wandb.Table(columns=list(columns), data=[list(row) for row in rows])
    for key, path in (files or {}).items():
        kind = _MEDIA[path.suffix]
        media = getattr(wandb, kind)
        logged[key] = media(str(path), format=path.suffix[1:]) if kind == "Video" else media(str(path))
    if logged:
        run.log(logged)
    if summary:
        run.summary.update(dict(summary))
    run.finish()


def make_logger(run_dir: Path, *, tensorboard: bool, wandb_run: Any | None, resume_step: int | None) -> Logger:
    """SB3 logger writing progress.csv, TensorBoard events (run_dir/tb) and W&B (when a run is given)."""
    formats: list[KVWriter] = [ProgressCSV(run_dir / PROGRESS_FILE, keep_until_step=resume_step)]
    if tensorboard:
        formats.append(TensorBoardOutputFormat(str(run_dir / "tb")))
    if wandb_run is not None:
        formats.append(WandbWriter(wandb_run))
    return Logger(str(run_dir), formats)
