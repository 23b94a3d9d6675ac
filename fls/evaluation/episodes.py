"""Scoring an agent on episodes: play a shard's missing episodes (resumable), merge shards, summarise."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fls.agents.loading import Loaded, load, repeat_action_probability
from fls.errors import ConfigError, Interrupted
from fls.evaluation.records import EpisodeLog, header_value, records_path, scan_records, shard_episodes
from fls.evaluation.runner import acting_epsilon, run_episodes
from fls.evaluation.summary import log_to_wandb, write_summary
from fls.locks import hold, remove_orphans
from fls.rundir import CONFIG_FILE, evaluation_dir, make_dirs
from fls.runtime import StopSignals

SUMMARY_LOCK = ".summary.lock"
SUMMARY_WAIT_S = 600.0  # a summary takes seconds; waiting beats refusing the shard that completes the set


def check_seeds(cfg: DictConfig, run_dir: Path | None) -> None:
    """Evaluation seeds must not be seeds the agent was trained on."""
    if run_dir is None:
        return
    if not (run_dir / CONFIG_FILE).is_file():  # an rl-zoo3 experiment folder: env i is seeded seed + i too
        from fls.agents.zoo import read_zoo_folder

        experiment = read_zoo_folder(run_dir)
        if experiment.seed is None:
            return
        first, count = experiment.seed, experiment.n_envs
    else:
        trained = OmegaConf.load(run_dir / CONFIG_FILE)
        first, count = int(trained.seed), int(trained.env.num_envs)
    lo, hi = int(cfg.eval.seed), int(cfg.eval.seed) + int(cfg.eval.num_envs)
    if lo < first + count and first < hi:
        raise ConfigError(
            f"eval.seed={lo} makes episode seeds {lo}..{hi - 1} overlap the training env seeds "
            f"{first}..{first + count - 1}"
            f"; choose eval.seed >= {first + count} or below {first - int(cfg.eval.num_envs) + 1}"
        )


def evaluate_episodes(cfg: DictConfig, loaded: Loaded | None = None, progress: bool = True) -> dict[str, Any] | None:
    """Play this shard's missing episodes, append their records, and summarise when every shard is complete.

    ``loaded``: the agent to play (one already in memory, e.g. right after training); None: load it from
    ``cfg.run`` / ``cfg.checkpoint``."""
    ev = dict(cfg.eval)  # checked against fls/config_schema.py by whoever composed cfg (evaluation_config too)
    indices = shard_episodes(ev["episodes"], ev["shard"], ev["num_shards"], ev["num_envs"])
    loaded = loaded if loaded is not None else load(cfg)
    agent, checkpoint, run_dir, game, spec = loaded.agent, loaded.checkpoint, loaded.run_dir, loaded.game, loaded.spec
    check_seeds(cfg, run_dir)
    max_steps = int(ev["max_episode_steps"] or spec.eval_max_episode_steps)
    epsilon = acting_epsilon(agent, bool(ev["deterministic"]), ev.get("epsilon"))
    sticky = repeat_action_probability(cfg, run_dir)

    out_dir = evaluation_dir(run_dir, checkpoint, cfg.eval.out)
    meta = {
        "checkpoint": str(checkpoint),
        "digest": agent.digest,
        "algorithm": agent.algorithm,
        "game": game,
        "episodes": ev["episodes"],
        "seed": ev["seed"],
        "deterministic": bool(ev["deterministic"]) or (not agent.stochastic and not epsilon),
        "epsilon": epsilon,  # Q-learning agents' ε-greedy (drawn from each episode's generator); null: sampled
        "max_episode_steps": max_steps,
        "repeat_action_probability": sticky,  # sticky actions (records made before the key: 0)
        "num_envs": ev["num_envs"],
        "num_shards": ev["num_shards"],
    }
    records = records_path(out_dir, ev["shard"], ev["num_shards"])
    make_dirs(out_dir)
    # One writer per records file: shards of one evaluation run side by side, a second copy of a shard is refused.
    with hold(out_dir / f".{records.name}.lock", f"evaluation records {records}"):
        remove_orphans(out_dir, f"{records.name}.tmp")
        remove_orphans(out_dir, f".{records.name}.*.tmp")
        fresh = not records.exists()
        log = EpisodeLog(records, {**meta, "shard": ev["shard"]})
        pending = [i for i in indices if i not in log.episodes]
        done_before = len(indices) - len(pending)
        print(
            f"{game}: {len(indices)} episodes in this shard, {done_before} already recorded in {log.path}", flush=True
        )
        stop = StopSignals("stopping after the episodes in play, keeping those finished")
        try:
            with stop:
                run_episodes(
                    agent,
                    spec,
                    pending,
                    base_seed=ev["seed"],
                    streams=ev["num_envs"],
                    num_threads=int(ev["num_threads"]),
                    deterministic=bool(ev["deterministic"]),
                    epsilon=epsilon,
                    max_episode_steps=max_steps,
                    repeat_action_probability=sticky,
                    on_episode=log.append,
                    should_stop=lambda: stop.requested,
                    progress=progress,
                )
        except KeyboardInterrupt:  # a second signal
            stop.signal = stop.signal or signal.SIGINT
        except ConfigError:  # e.g. the model's scores became NaN: a records file this run began holds nothing
            if fresh and not log.episodes:
                log.path.unlink(missing_ok=True)
            raise
        if stop.requested:
            raise Interrupted(
                f"interrupted with {len(log.episodes)}/{len(indices)} episodes recorded in {log.path}; "
                "run the same command again to finish",
                stop.exit_code,
            )
    if ev["num_shards"] > 1:
        return merge(out_dir, cfg, required=False)
    # The file may hold more episodes than asked for (recorded for a larger eval.episodes): summarise the set asked.
    episodes = [e for i, e in log.episodes.items() if i < ev["episodes"]]
    return summarise(out_dir, episodes, {**meta, "skipped_lines": log.skipped}, cfg)


def summarise(out_dir: Path, episodes: list, meta: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """Write the summary files, log them to W&B and print the one-line result.

    Under the folder's summary lock: the last two shards of an evaluation may finish at the same moment.
    """
    with hold(out_dir / SUMMARY_LOCK, f"the summary in {out_dir}", wait=SUMMARY_WAIT_S):
        remove_orphans(out_dir)
        return _summarise(out_dir, episodes, meta, cfg)


def _summarise(out_dir: Path, episodes: list, meta: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    stats = write_summary(out_dir, episodes, meta, bins=int(cfg.eval.histogram_bins))
    checkpoint = Path(meta["checkpoint"])
    run_name = checkpoint.parent.parent.name if checkpoint.parent.name == "checkpoints" else checkpoint.parent.name
    name = f"eval-{meta['game']}-{run_name}"
    log_to_wandb(
        out_dir,
        episodes,
        stats,
        meta,
        mode=str(cfg.logger.wandb.mode),
        project=str(cfg.logger.wandb.project),
        name=name,
    )
    print(
        f"{meta['game']} {stats['episodes']} episodes: mean {stats['mean']:.2f} std {stats['std']:.2f} "
        f"median {stats['median']:.1f} min {stats['min']:.0f} max {stats['max']:.0f} "
        f"(time-limited {stats['truncated']}); records and summary in {out_dir}"
    )
    return stats


def merge(out_dir: Path, cfg: DictConfig, required: bool = True) -> dict[str, Any] | None:
    """Combine the shard files of one evaluation into one summary (all shards must be complete)."""
    files = sorted(out_dir.glob("episodes.shard-*-of-*.jsonl"))
    if not files:
        raise ConfigError(f"no shard records (episodes.shard-*-of-*.jsonl) in {out_dir}")
    headers, episodes, skipped = [], {}, 0
    for path in files:
        scan = scan_records(path)
        headers.append(scan.header)
        skipped += len(scan.skipped)
        for episode in scan.episodes:
            episodes.setdefault(episode.index, episode)
    keys = ("digest", "game", "episodes", "seed", "deterministic", "epsilon", "max_episode_steps", "num_envs")
    keys = (*keys, "repeat_action_probability", "num_shards")
    for header in headers[1:]:
        for key in keys:
            # A shard extended to a larger eval.episodes before the others is not a disagreement, only unfinished.
            first, other = header_value(headers[0], key), header_value(header, key)
            if key != "episodes" and other != first:
                raise ConfigError(f"shard files in {out_dir} disagree on {key} ({first} vs {other})")
    num_shards, streams = (int(headers[0][k]) for k in ("num_shards", "num_envs"))
    total = max(int(header["episodes"]) for header in headers)
    episodes = {index: episode for index, episode in episodes.items() if index < total}
    missing = sorted(set(range(total)) - set(episodes))
    if missing:
        shards = sorted({(i % streams) % num_shards for i in missing})
        message = (
            f"{len(episodes)}/{total} episodes recorded; shards still to finish: "
            f"{', '.join(map(str, shards))} (of {num_shards})"
        )
        if required:
            raise ConfigError(message)
        print(message)
        return None
    meta = {key: headers[0][key] for key in (*keys, "checkpoint", "algorithm") if key in headers[0]}
    meta["repeat_action_probability"] = header_value(headers[0], "repeat_action_probability")
    meta["episodes"] = total
    return summarise(out_dir, list(episodes.values()), {**meta, "skipped_lines": skipped}, cfg)
