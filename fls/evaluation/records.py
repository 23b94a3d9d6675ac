"""Per-episode evaluation records: an append-only JSON-lines file per shard, safe to interrupt and restart.

The first line is a header naming what the records belong to (checkpoint digest, game, protocol); every other
line is one finished episode. Lines are flushed and fsynced as episodes finish; a torn last line from a crash is
dropped on reopening. Restarting with the same settings keeps the finished episodes; different settings are
refused instead of mixing two experiments in one file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fls.errors import ConfigError

FORMAT = "fls.episodes/1"
# Header keys set by eval.<key> (the others come from the checkpoint or the game).
SETTINGS = ("seed", "deterministic", "max_episode_steps", "num_envs", "num_shards", "shard")


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
    if num_shards < 1:
        raise ConfigError(f"eval.num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ConfigError(
            f"eval.shard={shard} is out of range for eval.num_shards={num_shards} (valid: 0..{num_shards - 1})"
        )
    if num_shards > streams:
        raise ConfigError(f"eval.num_shards={num_shards} exceeds eval.num_envs={streams}: shards split the envs")
    if episodes < 1:
        raise ConfigError(f"eval.episodes must be >= 1, got {episodes}")
    return [i for i in range(episodes) if (i % streams) % num_shards == shard]


def records_path(out_dir: Path, shard: int, num_shards: int) -> Path:
    """episodes.jsonl, or episodes.shard-<i>-of-<k>.jsonl for sharded evaluations."""
    name = "episodes.jsonl" if num_shards == 1 else f"episodes.shard-{shard}-of-{num_shards}.jsonl"
    return out_dir / name


class EpisodeLog:
    """The records file of one shard: load what is there, append episodes as they finish."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = {"format": FORMAT, **header}
        self.episodes: dict[int, Episode] = {}
        if path.is_file():
            self._load()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(self.header, sort_keys=True) + "\n")
            os.replace(tmp, path)

    def _load(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        if not lines or not lines[0]:
            raise ConfigError(f"{self.path} is not an fls records file (empty); delete it or pass another eval.out")
        try:
            old = json.loads(lines[0])
        except json.JSONDecodeError:
            raise ConfigError(f"{self.path} is not an fls records file; delete it or pass another eval.out") from None
        for key, value in self.header.items():
            if key not in ("checkpoint", "episodes") and old.get(key) != value:
                fix = f"add eval.{key}={old.get(key)} to continue them, or " if key in SETTINGS else ""
                raise ConfigError(
                    f"{self.path} holds records with {key}={old.get(key)}, not {value}: {fix}pass another eval.out "
                    "(or delete the file) instead of mixing two evaluations"
                )
        # Episode i is the same game whatever the total, so another eval.episodes reuses the records: a larger set
        # extends them (the header is rewritten to the new total), a smaller one is a prefix of them.
        wanted, recorded_for = self.header.get("episodes"), old.get("episodes")
        if wanted != recorded_for and wanted is not None and recorded_for is not None:
            if wanted > recorded_for:
                print(f"{self.path.name}: extending the records of {recorded_for} episodes to {wanted}", flush=True)
                header_line = json.dumps(self.header, sort_keys=True).encode()
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_bytes(header_line + b"\n" + b"\n".join(lines[1:]))
                os.replace(tmp, self.path)
                raw = self.path.read_bytes()
                lines = raw.split(b"\n")
            else:
                print(f"{self.path.name}: using the first {wanted} of the {recorded_for} episodes recorded", flush=True)
        good = len(lines[0]) + 1
        for line in lines[1:]:
            if not line:
                continue
            try:
                episode = Episode(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                break  # torn write at a crash: everything after the last complete line is dropped
            self.episodes.setdefault(episode.index, episode)
            good += len(line) + 1
        if good < len(raw):
            with open(self.path, "r+b") as handle:
                handle.truncate(good)

    def append(self, episode: Episode) -> None:
        """Record a finished episode durably (flushed and fsynced before returning)."""
        if episode.index in self.episodes:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(asdict(episode), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.episodes[episode.index] = episode


def read_records(path: Path) -> tuple[dict[str, Any], list[Episode]]:
    """Header and episodes of a records file (read-only)."""
    lines = path.read_text().splitlines()
    if not lines:
        raise ConfigError(f"{path} is empty")
    header = json.loads(lines[0])
    episodes = []
    for line in lines[1:]:
        try:
            episodes.append(Episode(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            break
    return header, episodes
