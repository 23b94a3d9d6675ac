"""The Python API (fls.load / explain / evaluate / train): the commands' behaviour from a notebook, FlsError instead
of an exit, and the same numbers as the commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import fls
from tests.conftest import TINY_SPARSE_FLS


def observations(agent, count: int = 3) -> np.ndarray:
    """Real Breakout observations: a few steps of the agent's own game."""
    from fls.envs import make_vec_env

    env = make_vec_env(agent.game, num_envs=1, seed=5)
    obs = env.reset()
    frames = []
    for _ in range(count):
        frames.append(obs[0])
        obs, *_ = env.step(agent.act(obs))
    env.close()
    return np.stack(frames)


def test_load_explain_and_evaluate_a_run(tiny_run, tiny_eval, tmp_path) -> None:
    agent = fls.load(tiny_run, device="cpu")
    assert (agent.game, agent.algorithm, agent.run_dir) == ("Breakout", "AttentionPPO", tiny_run)
    obs = observations(agent)
    actions = agent.act(obs, deterministic=True)
    assert actions.shape == (3,) and ((0 <= actions) & (actions < agent.n_actions)).all()

    maps = fls.explain(agent, obs, ["attention", "gradcam"])
    assert sorted(maps) == ["attention", "gradcam"]
    for saliency in maps.values():
        assert saliency.shape == (3, 84, 84) and saliency.dtype == np.float32
        assert saliency.min() >= 0.0 and np.allclose(saliency.reshape(3, -1).max(axis=1), 1.0)

    # the same episodes as evaluate.py's (tiny_eval: 5 episodes, 3 envs, 250 steps, seed 1000), in memory ...
    from fls.evaluation.records import read_records

    _, expected = read_records(tiny_eval[0] / "episodes.jsonl")
    in_memory = fls.evaluate(agent, episodes=2, num_envs=2, progress=False)
    assert in_memory.out is None and in_memory.summary["episodes"] == 2 and len(in_memory.episodes) == 2
    # ... and written exactly as evaluate.py eval.out= writes them, continued rather than replayed
    out = tmp_path / "eval"
    written = fls.evaluate(agent, episodes=2, num_envs=2, out=out, progress=False)
    assert json.loads((out / "summary.json").read_text())["mean"] == written.mean == in_memory.mean
    assert [e.score for e in written.episodes] == [e.score for e in in_memory.episodes]
    assert expected  # the command's records exist beside: same file format
    again = fls.evaluate(agent, episodes=2, num_envs=2, out=out, progress=False)
    assert again.mean == written.mean


def test_an_sb3_zip_needs_its_game(tmp_path) -> None:
    import stable_baselines3 as sb3

    from fls.envs import make_vec_env

    env = make_vec_env("Pong", num_envs=1, seed=0)
    sb3.PPO("CnnPolicy", env, device="cpu", n_steps=8, batch_size=8).save(tmp_path / "ppo.zip")
    env.close()
    with pytest.raises(fls.FlsError, match=r"needs game=<game> \(the file does not say which game it plays"):
        fls.load(tmp_path / "ppo.zip")
    agent = fls.load(tmp_path / "ppo.zip", game="Pong", device="cpu")
    assert (agent.game, agent.algorithm, agent.run_dir) == ("Pong", "PPO", None)
    maps = fls.explain(agent, observations(agent, 2), "gradcam")
    assert maps["gradcam"].shape == (2, 84, 84)


def test_bad_input_raises_fls_error_not_system_exit(tiny_run, tmp_path) -> None:
    agent = fls.load(tiny_run, device="cpu")
    obs = np.zeros((1, 4, 84, 84), np.uint8)
    cases = [
        (lambda: fls.load(tmp_path / "nowhere"), r"does not exist"),
        (lambda: fls.load(""), r"source is empty"),
        (lambda: fls.load(tiny_run, game="Pong"), r"trained on Breakout"),
        (lambda: fls.explain(agent, obs, ["bogus"]), r"unknown saliency method 'bogus' \(valid: attention"),
        (lambda: fls.explain(agent, np.zeros((2, 84, 84), np.uint8), "gradcam"), r"expected \(B, 4, 84, 84\)"),
        (lambda: fls.explain(agent, obs, "gradcam", target="bogus"), r"unknown saliency target"),
        (lambda: fls.evaluate(agent, episodes=0), r"eval\.episodes=0: an integer >= 1"),
        (lambda: fls.evaluate(agent, episodes=2, seed=1), r"overlap the training env seeds"),
        (lambda: fls.train(["bogus_key=1"]), r"bogus_key"),
        (lambda: fls.train(["ppo.learning_rate=nan"]), r"ppo\.learning_rate=nan"),
    ]
    for call, message in cases:
        with pytest.raises(fls.FlsError, match=message):
            call()


@pytest.mark.slow
def test_videos_trees_faithfulness_and_reports_from_python(tiny_run, tmp_path) -> None:
    """Each task of evaluate.py as a call on a loaded agent, writing what the command writes."""
    agent = fls.load(tiny_run, device="cpu")
    video = fls.video(agent, ["attention", "gradcam"], max_steps=6, out=tmp_path / "videos")
    assert video.parent == tmp_path / "videos" and video.is_file() and video.suffix == ".mp4"
    assert json.loads(video.with_name(video.name + ".json").read_text())["max_steps"] == 6
    pngs = fls.trees(agent, [2], n=2, depth=1, out=tmp_path / "trees")
    assert len(pngs) == 1 and pngs[0].is_file() and pngs[0].with_suffix(".json").is_file()
    folder = fls.faithfulness(
        agent, ["gradcam"], frames=4, percent_step=50, sanity_frames=2, out=tmp_path / "faithfulness"
    )
    assert (folder / "summary.json").is_file()
    report = fls.report_sweep([tiny_run], out=tmp_path / "report")
    assert (report / "report.md").is_file()
    with pytest.raises(fls.FlsError, match=r"saliency\.max_steps=0"):
        fls.video(agent, max_steps=0)
    with pytest.raises(fls.FlsError, match=r"gaze"):
        fls.score_gaze(agent, tmp_path / "no-atari-head")
    assert not (tiny_run / "videos").exists()  # refusals wrote nothing


@pytest.mark.slow
def test_train_then_load_in_one_process(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = fls.train(
        [*TINY_SPARSE_FLS, "total_timesteps=128", "after_training.eval_episodes=2", "after_training.eval_num_envs=2"],
        run_dir=tmp_path / "run",
    )
    assert run.dir == tmp_path / "run" and run.final_model.is_file()
    assert math.isfinite(run.objective)
    assert json.loads((run.dir / "eval" / "final_model" / "summary.json").read_text())["mean"] == run.objective
    assert callable(fls.train)  # training did not replace the function by a module of the same name
    agent = fls.load(run.dir, device="cpu")
    assert agent.path == run.final_model
    with pytest.raises(fls.FlsError, match="already holds a run"):
        fls.train([*TINY_SPARSE_FLS, "total_timesteps=128"], run_dir=run.dir)
    with pytest.raises(fls.FlsError, match="no CUDA device is available"):
        fls.train([*TINY_SPARSE_FLS, "total_timesteps=128", "device=cuda:7"])
    assert not (tmp_path / "outputs").exists()  # a refused run leaves no folder behind
    default = fls.train([*TINY_SPARSE_FLS, "total_timesteps=128"])  # outputs/<date>/<time>_... under the cwd
    assert default.dir.parent.parent == tmp_path / "outputs" and default.final_model.is_file()
