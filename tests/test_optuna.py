"""Optuna search through Hydra (experiment=lambda_search): objectives from train.py, a study in SQLite inside the
sweep folder that a second start continues, and a report over the trials."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

TINY = (
    "total_timesteps=128",
    "env.num_envs=2",
    "ppo.n_steps=64",
    "ppo.batch_size=64",
    "checkpoint_every=1000",
    "after_training.eval_episodes=2",  # a finite objective whatever the tiny budget
    "after_training.eval_num_envs=2",
    "logger.wandb.mode=disabled",
    "logger.tensorboard=false",
)


def test_lambda_search_optimises_an_evaluation_on_its_own_seeds() -> None:
    """With no other override the search's objective is an evaluation, not the last 100 training games, played on
    episode seeds that neither training nor evaluate.py's default evaluation uses."""
    from tests.conftest import compose_config

    train = compose_config("train", ["experiment=lambda_search"])
    evaluate = compose_config("evaluate", [])
    after = train.after_training
    assert after.eval_episodes >= 256
    selection = range(after.eval_seed, after.eval_seed + after.eval_num_envs)
    final = range(evaluate.eval.seed, evaluate.eval.seed + evaluate.eval.num_envs)
    training = range(train.seed, train.seed + train.env.num_envs)
    assert not set(selection) & (set(final) | set(training))


@pytest.mark.slow
def test_tiny_lambda_search_resumes_after_a_kill(cli, tmp_path) -> None:
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "search"
    args = ("-m", "experiment=lambda_search", *TINY, f"hydra.sweep.dir={sweep}")

    first = cli("train.py", *args, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (sweep / "optuna.db").is_file()
    assert f"sweep: each job writes its run directory to {sweep}/<job number>/" in first.stdout
    assert "sweep: after training, each job evaluates 2 episodes (after_training.*)" in first.stdout
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    study = optuna.load_study(study_name="lambda_search", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    study.ask()  # a third trial that was running when the search was killed

    second = cli("train.py", *args, "hydra.sweeper.n_trials=3")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 of 3 trials done, 1 interrupted (marked failed)" in second.stdout, second.stdout[-3000:]
    assert "(mean of a 2-episode evaluation seeded 100000.., ± standard error)" in second.stdout
    study = optuna.load_study(study_name="lambda_search", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    # New trials get new folders: the folder of trial n is job n, and no finished run was trained over.
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "3"]
    for trial in (t for t in study.trials if t.state.name == "COMPLETE"):
        run = OmegaConf.load(sweep / str(trial.number) / "config.yaml")
        assert run.model.entropy_lambda == pytest.approx(trial.params["model.entropy_lambda"])
        assert run.ppo.learning_rate == pytest.approx(trial.params["ppo.learning_rate"])
        assert 0.0 <= run.model.entropy_lambda <= 0.005 and 1e-4 <= run.ppo.learning_rate <= 1e-3
        # The objective is the after-training evaluation's mean, on the preset's selection seeds (kept apart from
        # evaluate.py's eval.seed), recorded with its standard error.
        summary = OmegaConf.load(sweep / str(trial.number) / "eval" / "final_model_seed100000" / "summary.json")
        assert summary.seed == 100000
        assert trial.value == pytest.approx(summary.mean)
        assert trial.user_attrs["objective_source"] == "evaluation" and trial.user_attrs["objective_games"] == 2
        assert not (sweep / str(trial.number) / "eval" / "final_model").exists()
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(study.best_value)

    report = cli("evaluate.py", "task=report", f"sweep={sweep}", "logger.wandb.mode=disabled")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (sweep / "report" / "report.md").is_file()
    rows = (sweep / "report" / "runs.csv").read_text().strip().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == ["0", "1", "3"]  # one line per trial
