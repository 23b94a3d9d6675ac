"""Outputs named by their content, records reused across eval.episodes, one W&B run per evaluation or video,
and the training objective a sweeper optimises."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from fls.errors import ConfigError, os_error_message
from fls.evaluation.records import Episode, EpisodeLog, read_records
from fls.evaluation.summary import write_summary
from fls.tasks.video import video_stem
from tests.conftest import evaluate_in_process, evaluate_refusal

QUIET = "logger.wandb.mode=disabled"
HEADER = {"digest": "abc", "game": "Breakout", "episodes": 4, "seed": 1000, "num_envs": 2, "num_shards": 1}


def episode(index: int) -> Episode:
    return Episode(
        index=index,
        seed=1000 + index % 2,
        game=index // 2,
        score=float(index),
        length=10,
        truncated=False,
        digest="abc",
    )


def test_video_names_say_methods_seed_and_episodes() -> None:
    stem = video_stem("final_model", "Breakout", ["attention", "gradcam", "fullgrad++"], 2000, 1)
    assert stem == "final_model_Breakout_seed2000_1ep_attention-gradcam-fullgrad++"
    others = {
        video_stem("final_model", "Breakout", ["attention", "perturbation"], 2000, 1),
        video_stem("final_model", "Breakout", ["attention", "gradcam", "fullgrad++"], 2001, 1),
        video_stem("final_model", "Breakout", ["attention", "gradcam", "fullgrad++"], 2000, 3),
        video_stem("final_model", "Breakout", ["attention", "gradcam", "fullgrad++"], 2000, 1, target="value"),
    }
    assert len(others) == 4 and stem not in others


def test_records_of_fewer_episodes_are_extended(tmp_path, capsys) -> None:
    path = tmp_path / "episodes.jsonl"
    log = EpisodeLog(path, HEADER)
    for i in range(4):
        log.append(episode(i))
    bigger = EpisodeLog(path, {**HEADER, "episodes": 8})
    assert sorted(bigger.episodes) == [0, 1, 2, 3]
    assert "extending the records of 4 episodes to 8" in capsys.readouterr().out
    bigger.append(episode(4))
    header, episodes = read_records(path)
    assert header["episodes"] == 8 and [e.index for e in episodes] == [0, 1, 2, 3, 4]
    smaller = EpisodeLog(path, {**HEADER, "episodes": 2})  # a prefix of what is recorded
    assert "using the first 2 of the 8 episodes recorded" in capsys.readouterr().out
    assert read_records(path)[0]["episodes"] == 8 and len(smaller.episodes) == 5


def test_records_of_another_protocol_name_the_override(tmp_path) -> None:
    path = tmp_path / "episodes.jsonl"
    EpisodeLog(path, HEADER).append(episode(0))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"num_envs=2, not 16: add eval\.num_envs=2 to continue them"):
        EpisodeLog(path, {**HEADER, "num_envs": 16})
    with pytest.raises(ConfigError, match=r"digest=abc, not xyz: pass another eval\.out"):
        EpisodeLog(path, {**HEADER, "digest": "xyz"})
    assert path.read_bytes() == before


def test_objective_from_progress_csv(tmp_path) -> None:
    from fls.objective import TRAINING_WINDOW, from_progress

    assert math.isnan(from_progress(tmp_path / "progress.csv").value)  # no progress.csv
    (tmp_path / "progress.csv").write_text(
        "time/total_timesteps,rollout/ep_rew_mean\n1024,\n2048,1.5\n3072,2.25\n4096,\n5120,2.2"  # torn last row
    )
    found = from_progress(tmp_path / "progress.csv")
    assert (found.value, found.source) == (2.25, TRAINING_WINDOW)  # the last whole row's mean of the last 100 games


def test_objective_names_its_source_and_standard_error(tmp_path) -> None:
    """An evaluation's objective says so, with its episodes, seed and standard error; the training window's
    says it is the window; objective.json is strict JSON (NaN -> null) and reads back the same."""
    from fls import objective

    evaluated = objective.from_evaluation({"mean": 8.66, "sem": 0.157, "episodes": 512, "seed": 100000})
    assert evaluated.describe() == "8.66 ± 0.157 (mean of a 512-episode evaluation seeded 100000.., ± standard error)"
    window = objective.from_training_window([1.0, 2.0, 3.0, 10.0])
    assert (window.value, window.games) == (4.0, 4)
    assert window.standard_error == pytest.approx(np.std([1, 2, 3, 10], ddof=1) / 2)
    assert "last 4 training games (no evaluation ran)" in window.describe()
    lonely = objective.from_training_window([7.0])  # one game: no standard error
    objective.write(tmp_path, lonely)
    text = (tmp_path / objective.OBJECTIVE_FILE).read_text()
    assert "NaN" not in text and json.loads(text)["standard_error"] is None
    back = objective.read(tmp_path)
    assert (back.value, back.source, back.games) == (7.0, objective.TRAINING_WINDOW, 1)
    assert math.isnan(back.standard_error)


@pytest.mark.slow
def test_summarising_again_continues_the_same_wandb_run(tmp_path, monkeypatch) -> None:
    """A finished evaluation run again must not leave a second offline run for `wandb sync` to upload."""
    from fls.evaluation.summary import WANDB_ID_FILE, log_to_wandb, write_summary

    monkeypatch.setenv("WANDB_SILENT", "true")
    episodes = [episode(i) for i in range(4)]
    meta = {**HEADER, "checkpoint": "x.zip"}
    stats = write_summary(tmp_path, episodes, meta)
    for _ in range(2):
        log_to_wandb(tmp_path, episodes, stats, meta, mode="offline", project="fls-test", name="eval-test")
    run_id = (tmp_path / WANDB_ID_FILE).read_text().strip()
    runs = sorted(p.name for p in (tmp_path / "wandb").glob("offline-run-*"))
    # wandb names a run's folder offline-run-<time>-<id>, adding -1 when the same second already has one
    assert len(runs) == 2 and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", n) for n in runs), runs
    assert json.loads((tmp_path / "summary.json").read_text())["episodes"] == 4
    assert Path(tmp_path / "wandb").is_dir()


def test_dry_run_description_prints_the_shared_extractor_once() -> None:
    import gymnasium as gym
    import numpy as np
    import torch

    from fls.models import build_policy, describe_policy

    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with torch.device("meta"):  # shapes without storage: skips the orthogonal initialisation
        policy = build_policy({"name": "sparse_fls"}, space, gym.spaces.Discrete(4))
    text = describe_policy(policy)
    assert text.count("SparseFLS(") == 1 and text.count("FLSAttention(") == 1
    assert "(pi_features_extractor): the same module as (features_extractor)" in text
    assert "(vf_features_extractor): the same module as (features_extractor)" in text
    assert "(action_net): Linear(in_features=512, out_features=4, bias=True)" in text


def strict_json(path: Path) -> dict:
    """The JSON of ``path``, read as strict JSON readers (jq, JavaScript, Go) would: NaN or Infinity is an error."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_the_summary_of_one_episode_is_strict_json(tmp_path) -> None:
    """One episode has no standard error: it used to be written as a bare NaN."""
    stats = write_summary(tmp_path, [episode(0)], {"game": "Breakout", "checkpoint": "x.zip"})
    assert math.isnan(stats["sem"])
    summary = strict_json(tmp_path / "summary.json")
    assert summary["sem"] is None and summary["ci95"] is None and summary["mean"] == 0.0


@pytest.mark.parametrize("name", ["episodes.jsonl", "summary.json"])
def test_a_folder_in_the_way_of_an_output_is_named_and_nothing_is_left(tmp_path, name) -> None:
    """Before: the message named the temporary file (episodes.jsonl.tmp, .summary.json.<x>.tmp), and the records'
    temporary file was left behind."""
    (tmp_path / name).mkdir()
    with pytest.raises(IsADirectoryError) as error:
        if name == "episodes.jsonl":
            EpisodeLog(tmp_path / name, HEADER)
        else:
            write_summary(tmp_path, [episode(0)], {"game": "Breakout"})
    message = os_error_message(error.value, "evaluate")
    assert message.startswith(f"{tmp_path / name}: is a directory; a folder stands where a file is needed"), message
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_video_is_never_replaced_by_one_of_other_settings(tiny_run, tmp_path) -> None:
    """Before: a rerun with another saliency.max_steps silently replaced the video of the same name."""
    common = (f"run={tiny_run}", "video=true", "saliency=[attention]", f"saliency.out={tmp_path}", QUIET)
    evaluate_in_process(*common, "saliency.max_steps=5")
    video = tmp_path / "final_model_Breakout_seed2000_1ep_attention.mp4"
    made = video.stat().st_mtime_ns
    assert strict_json(tmp_path / f"{video.name}.json")["max_steps"] == 5
    refusal = evaluate_refusal(*common, "saliency.max_steps=8")
    assert refusal == (
        f"{video} is a video with max_steps=5, not 8; give saliency.out=<another folder> to keep both, "
        "or delete it to replace it"
    )
    assert video.stat().st_mtime_ns == made
    evaluate_in_process(*common, "saliency.max_steps=5")  # the same settings make the same video: replaced
    assert video.stat().st_mtime_ns != made


def test_only_one_helper_publishes_outputs_to_wandb() -> None:
    """Every output folder is published by fls.logging.publish_to_wandb (training's live run aside)."""
    import ast

    package = Path(__file__).resolve().parent.parent / "fls"
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name in ("logging.py", "training.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            starts = isinstance(func, ast.Name) and func.id in ("init_wandb", "init_wandb_once")
            if starts or (isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "wandb"):
                found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not found


@pytest.mark.slow
def test_publishing_to_wandb_logs_files_tables_and_summary_offline(tmp_path, monkeypatch) -> None:
    from fls.logging import publish_to_wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([0, 1])
    plt.savefig(tmp_path / "figure.png")
    plt.close()
    (tmp_path / "view.html").write_text("<p>tree</p>")
    options = dict(name="test", mode="offline", project="fls-test", job_type="eval", config={"a": 1})
    files = {"x/figure": tmp_path / "figure.png", "x/view": tmp_path / "view.html"}
    for _ in range(2):
        publish_to_wandb(
            tmp_path,
            **options,
            files=files,
            tables={"x/table": (["k", "v"], [["a", 1.0], ["b", 2.0]])},
            summary={"x/mean": 1.5},
            id_file=tmp_path / "wandb_id",
        )
    run_id = (tmp_path / "wandb_id").read_text().strip()
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(run.name.split("-")[3] == run_id for run in runs), runs
    logged = b"".join(path.read_bytes() for run in runs for path in run.glob("*.wandb"))
    assert b"x/table" in logged and b"x/figure" in logged and b"x/mean" in logged
    publish_to_wandb(tmp_path / "none", **{**options, "mode": "disabled"}, summary={"x": 1})
    assert not (tmp_path / "none").exists()
