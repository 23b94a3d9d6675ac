"""Per-episode evaluation records: an append-only JSON-lines file per shard, safe to interrupt and restart.

The first line is a header naming what the records belong to (checkpoint digest, game, protocol); every other
line is one finished episode. Lines are flushed and fsynced as episodes finish; a torn last line from a crash is
dropped on reopening (its episode is played again); a malformed line elsewhere (local damage) is skipped with a
warning and counted, and the records after it are kept. Every record must carry the header's digest. Restarting
with the same settings keeps the finished episodes; different settings are refused instead of mixing two
experiments in one file.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fls.config_schema import check_shards
from fls.errors import ConfigError
from fls.rundir import ADDED_SETTINGS, atomic_path, atomic_write_text, naming, to_json

FORMAT = "fls.episodes/1"
# Header keys that are settings of evaluate.py (eval.<key>): a mismatch names the override that continues the records.
SETTINGS = (
    "seed",
    "deterministic",
    "max_episode_steps",
    "repeat_action_probability",
    "num_envs",
    "num_shards",
    "shard",
)


def header_value(header: dict[str, Any], key: str) -> Any:
    """A records header's value of ``key``; a key added later (:data:`fls.rundir.ADDED_SETTINGS`) reads as the value
    older records were made with."""
    return header.get(key, ADDED_SETTINGS.get(key))


@dataclass(frozen=True)
class Episode:
    """One evaluation episode: a whole game, played from its own seed."""

    index: int
    seed: int  # the seed of the episode's stream (its env's no-op generator)
    game: int  # which game of its stream: episode index = game * streams + stream
    score: float
    length: int
    truncated: bool
    digest: str


def shard_episodes(episodes: int, shard: int, num_shards: int, streams: int) -> list[int]:
    """Episode indices of one shard: the episodes of streams shard, shard + num_shards, ... (episode i belongs to
    stream i % streams), so each shard seeds and plays its own streams."""
    check_shards(shard, num_shards, streams)
    if episodes < 1:
        raise ConfigError(f"eval.episodes must be >= 1, got {episodes}")
    return [i for i in range(episodes) if (i % streams) % num_shards == shard]


def records_path(out_dir: Path, shard: int, num_shards: int) -> Path:
    """episodes.jsonl, or episodes.shard-<i>-of-<k>.jsonl for sharded evaluations."""
    name = "episodes.jsonl" if num_shards == 1 else f"episodes.shard-{shard}-of-{num_shards}.jsonl"
    return out_dir / name


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "index": int,
    "seed": int,
    "game": int,
    "score": (int, float),
    "length": int,
    "truncated": bool,
    "digest": str,
}


def parse_record(line: bytes | str) -> Episode | str:
    """One record line as an Episode, or why it is not one (exact fields, their types, finite score)."""
    try:
        fields = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "not JSON"
    if not isinstance(fields, dict) or set(fields) != set(_FIELDS):
        return f"fields are not {', '.join(_FIELDS)}"
    for key, kind in _FIELDS.items():
        value = fields[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return f"{key}={value!r} is not a valid {key}"
    if not math.isfinite(fields["score"]) or min(fields["index"], fields["game"], fields["length"]) < 0:
        return "score, index, game or length out of range"
    return Episode(**{**fields, "score": float(fields["score"])})


@dataclass
class RecordsScan:
    """What a records file holds: its header, its valid episodes (file order), the line numbers of the malformed
    lines that were skipped, and how many bytes end with the last complete line (after it: a torn write)."""

    header: dict[str, Any]
    episodes: list[Episode]
    skipped: list[int]
    complete_bytes: int


def scan_records(path: Path) -> RecordsScan:
    """Read a records file, warning (on stderr) about each malformed line, which is skipped.

    The bytes after the last newline are a write cut short by a crash (every record ends with one): they are
    ignored without a warning. A record whose digest differs from the header's is a ConfigError: the file mixes
    two checkpoints, and no count of skipped lines could make its summary right.
    """
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    lines = complete.split(b"\n")[:-1]
    if not lines or not lines[0].strip():
        raise ConfigError(f"{path} is not an fls records file (empty); delete it or pass another eval.out")
    try:
        header = json.loads(lines[0])
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an fls records file; delete it or pass another eval.out")
    episodes, skipped = [], {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        episode = parse_record(line)
        if isinstance(episode, str):
            skipped[number] = episode
            continue
        if episode.digest != header.get("digest"):
            raise ConfigError(
                f"{path}:{number}: episode {episode.index} was played by checkpoint {episode.digest}, not the "
                f"header's {header.get('digest')}: the file mixes two models; delete it or pass another eval.out"
            )
        episodes.append(episode)
    for number, why in skipped.items():  # warned once the file is known to be usable: a refusal stays one line
        print(f"warning: {path}:{number}: malformed record skipped ({why})", file=sys.stderr)
    return RecordsScan(header, episodes, list(skipped), len(complete))


class EpisodeLog:
    """The records file of one shard: load what is there, append episodes as they finish."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = {"format": FORMAT, **header}
        self.episodes: dict[int, Episode] = {}
        self.skipped = 0  # malformed lines found in the file (they stay in it and are counted again next time)
        if path.is_file():
            self._load()
        else:
            atomic_write_text(path, to_json(self.header, sort_keys=True) + "\n")

    def _load(self) -> None:
        scan = scan_records(self.path)
        old = scan.header
        for key, value in self.header.items():
            recorded = header_value(old, key)
            if key not in ("checkpoint", "episodes") and recorded != value:
                fix = f"add eval.{key}={recorded} to continue them, or " if key in SETTINGS else ""
                raise ConfigError(
                    f"{self.path} holds records with {key}={recorded}, not {value}: {fix}pass another eval.out "
                    "(or delete the file) instead of mixing two evaluations"
                )
        for episode in scan.episodes:
            self.episodes.setdefault(episode.index, episode)
        self.skipped = len(scan.skipped)
        # Episode i is the same game whatever the total, so another eval.episodes reuses the records: a larger set
        # extends them (the header is rewritten to the new total), a smaller one is a prefix of them.
        wanted, recorded_for = self.header.get("episodes"), old.get("episodes")
        if wanted is not None and recorded_for is not None and wanted != recorded_for:
            if wanted > recorded_for:
                print(f"{self.path.name}: extending the records of {recorded_for} episodes to {wanted}", flush=True)
                body = self.path.read_bytes()[: scan.complete_bytes].split(b"\n", 1)[1]
                header_line = to_json(self.header, sort_keys=True).encode()
                with atomic_path(self.path) as tmp:
                    tmp.write_bytes(header_line + b"\n" + body)
                return  # the rewrite also dropped any torn tail
            print(f"{self.path.name}: using the first {wanted} of the {recorded_for} episodes recorded", flush=True)
        if scan.complete_bytes < self.path.stat().st_size:
            with open(self.path, "r+b") as handle:  # drop the torn write so the next record starts a new line
                handle.truncate(scan.complete_bytes)

    def append(self, episode: Episode) -> None:
        """Record a finished episode durably (flushed and fsynced before returning)."""
        if episode.index in self.episodes:
            return
        try:
            with open(self.path, "a") as handle:
                handle.write(to_json(asdict(episode), sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:  # a full disk: name the records file, not "a file"
            raise naming(error, self.path) from None
        self.episodes[episode.index] = episode


def read_records(path: Path) -> tuple[dict[str, Any], list[Episode]]:
    """Header and valid episodes of a records file (read-only; see :func:`scan_records`)."""
    scan = scan_records(path)
    return scan.header, scan.episodes
