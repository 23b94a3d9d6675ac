"""Reader for the published Atari-HEAD layout (Zhang et al. 2019, Zenodo, CC-BY-4.0).

Layout (per game, one of)::

    <data_dir>/meta_data.csv                   optional: columns include GameName, trial_id, ...
    <data_dir>/<game>/<trial>.txt              gaze + actions, one row per frame
    <data_dir>/<game>/<trial>.tar.bz2          the frames: <trial>/<frame_id>.png (RGB 210x160)
    <data_dir>/<game>.zip                      the same folder, read in place (not extracted)

A ``<trial>/`` folder of PNGs next to the ``.txt`` is accepted in place of the ``.tar.bz2`` (someone
extracted it). Game names match case-insensitively, ignoring ``_``/``-``/spaces and a gym suffix, so
``Breakout``, ``breakout`` and ``BreakoutNoFrameskip-v4`` all find ``breakout/``; ``MsPacman`` finds
``ms_pacman/``.

The ``.txt`` is a CSV with header ``frame_id,episode_id,score,duration(ms),unclipped_reward,action,
gaze_positions``; the gaze column is a variable-length tail ``x0,y0,x1,y1,...`` in 160x210 frame pixels
(origin top-left, points may fall outside the frame) or the literal ``null``, as any missing value.
"""

from __future__ import annotations

import csv
import io
import math
import os
import posixpath
import re
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from fls.errors import ConfigError

__all__ = [
    "FRAME_HEIGHT",
    "FRAME_WIDTH",
    "GAZE_HEADER",
    "GazeRow",
    "ParseReport",
    "Trial",
    "iter_frames",
    "list_trials",
    "parse_gaze_lines",
    "read_gaze",
]

FRAME_HEIGHT = 210
FRAME_WIDTH = 160
GAZE_HEADER = ("frame_id", "episode_id", "score", "duration(ms)", "unclipped_reward", "action", "gaze_positions")
META_FILE = "meta_data.csv"
ARCHIVE_SUFFIX = ".tar.bz2"
MAX_PROBLEMS = 20  # problem messages kept in a ParseReport; the counters count all of them

_NULL = "null"
_FRAME_ID_RE = re.compile(r"^(?P<prefix>.+)_(?P<number>\d+)$")
_GYM_SUFFIX_RE = re.compile(r"(noframeskip|deterministic)?-?v\d+$")
_GAME_COLUMNS = ("gamename", "game_name", "game")
_TRIAL_COLUMNS = ("trial_id", "trialnumber", "trial_number", "trial")


# What reading a damaged download raises: a truncated .tar.bz2 (tarfile's ReadError, bz2's EOFError or OSError),
# a corrupt .zip (BadZipFile, zlib's error), a member that cannot be read (OSError).
_DAMAGED = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error)


def _damaged(where: str, error: Exception) -> ConfigError:
    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return ConfigError(f"{where} cannot be read ({reason}): the file is damaged; download it again")


def _game_key(name: str) -> str:
    """Normalise a game name for matching: ``ALE/MsPacman-v5``, ``ms_pacman`` and ``MsPacman`` -> ``mspacman``."""
    key = name.rsplit("/", 1)[-1].lower()
    key = _GYM_SUFFIX_RE.sub("", key)
    return re.sub(r"[^a-z0-9]", "", key)


def _trial_sort_key(name: str) -> tuple[int, int, str]:
    """Order trials by their leading number (Atari-HEAD names start with the trial id), then by name."""
    head = name.split("_", 1)[0]
    return (0, int(head), name) if head.isdigit() else (1, 0, name)


@dataclass(frozen=True)
class Trial:
    """One recorded trial: where its gaze file and its frames are.

    Paths are on disk, or member names inside ``zip_file`` when the game was found as a ``.zip``.
    """

    game: str
    """The game's folder or zip name as found on disk (e.g. ``breakout``)."""
    name: str
    """The trial's file stem, e.g. ``100_RZ_3592991_Aug-24-10-38-14``."""
    gaze_file: str
    """The ``.txt`` gaze file."""
    frames: str
    """The ``.tar.bz2`` archive of PNG frames, or an extracted folder of them (on disk only)."""
    zip_file: Path | None = None
    """The game's ``.zip`` holding both files, or None when they are on disk."""
    meta: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    """The trial's row of ``meta_data.csv`` (lower-cased column names), empty when there is none."""

    @contextmanager
    def open_gaze(self) -> Iterator[IO[str]]:
        """Open the gaze file as text (UTF-8, universal newlines)."""
        with self.open_member(self.gaze_file) as raw:
            yield io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline=None)

    @contextmanager
    def open_member(self, member: str) -> Iterator[IO[bytes]]:
        """Open one of the trial's files (``gaze_file`` or ``frames``) for binary reading, on disk or in the zip."""
        if self.zip_file is None:
            with open(member, "rb") as handle:
                yield handle
        else:
            with zipfile.ZipFile(self.zip_file) as archive, archive.open(member) as handle:
                yield handle

    def describe(self) -> str:
        """Where the trial lives, for messages."""
        where = f"{self.zip_file}:" if self.zip_file is not None else ""
        return f"trial {self.name} ({where}{self.frames})"


@dataclass(eq=False)
class GazeRow:
    """One parsed row of a gaze file (one raw frame). Missing values (``null``) are None."""

    frame_id: str
    frame_number: int
    episode_id: int | None
    score: int | None
    duration_ms: float | None
    unclipped_reward: int | None
    action: int | None
    gaze: np.ndarray
    """(K, 2) float64 gaze points ``(x, y)`` in 160x210 frame pixels; K = 0 for ``null`` or a malformed row."""


@dataclass
class ParseReport:
    """What parsing one gaze file found. Problems are counted, never fatal.

    A row is *malformed* when a field does not parse, it has fewer than 7 fields, or its gaze tail has an
    odd length or a non-finite value. A malformed row whose ``frame_id`` is valid is kept, so the frame
    sequence (and with it the 4-frame stacking of the replay) stays aligned, but its gaze points are
    discarded as untrustworthy and its unparsable values become None. A row without a valid ``frame_id``,
    or repeating an earlier one, is dropped.
    """

    source: str
    header: bool = True
    """Whether the file started with the expected header line."""
    rows: int = 0
    """Non-empty data lines."""
    frames: int = 0
    """Rows kept (one per frame)."""
    malformed: int = 0
    """Rows with a problem (kept without gaze, or dropped)."""
    dropped: int = 0
    """Rows dropped entirely (no valid frame id, or a duplicate one)."""
    null_gaze: int = 0
    """Valid rows whose gaze column is ``null``."""
    gaze_points: int = 0
    """Gaze points kept."""
    points_outside: int = 0
    """Kept points that round to a pixel outside the 160x210 frame (the replay drops them)."""
    frame_gaps: int = 0
    """Places where consecutive kept rows do not have consecutive frame numbers."""
    problems: list[str] = field(default_factory=list)
    """The first ``MAX_PROBLEMS`` problems, as ``"line N: ..."``."""

    def note(self, line: int, message: str) -> None:
        """Record one problem (kept only while fewer than ``MAX_PROBLEMS`` are stored)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"line {line}: {message}")

    def summary(self) -> str:
        """One line for logs."""
        text = (
            f"{self.source}: {self.frames} frames, {self.gaze_points} gaze points "
            f"({self.points_outside} outside the frame), {self.null_gaze} rows without gaze, "
            f"{self.malformed} malformed rows ({self.dropped} dropped), {self.frame_gaps} frame-number gaps"
        )
        return text if self.header else text + ", no header line"


def list_trials(data_dir: str | os.PathLike, game: str) -> list[Trial]:
    """Find the trials of ``game`` under ``data_dir`` (published Atari-HEAD layout, see the module docstring).

    Trials are ordered by their leading trial number. ``meta_data.csv`` is optional: when present its row
    for each trial is attached as :attr:`Trial.meta`, and trials it lists that are not on disk are reported
    with a warning. A ``.txt`` gaze file without frames is skipped with a warning.

    Raises:
        ConfigError: ``data_dir`` is missing, or holds no trial of ``game``; the message lists what was found.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"gaze data directory {str(root)!r} does not exist (gaze.data)")
    key = _game_key(game)
    meta_rows = _read_meta(root)
    trials: list[Trial] = []
    sources: list[str] = []
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and _game_key(p.name) == key]
    if _game_key(root.name) == key:
        folders.insert(0, root)  # data_dir is the game's folder itself
    for folder in folders:
        sources.append(str(folder))
        trials = _trials_in_folder(folder, folder.name)
        if trials:
            break
    if not trials:
        zips = [p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() == ".zip"]
        for path in (p for p in zips if _game_key(p.stem) == key):
            sources.append(str(path))
            trials = _trials_in_zip(path, path.stem)
            if trials:
                break
    listed = [row for row in meta_rows if _game_key(row.get("game", "")) == key]
    if not trials:
        on_disk = sorted(
            p.name for p in root.iterdir() if p.is_dir() or p.suffix.lower() == ".zip" or p.name == META_FILE
        )
        meta_games = sorted({row["game"] for row in meta_rows if row.get("game")})
        detail = f"looked in {', '.join(sources)}: no <trial>.txt + <trial>{ARCHIVE_SUFFIX} pairs; " if sources else ""
        listed_note = f"{META_FILE} lists {len(listed)} trials of it but they are not on disk; " if listed else ""
        raise ConfigError(
            f"no Atari-HEAD trials of game {game!r} under {str(root)!r}: {detail}{listed_note}"
            f"found entries {on_disk or 'none'}; games in {META_FILE}: {meta_games or 'none'}"
        )
    return _attach_meta(trials, listed)


def _read_meta(root: Path) -> list[dict[str, str]]:
    """Rows of ``meta_data.csv`` with lower-cased keys plus normalised ``game`` and ``trial`` keys ([] if absent)."""
    path = root / META_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for raw in reader:
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if isinstance(v, str)}
            row["game"] = next((row[c] for c in _GAME_COLUMNS if row.get(c)), "")
            row["trial"] = next((row[c] for c in _TRIAL_COLUMNS if row.get(c)), "")
            rows.append(row)
    return rows


def _attach_meta(trials: list[Trial], listed: list[dict[str, str]]) -> list[Trial]:
    """Attach each trial's meta row (matched on the trial id = leading number of its name) and warn about gaps."""
    by_id = {row["trial"]: row for row in listed if row.get("trial")}
    out = []
    for trial in trials:
        trial_id = trial.name.split("_", 1)[0]
        row = by_id.pop(trial_id, None) or by_id.pop(trial.name, None)
        out.append(Trial(trial.game, trial.name, trial.gaze_file, trial.frames, trial.zip_file, row or {}))
    if by_id:
        warnings.warn(
            f"{META_FILE} lists trials of {trials[0].game} that are not on disk: {sorted(by_id)}", stacklevel=3
        )
    return out


def _looks_like_gaze_file(read_first_line: Iterable[str]) -> bool:
    first = next(iter(read_first_line), "")
    return first.strip().lower().startswith(GAZE_HEADER[0])


def _trials_in_folder(folder: Path, game: str) -> list[Trial]:
    """Pairs of ``<trial>.txt`` + ``<trial>.tar.bz2`` (or an extracted ``<trial>/``), in ``folder`` or one level down.

    One level down covers a per-game zip extracted into a folder of the same name (``breakout/breakout/``).
    """
    trials = []
    for directory in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        for txt in sorted(directory.glob("*.txt")):
            stem = txt.name[: -len(".txt")]
            archive = directory / (stem + ARCHIVE_SUFFIX)
            extracted = directory / stem
            if archive.is_file():
                trials.append(Trial(game, stem, str(txt), str(archive)))
            elif extracted.is_dir():
                trials.append(Trial(game, stem, str(txt), str(extracted)))
            else:
                with open(txt, encoding="utf-8-sig", errors="replace") as handle:
                    if _looks_like_gaze_file(handle):
                        warnings.warn(f"gaze file {txt} has no {stem}{ARCHIVE_SUFFIX} beside it; skipped", stacklevel=3)
        if trials:
            break
    return sorted(trials, key=lambda t: _trial_sort_key(t.name))


def _trials_in_zip(path: Path, game: str) -> list[Trial]:
    """Pairs of ``<trial>.txt`` + ``<trial>.tar.bz2`` members in the same folder of a game's zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/") and "__MACOSX" not in n]
    except _DAMAGED as error:
        raise _damaged(f"gaze data {path}", error) from None
    members = set(names)
    trials = []
    for name in names:
        if name.lower().endswith(".txt"):
            stem = posixpath.basename(name)[: -len(".txt")]
            frames = posixpath.join(posixpath.dirname(name), stem + ARCHIVE_SUFFIX)
            if frames in members:
                trials.append(Trial(game, stem, name, frames, zip_file=path))
    return sorted(trials, key=lambda t: _trial_sort_key(t.name))


def read_gaze(source: Trial | str | os.PathLike) -> tuple[list[GazeRow], ParseReport]:
    """Parse a trial's gaze file (a :class:`Trial` or the path of a ``.txt``); see :func:`parse_gaze_lines`."""
    if isinstance(source, Trial):
        try:
            with source.open_gaze() as handle:
                return parse_gaze_lines(handle, source.name)
        except _DAMAGED as error:
            where = f"{source.zip_file}:" if source.zip_file is not None else ""
            raise _damaged(f"the gaze file of trial {source.name} ({where}{source.gaze_file})", error) from None
    with open(source, encoding="utf-8-sig", errors="replace", newline=None) as handle:
        return parse_gaze_lines(handle, str(source))


def parse_gaze_lines(lines: Iterable[str], source: str = "<gaze>") -> tuple[list[GazeRow], ParseReport]:
    """Parse the lines of an Atari-HEAD gaze file into rows (one per kept frame) and a :class:`ParseReport`.

    The header line is optional (its absence is reported). ``null`` is a missing value anywhere. Trailing
    empty fields (a trailing comma) are ignored. See :class:`ParseReport` for what counts as malformed.
    """
    report = ParseReport(source)
    rows: list[GazeRow] = []
    seen: set[str] = set()
    previous_number: int | None = None
    first = True
    for line_number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        fields = [f.strip() for f in text.split(",")]
        if first:
            first = False
            if fields[0].lstrip("\ufeff").lower() == GAZE_HEADER[0]:
                continue
            report.header = False
        report.rows += 1
        row = _parse_row(fields, line_number, report)
        if row is None:
            report.malformed += 1
            report.dropped += 1
            continue
        if row.frame_id in seen:
            report.malformed += 1
            report.dropped += 1
            report.note(line_number, f"duplicate frame id {row.frame_id!r}; dropped")
            continue
        seen.add(row.frame_id)
        if previous_number is not None and row.frame_number != previous_number + 1:
            report.frame_gaps += 1
        previous_number = row.frame_number
        rows.append(row)
        report.gaze_points += len(row.gaze)
        if len(row.gaze):
            x = np.floor(row.gaze[:, 0] + 0.5)
            y = np.floor(row.gaze[:, 1] + 0.5)
            report.points_outside += int(np.count_nonzero((x < 0) | (x >= FRAME_WIDTH) | (y < 0) | (y >= FRAME_HEIGHT)))
    report.frames = len(rows)
    return rows, report


_NO_GAZE = np.zeros((0, 2), np.float64)


class _BadValue(ValueError):
    pass


def _number(text: str, integer: bool) -> int | float | None:
    if text.lower() == _NULL:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _BadValue(text) from None
    if not math.isfinite(value) or (integer and value != int(value)):
        raise _BadValue(text)
    return int(value) if integer else value


def _parse_row(fields: Sequence[str], line_number: int, report: ParseReport) -> GazeRow | None:
    """One data row -> GazeRow (None if it has no valid frame id); problems go to ``report``."""
    match = _FRAME_ID_RE.match(fields[0])
    if match is None:
        report.note(line_number, f"no valid frame id in {fields[0][:40]!r}; dropped")
        return None
    problems = []
    scalars: list[int | float | None] = []
    for index, integer in ((1, True), (2, True), (3, False), (4, True), (5, True)):
        try:
            scalars.append(_number(fields[index], integer) if index < len(fields) else None)
        except _BadValue:
            problems.append(f"bad {GAZE_HEADER[index]} {fields[index][:20]!r}")
            scalars.append(None)
    gaze = _NO_GAZE
    tail = list(fields[6:])
    while tail and tail[-1] == "":
        tail.pop()
    if len(fields) < len(GAZE_HEADER):
        problems.append(f"{len(fields)} fields, expected at least {len(GAZE_HEADER)}")
    elif len(tail) == 1 and tail[0].lower() == _NULL:
        report.null_gaze += 1
    elif not tail or len(tail) % 2:
        problems.append(f"gaze tail of {len(tail)} values, expected an even number")
    else:
        try:
            gaze = np.array([float(v) for v in tail], np.float64).reshape(-1, 2)
        except ValueError:
            problems.append("non-numeric gaze value")
        else:
            if not np.isfinite(gaze).all():
                problems.append("non-finite gaze value")
                gaze = _NO_GAZE
    if problems:
        report.malformed += 1
        report.note(line_number, "; ".join(problems) + "; frame kept without gaze")
        gaze = _NO_GAZE
    episode, score, duration, reward, action = scalars
    return GazeRow(
        frame_id=fields[0],
        frame_number=int(match["number"]),
        episode_id=episode,  # type: ignore[arg-type]
        score=score,  # type: ignore[arg-type]
        duration_ms=duration,
        unclipped_reward=reward,  # type: ignore[arg-type]
        action=action,  # type: ignore[arg-type]
        gaze=gaze,
    )


def iter_frames(trial: Trial, frame_ids: Sequence[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(frame_id, rgb)`` for ``frame_ids`` (default: every row of the gaze file), in that order.

    ``rgb`` is a (210, 160, 3) uint8 RGB frame decoded in memory. The ``.tar.bz2`` is read as one stream
    (``tarfile`` mode ``r|*``), never unpacked to disk: a frame that arrives before its turn is kept as
    compressed PNG bytes until then (a few KB each, so even an archive in arbitrary order costs tens of
    MB, and an archive in frame order costs nothing). Archive members that are not wanted are skipped.

    Raises:
        ConfigError: a wanted frame is missing from the archive, or a PNG does not decode to 210x160 RGB;
            the message names the trial and the frame.
    """
    if frame_ids is None:
        frame_ids = [row.frame_id for row in read_gaze(trial)[0]]
    if len(set(frame_ids)) != len(frame_ids):
        raise ValueError(f"{trial.describe()}: frame_ids must be unique")
    if not frame_ids:
        return
    if trial.zip_file is None and Path(trial.frames).is_dir():
        yield from _iter_folder(trial, frame_ids)
        return
    wanted = set(frame_ids)
    pending: dict[str, bytes] = {}
    next_index = 0
    try:
        with trial.open_member(trial.frames) as raw, tarfile.open(fileobj=raw, mode="r|*") as archive:
            for member in archive:
                base = posixpath.basename(member.name)
                if not member.isfile() or base.startswith("._") or not base.lower().endswith(".png"):
                    continue
                frame_id = base[: -len(".png")]
                if frame_id not in wanted:
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                pending[frame_id] = handle.read()
                wanted.discard(frame_id)
                while next_index < len(frame_ids) and frame_ids[next_index] in pending:
                    frame_id = frame_ids[next_index]
                    yield frame_id, _decode_png(pending.pop(frame_id), trial, frame_id)
                    next_index += 1
                if next_index == len(frame_ids):
                    return
    except _DAMAGED as error:
        raise _damaged(f"the frames of {trial.describe()}", error) from None
    missing = frame_ids[next_index]
    others = len(frame_ids) - next_index - 1 - len(pending)
    raise ConfigError(
        f"{trial.describe()}: frame {missing} of the gaze file is missing from the frame archive"
        + (f" (and {others} more)" if others else "")
    )


def _iter_folder(trial: Trial, frame_ids: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    folder = Path(trial.frames)
    for frame_id in frame_ids:
        path = folder / f"{frame_id}.png"
        if not path.is_file():
            raise ConfigError(f"{trial.describe()}: frame {frame_id} of the gaze file is missing ({path})")
        yield frame_id, _decode_png(path.read_bytes(), trial, frame_id)


def _decode_png(data: bytes, trial: Trial, frame_id: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3):
        shape = None if image is None else image.shape
        raise ConfigError(
            f"{trial.describe()}: frame {frame_id} is not a {FRAME_HEIGHT}x{FRAME_WIDTH} RGB PNG (decoded {shape})"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # cv2 decodes to BGR
