"""evaluate.py end to end: records, summaries, reproducibility, interruption, shards, external agents, bad input."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from fls.errors import ConfigError
from fls.evaluation.records import FORMAT, Episode, EpisodeLog, read_records
from tests.conftest import CHILD_ENV, ROOT, evaluate_in_process, evaluate_refusal

FAST = ["eval.num_envs=3", "eval.max_episode_steps=250", "logger.wandb.mode=disabled"]


def records(out: Path, name: str = "episodes.jsonl") -> dict[int, tuple]:
    _, episodes = read_records(out / name)
    return {e.index: (e.seed, e.game, e.score, e.length, e.truncated, e.digest) for e in episodes}


def test_evaluation_writes_records_summary_histogram_and_wandb(tiny_eval) -> None:
    out, stdout = tiny_eval
    assert "Breakout 5 episodes: mean" in stdout
    recs = records(out)
    assert sorted(recs) == [0, 1, 2, 3, 4]
    # episode i is game i // 3 of the env (stream) i % 3, seeded 1000 + i % 3
    assert [r[:2] for _, r in sorted(recs.items())] == [(1000, 0), (1001, 0), (1002, 0), (1000, 1), (1001, 1)]
    summary = json.loads((out / "summary.json").read_text())
    scores = [r[2] for r in recs.values()]
    assert summary["episodes"] == 5 and summary["mean"] == pytest.approx(np.mean(scores))
    assert summary["std"] == pytest.approx(np.std(scores)) and summary["max"] == max(scores)
    assert summary["game"] == "Breakout" and summary["seed"] == 1000 and len(summary["digest"]) == 16
    assert (out / "summary.md").read_text().startswith("# Evaluation")
    assert (out / "histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_identical_invocations_give_identical_records(cli, tiny_run, tiny_eval, tmp_path) -> None:
    # tiny_eval is the first invocation (W&B on or off does not change the episodes)
    out = tmp_path / "again"
    result = cli("evaluate.py", f"run={tiny_run}", "eval.episodes=5", *FAST, f"eval.out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert records(out) == records(tiny_eval[0]) and len(records(out)) == 5


@pytest.mark.slow
def test_interrupted_evaluation_resumes_to_exactly_the_same_episodes(cli, tiny_run, tmp_path) -> None:
    reference = tmp_path / "reference"
    evaluate_in_process(f"run={tiny_run}", "eval.episodes=16", *FAST, f"eval.out={reference}")
    out = tmp_path / "interrupted"
    args = [sys.executable, str(ROOT / "evaluate.py"), f"run={tiny_run}", "eval.episodes=16", *FAST, f"eval.out={out}"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    deadline = time.time() + 300
    while time.time() < deadline:
        path = out / "episodes.jsonl"
        if path.is_file() and len(path.read_text().splitlines()) >= 3:  # header + 2 episodes
            break
        time.sleep(0.1)
    # enough episodes that the run is still going when the signal lands, even on a loaded machine
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "run the same command again" in stderr
    partial = records(out)
    assert 2 <= len(partial) < 16
    result = cli("evaluate.py", f"run={tiny_run}", "eval.episodes=16", *FAST, f"eval.out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{len(partial)} already recorded" in result.stdout
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 16  # header + exactly 16 episodes, none duplicated
    assert records(out) == records(reference)  # each episode is a function of its seed alone


@pytest.mark.slow
def test_torn_last_line_is_dropped_and_replayed(cli, tiny_run, tiny_eval, tmp_path) -> None:
    out = tmp_path / "eval"
    shutil.copytree(tiny_eval[0], out, ignore=shutil.ignore_patterns("wandb"))
    full = records(out)
    path = out / "episodes.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # a crash mid-write
    result = cli("evaluate.py", f"run={tiny_run}", "eval.episodes=5", *FAST, f"eval.out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert records(out) == full and len(path.read_text().splitlines()) == 6
    assert "4 already recorded" in result.stdout and "warning" not in result.stderr  # a crash is not damage
    assert json.loads((out / "summary.json").read_text())["skipped_lines"] == 0


HEADER = {"digest": "abc", "game": "Breakout", "episodes": 4}


def record_line(index: int, digest: str = "abc") -> str:
    episode = Episode(index, 1000 + index % 2, index // 2, float(index), 10 + index, False, digest)
    return json.dumps(asdict(episode), sort_keys=True)


def write_log(path: Path, *lines: str, end: str = "\n") -> bytes:
    header = json.dumps({"format": FORMAT, **HEADER}, sort_keys=True)
    path.write_text("\n".join([header, *lines]) + end)
    return path.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        "garbage{",  # not JSON
        "\x00\x01\x02",  # zeroed or random bytes
        '{"index": 1}',  # missing fields
        record_line(1).replace('"length": 11', '"length": "11"'),  # wrong type
        record_line(1).replace('"truncated": false', '"truncated": 0'),
    ],
)
def test_a_malformed_middle_line_is_skipped_and_the_records_after_it_kept(tmp_path, capsys, damage) -> None:
    path = tmp_path / "episodes.jsonl"
    before = write_log(path, record_line(0), damage, record_line(2), record_line(3))
    log = EpisodeLog(path, HEADER)
    assert sorted(log.episodes) == [0, 2, 3] and log.skipped == 1
    warning = capsys.readouterr().err
    assert f"warning: {path}:3: malformed record skipped" in warning and warning.count("\n") == 1
    assert path.read_bytes() == before  # the damaged line stays (and is counted again on every reopening)
    log.append(Episode(1, 1001, 0, 1.0, 11, False, "abc"))
    assert sorted(EpisodeLog(path, HEADER).episodes) == [0, 1, 2, 3]
    assert read_records(path)[1][-1].index == 1


def test_a_record_from_another_checkpoint_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "episodes.jsonl"
    before = write_log(path, record_line(0), "garbage{", record_line(1, digest="other"), record_line(2))
    for read in (lambda: EpisodeLog(path, HEADER), lambda: read_records(path)):
        with pytest.raises(
            ConfigError, match=f"{path}:4: episode 1 was played by checkpoint other, not the header's abc"
        ):
            read()
    assert path.read_bytes() == before and capsys.readouterr().err == ""  # the refusal is the only line


@pytest.mark.parametrize("tail", [record_line(2)[:17], record_line(2)])
def test_a_torn_last_line_is_dropped_silently(tmp_path, capsys, tail) -> None:
    """Bytes after the last newline are a write cut short (even if they parse): dropped, so the episode is replayed
    and the next record starts on its own line."""
    path = tmp_path / "episodes.jsonl"
    write_log(path, record_line(0), record_line(1), tail, end="")
    log = EpisodeLog(path, HEADER)
    assert sorted(log.episodes) == [0, 1] and log.skipped == 0 and capsys.readouterr().err == ""
    log.append(Episode(2, 1000, 1, 2.0, 12, False, "abc"))
    assert path.read_text().splitlines()[1:] == [record_line(0), record_line(1), record_line(2)]


@pytest.mark.slow
def test_evaluation_skips_a_damaged_line_and_counts_it(cli, tiny_run, tiny_eval, tmp_path) -> None:
    out = tmp_path / "eval"
    shutil.copytree(tiny_eval[0], out, ignore=shutil.ignore_patterns("wandb"))  # 5 episodes of FAST
    full = records(out)
    path = out / "episodes.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = "#" * len(lines[2])  # the second record, overwritten in place
    path.write_text("\n".join(lines) + "\n")
    result = cli("evaluate.py", f"run={tiny_run}", "eval.episodes=5", *FAST, f"eval.out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 already recorded" in result.stdout  # the records after the damaged line were kept
    assert f"warning: {path}:3: malformed record skipped" in result.stderr
    assert records(out) == full  # the damaged episode was played again, identically
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_lines"] == 1 and summary["episodes"] == 5

    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(summary["digest"], "0123456789abcdef")
    path.write_text("\n".join(lines) + "\n")
    refused = cli("evaluate.py", f"run={tiny_run}", "eval.episodes=5", *FAST, f"eval.out={out}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert [line for line in refused.stderr.splitlines() if line.strip()] == [
        f"error: {path}:4: episode {json.loads(lines[3])['index']} was played by checkpoint 0123456789abcdef, not the "
        f"header's {summary['digest']}: the file mixes two models; delete it or pass another eval.out"
    ]


@pytest.mark.slow
def test_shards_merge_into_the_unsharded_result(cli, tiny_run, tiny_eval, tmp_path) -> None:
    whole, sharded = tiny_eval[0], tmp_path / "sharded"  # tiny_eval: the same 5 episodes of FAST, unsharded
    first = cli(
        "evaluate.py",
        f"run={tiny_run}",
        "eval.episodes=5",
        *FAST,
        "eval.num_shards=2",
        "eval.shard=0",
        f"eval.out={sharded}",
    )
    assert first.returncode == 0 and "shards still to finish: 1 (of 2)" in first.stdout
    early = cli("evaluate.py", "task=merge", f"run={tiny_run}", f"eval.out={sharded}", "logger.wandb.mode=disabled")
    assert early.returncode != 0 and "shards still to finish: 1" in early.stderr
    second = cli(
        "evaluate.py",
        f"run={tiny_run}",
        "eval.episodes=5",
        *FAST,
        "eval.num_shards=2",
        "eval.shard=1",
        f"eval.out={sharded}",
    )
    assert second.returncode == 0 and "5 episodes: mean" in second.stdout  # the last shard merges
    merged = {**records(sharded, "episodes.shard-0-of-2.jsonl"), **records(sharded, "episodes.shard-1-of-2.jsonl")}
    assert merged == records(whole)
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((sharded / "summary.json").read_text())
    assert a["mean"] == b["mean"] and a["std"] == b["std"] and b["num_shards"] == 2


class GrayEnv(gym.Env):
    """A stand-in env with a single-frame observation, to build an agent fls cannot feed."""

    observation_space = gym.spaces.Box(0, 255, (1, 84, 84), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        return np.zeros((1, 84, 84), np.uint8), {}

    def step(self, action):
        return np.zeros((1, 84, 84), np.uint8), 0.0, True, False, {}


@pytest.mark.slow  # builds an agent and runs two processes; test_evaluate_tasks evaluates an SB3 agent fast
@pytest.mark.parametrize("algorithm", ["PPO", "A2C", "DQN"])
def test_external_sb3_agents(cli, tmp_path, algorithm) -> None:
    import stable_baselines3 as sb3

    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=1, seed=0)
    kwargs = {"buffer_size": 100} if algorithm == "DQN" else {}
    getattr(sb3, algorithm)("CnnPolicy", env, device="cpu", **kwargs).save(tmp_path / "agent.zip")
    env.close()
    assert "needs env=<game>" in evaluate_refusal(f"checkpoint={tmp_path / 'agent.zip'}", "eval.episodes=2")
    result = cli("evaluate.py", f"checkpoint={tmp_path / 'agent.zip'}", "env=Breakout", "eval.episodes=2", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    header, episodes = read_records(tmp_path / "agent_eval" / "episodes.jsonl")
    assert header["algorithm"] == algorithm and len(episodes) == 2
    assert header["deterministic"] == (algorithm == "DQN")


def test_bad_evaluation_input(tiny_run, tmp_path) -> None:
    def fails(*args: str, message: str) -> None:
        refusal = evaluate_refusal(*args)
        assert message in refusal, refusal

    empty = tmp_path / "empty"
    empty.mkdir()
    fails(f"run={empty}", message="has no checkpoint")
    fails(f"run={tiny_run}", "eval.shard=2", "eval.num_shards=2", message="eval.shard=2 is out of range")
    fails(f"run={tiny_run}", "eval.seed=1", message="overlap the training env seeds")
    fails(f"run={tiny_run}", "env=Seaquest", message="trained on Breakout")
    fails("eval.episodes=3", message="give exactly one of run=<run dir> or checkpoint=<file.zip>")
    fails(f"run={tiny_run}", "task=video_game", message="task=video_game: one of episodes, merge")
    model = tiny_run / "final_model.zip"  # before: "run directory <file> does not exist"
    fails(f"run={model}", message=f"run={model} is a file, not a run directory: give checkpoint={model} to evaluate")
    damaged = tmp_path / "damaged.zip"  # before: "delete it to fall back to an older one", which no file of its has
    damaged.write_bytes(model.read_bytes()[:3000])
    fails(f"checkpoint={damaged}", "env=Breakout", message="is corrupt (File is not a zip file); copy it again")

    foreign = tmp_path / "foreign.zip"
    shutil.copy(tiny_run / "final_model.zip", foreign)
    fails(f"checkpoint={foreign}", "env=Seaquest", message="has 4 actions but the game has 18")

    import stable_baselines3 as sb3

    sb3.PPO("CnnPolicy", GrayEnv(), device="cpu").save(tmp_path / "gray.zip")
    fails(f"checkpoint={tmp_path / 'gray.zip'}", "env=Breakout", message="expects observations of shape (1, 84, 84)")

    # A records file from another checkpoint is refused and left as it was.
    out = tmp_path / "eval"
    evaluate_in_process(f"checkpoint={foreign}", "env=Breakout", "eval.episodes=2", *FAST, f"eval.out={out}")
    before = (out / "episodes.jsonl").read_bytes()
    other = tmp_path / "other.zip"
    sb3.PPO(
        "CnnPolicy", __import__("fls.envs", fromlist=["make_vec_env"]).make_vec_env("Breakout", 1), device="cpu"
    ).save(other)
    fails(
        f"checkpoint={other}",
        "env=Breakout",
        "eval.episodes=2",
        f"eval.out={out}",
        message="holds records with digest=",
    )
    assert (out / "episodes.jsonl").read_bytes() == before


def test_eval_num_threads_reaches_the_evaluation_envs(tiny_run, tmp_path, monkeypatch) -> None:
    """eval.num_threads: the C++ worker threads of each vector env the episode runner steps."""
    import fls.evaluation.runner
    from fls.envs import make_vec_env

    made = []

    def recording(*args, **kwargs):
        made.append(make_vec_env(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(fls.evaluation.runner, "make_vec_env", recording)
    evaluate_in_process(f"run={tiny_run}", "eval.episodes=2", *FAST, "eval.num_threads=1", f"eval.out={tmp_path}")
    assert made and [env.num_threads for env in made] == [1] * len(made)
