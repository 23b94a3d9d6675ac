"""task=report: the tables, curves and gap list of a sweep; the sweep presets; the parameter table."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fls.errors import ConfigError
from fls.evaluation.records import read_records
from fls.report.make import parameter_table, write_report
from fls.report.runs import find_runs, mean_curve, read_curve
from fls.report.tables import build_report

# One thread per process: on a busy 2-core machine torch's default thread pool makes tiny runs ~10x slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY_TRAIN = (
    "model=nature_cnn",
    "env=Breakout",
    "env.num_envs=2",
    "ppo.n_steps=64",
    "ppo.batch_size=64",
    "total_timesteps=512",
    "logger.wandb.mode=disabled",
    "logger.tensorboard=false",
)
TINY_EVAL = ("eval.episodes=3", "eval.num_envs=3", "eval.max_episode_steps=200", "logger.wandb.mode=disabled")


# ---------------------------------------------------------------------------------------------------------------
# Synthetic runs: the files train.py, evaluate.py and task=gaze write, with known numbers


def fake_run(
    path: Path,
    *,
    model: str = "nature_cnn",
    lam: float = 0.0,
    game: str = "Breakout",
    seed: int = 1,
    curve: list[tuple[int, float | None]] | None = None,
    scores: list[float] | None = None,
    shards: int = 1,
    requested: int | None = None,
    gaze: dict[str, dict[str, float]] | None = None,
    protocol: dict[str, object] | None = None,
    sticky: float | None = None,
) -> Path:
    """A run directory as the real commands leave it (config.yaml, progress.csv, eval records, gaze summary)."""
    path.mkdir(parents=True)
    config = {"model": {"name": model, "entropy_lambda": lam}, "env": {"name": game, "num_envs": 8}, "seed": seed}
    if sticky is not None:  # training's sticky actions (runs made before the setting have none)
        config["env"]["repeat_action_probability"] = sticky
    (path / "config.yaml").write_text(yaml.safe_dump({**config, "total_timesteps": 1000}))
    (path / ".hydra").mkdir()
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))  # Hydra's copy: not another run
    (path / "final_model.zip").write_bytes(b"PK")
    rows = ["time/iterations,time/total_timesteps,rollout/ep_rew_mean"]
    for i, (step, value) in enumerate(curve or []):
        rows.append(f"{i + 1},{step},{'' if value is None else value}")
    (path / "progress.csv").write_text("\n".join(rows) + "\n")
    if scores is not None:
        out = path / "eval" / "final_model"
        out.mkdir(parents=True)
        total = requested or len(scores)
        header = {
            "format": "fls.episodes/1",
            "digest": "d",
            "game": game,
            "episodes": total,
            "num_envs": 16,
            "num_shards": shards,
            "deterministic": False,
            "epsilon": None,
            "max_episode_steps": 30000,
            **(protocol or {}),
        }
        for shard in range(shards):
            name = "episodes.jsonl" if shards == 1 else f"episodes.shard-{shard}-of-{shards}.jsonl"
            lines = [json.dumps({**header, "shard": shard})]
            for index in range(shard, len(scores), shards):
                episode = {
                    "index": index,
                    "seed": 1000 + index % 16,
                    "game": index // 16,
                    "score": scores[index],
                    "length": 10,
                }
                lines.append(json.dumps({**episode, "truncated": False, "digest": "d"}))
            (out / name).write_text("\n".join(lines) + "\n")
    if gaze is not None:
        write_gaze(path, game, gaze)
    return path


GAZE_SETTINGS = {
    "target": "action",
    "gradcam_rectified": False,
    "layer": None,
    "max_frames": None,
    "splits": 100,
    "other_frames": 10,
    "seed": 0,
    "kl_eps": 0.0,
}


def write_gaze(
    run: Path, game: str, gaze: dict[str, dict[str, float]], checkpoint: str = "final_model", **settings: object
) -> Path:
    """A gaze summary.json as task=gaze writes it, in its default folder."""
    out = run / "gaze" / f"{checkpoint}_{game}_{'-'.join(gaze)}"
    out.mkdir(parents=True)
    recorded = {"checkpoint": checkpoint, "digest": "d", "game": game, "trials": ["t"], "methods": list(gaze)}
    summary = {
        "checkpoint": str(run / f"{checkpoint}.zip"),
        "game": game,
        "settings": {**recorded, **GAZE_SETTINGS, **settings},
        "gaze/skipped_inputs": 0.0,
    }
    for method, metrics in gaze.items():
        for metric, value in metrics.items():
            summary[f"gaze/{game}/{method}/{metric}"] = value
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def check_images(png: Path, svg: Path) -> None:
    """A real PNG with pixels, and an SVG document."""
    from PIL import Image

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.size[0] > 100 and image.size[1] > 100
        assert len(set(np.asarray(image.convert("L")).ravel().tolist())) > 2  # not a blank canvas
    assert "<svg" in svg.read_text()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def synthetic_sweep(tmp_path) -> Path:
    """Two games, three lines (nature_cnn; sparse_fls at λ 0 and 0.001), with every kind of gap."""
    sweep = tmp_path / "multirun" / "2026-01-01" / "00-00-00"
    job = itertools.count()
    gaze = {"attention": {"nss": 0.5, "nss_std": 0.1, "kl": 3.5, "sauc": 0.53, "cc": 0.2, "frames": 100.0}}
    for game, base in (("Breakout", 10.0), ("Seaquest", 200.0)):
        for model, lam in (("nature_cnn", 0.0), ("sparse_fls", 0.0), ("sparse_fls", 0.001)):
            for seed in (1, 9, 17):
                scores = [base + seed + k for k in range(4)]
                curve = [(0, None), (100 + seed, seed), (1000, 2.0 * seed), (2000 + seed, 3.0 * seed)]
                fake_run(
                    sweep / str(next(job)),
                    model=model,
                    lam=lam,
                    game=game,
                    seed=seed,
                    curve=curve,
                    scores=scores,
                    shards=2 if seed == 9 else 1,
                    gaze={"attention": {**gaze["attention"], "nss": 0.5 + seed / 100}}
                    if model != "nature_cnn"
                    else None,
                )
    # gaps: no evaluation and no reward data; an unfinished evaluation
    fake_run(sweep / "18", game="Breakout", seed=25, curve=[(128, None)])
    fake_run(sweep / "19", game="Breakout", seed=33, scores=[1.0, 2.0], requested=5, curve=[(128, None)])
    # W&B's offline run folders carry a config.yaml too: not a run
    wandb_files = sweep / "report" / "wandb" / "offline-run-x" / "files"
    wandb_files.mkdir(parents=True)
    (wandb_files / "config.yaml").write_text(yaml.safe_dump({"model": {"value": {"name": "x"}}}))
    return sweep


# ---------------------------------------------------------------------------------------------------------------
# Fast tests


def test_find_runs_reads_every_job_and_nothing_else(synthetic_sweep) -> None:
    runs, base = find_runs(str(synthetic_sweep))
    assert base == synthetic_sweep.resolve()
    assert [r.name for r in runs] == [str(i) for i in range(20)]  # natural order: 2 before 10
    assert {(r.model, r.entropy_lambda) for r in runs} == {
        ("nature_cnn", 0.0),
        ("sparse_fls", 0.0),
        ("sparse_fls", 0.001),
    }
    listed, base = find_runs([str(synthetic_sweep / "3"), str(synthetic_sweep / "4")])
    assert base is None and [r.seed for r in listed] == [1, 9]


def test_sweeps_without_runs_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs sweep="):
        find_runs(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="is not a directory"):
        find_runs(str(tmp_path / "nowhere"))
    (tmp_path / "empty" / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "empty" / "0" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(ConfigError, match="no training runs in"):
        find_runs(str(tmp_path / "empty"))


def test_mean_curve_interpolates_seeds_onto_the_common_range() -> None:
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 10.0, 20.0]))
    b = (np.array([5.0, 15.0]), np.array([1.0, 1.0]))
    grid, mean, std = mean_curve([a, b], points=3)
    assert grid.tolist() == [5.0, 10.0, 15.0]
    assert mean.tolist() == [3.0, 5.5, 8.0]
    assert std.tolist() == [2.0, 4.5, 7.0]
    grid, mean, std = mean_curve([(np.array([7.0]), np.array([2.0]))])
    assert grid.tolist() == [7.0] and mean.tolist() == [2.0] and std.tolist() == [0.0]


def test_report_of_a_synthetic_sweep(synthetic_sweep, tmp_path) -> None:
    runs, _ = find_runs(str(synthetic_sweep))
    report = build_report(runs, title="Report: test", grid_points=11)
    files = write_report(report, tmp_path / "report")

    # Table 3 from the records: mean ± std of the 12 episodes pooled over seeds, and the std across seed means
    rows = {(r["game"], r["label"]): r for r in read_csv(files["scores_csv"])}
    assert set(rows) == {
        (g, m) for g in ("Breakout", "Seaquest") for m in ("nature_cnn", "sparse_fls λ=0", "sparse_fls λ=0.001")
    }
    for (game, _), row in rows.items():
        base = 10.0 if game == "Breakout" else 200.0
        pooled = [base + seed + k for seed in (1, 9, 17) for k in range(4)]
        seed_means = [base + seed + 1.5 for seed in (1, 9, 17)]
        assert float(row["mean"]) == pytest.approx(np.mean(pooled))
        assert float(row["episode_std"]) == pytest.approx(np.std(pooled))
        assert float(row["seed_std"]) == pytest.approx(np.std(seed_means))
        assert row["seeds"] == "3" and row["episodes"] == "12"
        assert row["episodes_per_seed_min"] == row["episodes_per_seed_max"] == "4"
    table = files["scores_md"].read_text()
    assert "| Game | nature_cnn | seed std | sparse_fls λ=0 | seed std | sparse_fls λ=0.001 | seed std |" in table
    # pooled: deviations ±9.5, ±8.5, ±7.5, ±6.5, ±1.5, ±0.5 from 20.5 -> variance 527 / 12; seeds: 8 * sqrt(2/3)
    assert f"| Breakout | 20.5 ± {np.sqrt(527 / 12):.1f} | {8 * np.sqrt(2 / 3):.1f} |" in table
    assert "3 seeds × 4 episodes per seed" in table

    # Table 4 from the gaze summaries
    saliency = {(r["game"], r["label"]): r for r in read_csv(files["saliency_csv"])}
    assert set(saliency) == {(g, m) for g in ("Breakout", "Seaquest") for m in ("sparse_fls λ=0", "sparse_fls λ=0.001")}
    row = saliency[("Breakout", "sparse_fls λ=0.001")]
    assert float(row["nss"]) == pytest.approx(np.mean([0.51, 0.59, 0.67]))
    assert float(row["nss_std"]) == pytest.approx(np.std([0.51, 0.59, 0.67]))
    assert float(row["nss_frame_std"]) == pytest.approx(0.1) and row["frames"] == "300"
    assert "| Breakout | sparse_fls λ=0.001 | attention | 0.590 ± 0.065 |" in files["saliency_md"].read_text()

    # Figure 3 data: each seed interpolated onto the range all seeds cover (steps 117..2001)
    curves = {(c.game, c.label): c for c in report.curves}
    curve = curves[("Breakout", "nature_cnn")]
    assert curve.seeds == 3 and curve.steps[0] == 117 and curve.steps[-1] == 2001
    per_seed = [np.interp(curve.steps, [100 + s, 1000, 2000 + s], [s, 2.0 * s, 3.0 * s]) for s in (1, 9, 17)]
    np.testing.assert_allclose(curve.mean, np.mean(per_seed, axis=0))
    np.testing.assert_allclose(curve.std, np.std(per_seed, axis=0))
    check_images(files["png"], files["svg"])

    # the gaps, in the markdown and runs.csv
    text = files["report_md"].read_text()
    missing = {r["run"]: r["missing"] for r in read_csv(files["runs_csv"]) if r["missing"]}
    assert "evaluation of final_model" in missing["18"] and "reward curve" in missing["18"]
    assert "complete evaluation of final_model (2/5 episodes)" in missing["19"]
    assert all("gaze results" in missing[str(i)] for i in (0, 1, 2, 9, 10, 11, 18, 19))
    assert "| `18` | nature_cnn | Breakout | 25 |" in text and "python evaluate.py run=" in text
    assert "3" not in missing and "## Missing results" in text


def test_learning_curves_are_the_iqm_across_runs_with_bootstrap_bands(tmp_path) -> None:
    """2 models x 2 games x 3 seeds of different lengths: on the steps every run of a panel covers, the IQM and
    95% band of each game's raw curves and of all games human-normalised are fls.stats' on the same matrices."""
    from fls import stats
    from fls.report.learning import ALL_GAMES

    models, games, seeds = ("nature_cnn", "sparse_fls"), ("Breakout", "Pong"), (1, 2, 3)
    curves = {}
    job = itertools.count()
    for model in models:
        for game in games:
            for seed in seeds:
                steps = [100 * seed, 1000, 2000 + 500 * seed]  # starts 100..300, ends 2500..3500
                values = [float(v) * seed + len(model) + (-20 if game == "Pong" else 0) for v in (1, 5, 9)]
                curves[(model, game, seed)] = (np.array(steps, float), np.array(values))
                fake_run(
                    tmp_path / "s" / str(next(job)),
                    model=model,
                    game=game,
                    seed=seed,
                    curve=[*zip(steps, values, strict=True)],
                )
    report = build_report(find_runs(str(tmp_path / "s"))[0], title="t", grid_points=5)
    files = write_report(report, tmp_path / "r")
    rows = read_csv(files["learning_csv"])
    assert {r["panel"] for r in rows} == {ALL_GAMES, *games} and {r["label"] for r in rows} == set(models)
    grid = np.linspace(300, 2500, 5)  # the steps all three seeds cover: cut to the shortest, not extrapolated

    def check(panel: str, matrices: dict[str, np.ndarray], panel_games: list[str], normalise: bool) -> None:
        for t, step in enumerate(grid):
            table = stats.aggregate({m: matrices[m][t] for m in models}, panel_games, normalise=normalise)
            iqm = table[table.metric == "iqm"].set_index("model")
            for model in models:
                (row,) = [r for r in rows if (r["panel"], r["label"], float(r["step"])) == (panel, model, step)]
                for column in ("value", "ci_low", "ci_high"):
                    got = float(row["iqm" if column == "value" else column])
                    assert got == pytest.approx(iqm.loc[model, column], rel=1e-12, abs=1e-12), (panel, t, column)
                assert row["runs"] == "3" and row["games"] == " ".join(panel_games)

    def on_grid(model: str, game: str) -> np.ndarray:  # (steps, runs)
        return np.stack([np.interp(grid, *curves[(model, game, seed)]) for seed in seeds], axis=1)

    for game in games:
        check(game, {m: on_grid(m, game)[:, :, None] for m in models}, [game], normalise=False)
    check(ALL_GAMES, {m: np.stack([on_grid(m, g) for g in games], axis=2) for m in models}, list(games), True)
    check_images(files["learning_png"], files["svg"])
    text = files["report_md"].read_text()
    assert "![learning curves, IQM](learning_curves.png)" in text and "not an evaluation" in text


def test_table_3_plus_minus_is_the_pooled_episode_std(tmp_path) -> None:
    """Two seeds with a wide spread inside each and close means: the paper's ± is the std of the 5 episodes."""
    fake_run(tmp_path / "s" / "0", seed=1, scores=[0.0, 100.0, 50.0])  # mean 50
    fake_run(tmp_path / "s" / "1", seed=9, scores=[10.0, 110.0])  # mean 60
    runs, _ = find_runs(str(tmp_path / "s"))
    for ddof in (0, 1):
        report = build_report(runs, title="t", ddof=ddof)
        files = write_report(report, tmp_path / f"report{ddof}")
        (row,) = read_csv(files["scores_csv"])
        # pooled 0, 100, 50, 10, 110: mean 54 (not 55, the mean of the seed means); deviations -54, 46, -4,
        # -44, 56 -> variance (2916 + 2116 + 16 + 1936 + 3136) / 5 = 2024
        assert float(row["mean"]) == pytest.approx(54.0, abs=1e-12)
        assert float(row["episode_std"]) == pytest.approx(np.sqrt(2024.0), abs=1e-12)
        assert float(row["seed_std"]) == pytest.approx(5.0 if ddof == 0 else np.sqrt(50.0), abs=1e-12)
        assert row["episodes"] == "5" and row["seeds"] == "2" and row["seed_means"] == "50.0 60.0"
        seed_std = 5.0 if ddof == 0 else np.sqrt(50.0)
        table = files["scores_md"].read_text()
        assert f"| Breakout | 54.0 ± {np.sqrt(2024.0):.1f} | {seed_std:.1f} |" in table
        assert "2 seeds × 2–3 episodes per seed" in table and f"(ddof {ddof})" in table


def test_table_4_reads_the_evaluated_checkpoint_and_says_what_it_left_out(tmp_path) -> None:
    """Gaze results of another checkpoint stay out of Table 4; KL's dropped frames and disagreeing results of one
    method, and seeds scored with other settings, are named rather than averaged in silently."""
    attention = {"nss": 1.0, "kl": 4.0, "sauc": 0.6, "cc": 0.3, "frames": 10.0, "kl_dropped_frames": 2.0}
    first = fake_run(tmp_path / "s" / "0", seed=1, scores=[1.0], gaze={"attention": attention})
    write_gaze(first, "Breakout", {"attention": {**attention, "nss": 9.0}}, checkpoint="step_000000001024")
    second = fake_run(tmp_path / "s" / "1", seed=9, scores=[1.0])
    write_gaze(second, "Breakout", {"attention": {**attention, "nss": 2.0, "kl_dropped_frames": 1.0}})
    runs, _ = find_runs(str(tmp_path / "s"))
    report = build_report(runs, title="t")
    (row,) = report.saliency
    assert row["nss"] == pytest.approx(1.5) and row["kl_dropped_frames"] == 3 and row["frames"] == 20
    table = write_report(report, tmp_path / "r1")["saliency_md"].read_text()
    assert "| 4.000 ± 0.000 (without 3 frames) |" in table and "left out of its mean" in table
    assert report.notes == []

    # the same method again in another folder of the same checkpoint, scored with another KL
    write_gaze(second, "Breakout", {"attention": {**attention, "kl": 9.5}, "gradcam": attention}, kl_eps=1e-7)
    report = build_report(find_runs(str(tmp_path / "s"))[0], title="t")
    conflict, mixed = report.notes
    assert "1: gaze results for Breakout attention differ between final_model_Breakout_attention and" in conflict
    assert "the table uses final_model_Breakout_attention" in conflict
    assert "scored with different settings" in mixed and '"kl_eps": 1e-07' in mixed
    rows = {r["method"]: r for r in report.saliency}
    assert rows["attention"]["kl"] == pytest.approx(4.0) and rows["gradcam"]["seeds"] == 1


def test_a_sweep_is_aggregated_with_iqm_intervals_profiles_and_improvement(synthetic_sweep, tmp_path) -> None:
    """2 games x 3 models x 3 seeds: one row per model and metric whose point estimates are rliable's on the
    human-normalised run means, P(X > Y) for every pair, the three figures, and the section in report.md."""
    from fls import stats

    runs, _ = find_runs(str(synthetic_sweep))
    report = build_report(runs, title="Report: test", grid_points=11)
    files = write_report(report, tmp_path / "report")
    rows = read_csv(files["aggregates_csv"])
    models = ("nature_cnn", "sparse_fls λ=0", "sparse_fls λ=0.001")
    assert {(r["model"], r["metric"]) for r in rows} == {(m, k) for m in models for k in stats.METRICS}
    # each run's score: its 4 episodes' mean, base + seed + 1.5; columns Breakout, Seaquest
    raw = np.array([[10.0 + s + 1.5, 200.0 + s + 1.5] for s in (1, 9, 17)])
    normalised = stats.human_normalise(raw, ["Breakout", "Seaquest"])
    from scipy.stats import trim_mean

    expected = {
        "iqm": trim_mean(normalised, 0.25, axis=None),
        "median": np.median(normalised.mean(axis=0)),
        "mean": normalised.mean(),
        "optimality_gap": 1 - np.minimum(normalised, 1).mean(),
    }
    for row in rows:
        assert float(row["value"]) == pytest.approx(expected[row["metric"]])
        assert float(row["ci_low"]) <= float(row["value"]) + 1e-12 and row["runs"] == "3" and row["games"] == "2"
    pairs = read_csv(files["improvement_csv"])
    assert len(pairs) == 6 and all(float(p["probability"]) == 0.5 for p in pairs)  # the same scores: no edge
    for name in ("aggregate_png", "profile_png", "improvement_png"):
        assert files[name].read_bytes().startswith(b"\x89PNG")
    text = files["report_md"].read_text()
    assert "## Aggregates across games and seeds" in text and "| nature_cnn | iqm |" in text
    # runs 18 and 19 (Breakout, nature_cnn) have no complete evaluation: left out, not counted as zeros
    assert "runs per game" in text


def test_aggregates_leave_out_what_does_not_compare(tmp_path) -> None:
    fake_run(tmp_path / "s" / "0", seed=1, scores=[1.0, 2.0])
    fake_run(tmp_path / "s" / "1", seed=9, scores=[5.0, 6.0], protocol={"deterministic": True})
    fake_run(tmp_path / "s" / "2", game="Pong", seed=1, scores=[-20.0])
    fake_run(tmp_path / "s" / "3", game="Pong", seed=9, scores=[-19.0])
    fake_run(tmp_path / "s" / "4", game="Pong", seed=17, scores=[-18.0])
    fake_run(tmp_path / "s" / "5", game="BreakoutInfinite", seed=1, scores=[3.0])
    report = build_report(find_runs(str(tmp_path / "s"))[0], title="t")
    text = write_report(report, tmp_path / "r")["aggregates_md"].read_text()
    assert "Breakout left out of the aggregates: its evaluations were played under different protocols" in text
    assert "BreakoutInfinite left out of the aggregates: no human reference score" in text
    rows = read_csv(tmp_path / "r" / "aggregates.csv")
    assert {r["games"] for r in rows} == {"1"} and {r["runs"] for r in rows} == {"3"}  # one game: IQM over seeds


def test_evaluations_under_different_protocols_are_named(tmp_path) -> None:
    fake_run(tmp_path / "s" / "0", seed=1, scores=[1.0, 2.0])
    fake_run(tmp_path / "s" / "1", seed=9, scores=[5.0, 6.0], protocol={"deterministic": True})
    fake_run(tmp_path / "s" / "2", model="sparse_fls", seed=1, scores=[1.0])
    fake_run(tmp_path / "s" / "3", game="Seaquest", seed=1, scores=[1.0], protocol={"max_episode_steps": 108000})
    report = build_report(find_runs(str(tmp_path / "s"))[0], title="t")
    assert report.notes == [
        "Breakout: the evaluations were played under different protocols and do not compare: "
        "deterministic=False, epsilon=None, max_episode_steps=30000, repeat_action_probability=0.0 in 0, 2; "
        "deterministic=True, epsilon=None, max_episode_steps=30000, repeat_action_probability=0.0 in 1"
    ]  # Seaquest's own step limit is no difference: games are compared within a game
    assert "- Breakout: the evaluations were played under different protocols" in (
        write_report(report, tmp_path / "r")["report_md"].read_text()
    )


def test_evaluations_with_other_sticky_actions_are_refused(tmp_path) -> None:
    """Sticky actions are part of the protocol, and no table or aggregate pools two values: the report is refused,
    naming the runs of each value; records made before the key existed count as 0."""
    fake_run(tmp_path / "s" / "0", seed=1, scores=[1.0, 2.0])  # an old header: no repeat_action_probability
    fake_run(tmp_path / "s" / "1", seed=2, scores=[3.0], protocol={"repeat_action_probability": 0.0})
    assert build_report(find_runs(str(tmp_path / "s"))[0], title="t").notes == []
    fake_run(tmp_path / "s" / "2", seed=3, scores=[5.0], protocol={"repeat_action_probability": 0.25})
    with pytest.raises(ConfigError) as refused:
        build_report(find_runs(str(tmp_path / "s"))[0], title="t")
    message = str(refused.value)
    assert "\n" not in message
    assert "different sticky actions (repeat_action_probability 0 in runs 0, 1; 0.25 in runs 2)" in message
    assert "report each value's runs separately (sweep=[<run dir>,...])" in message
    assert "eval.repeat_action_probability=<p>" in message
    # another game's evaluations at another value would pool into the aggregates across games: refused as well
    shutil.rmtree(tmp_path / "s" / "2")
    fake_run(tmp_path / "s" / "2", game="Pong", seed=3, scores=[5.0], protocol={"repeat_action_probability": 0.25})
    with pytest.raises(ConfigError, match=r"0 in runs 0, 1; 0.25 in runs 2\)"):
        build_report(find_runs(str(tmp_path / "s"))[0], title="t")


def test_a_report_mixing_sticky_actions_exits_2_and_writes_nothing(cli, tmp_path) -> None:
    """The command line: one line on stderr, exit 2, no report folder (nor outputs/ for a list of runs)."""
    zero = fake_run(tmp_path / "s" / "0", seed=1, scores=[1.0], protocol={"repeat_action_probability": 0.0})
    sticky = fake_run(tmp_path / "s" / "1", seed=2, scores=[2.0], protocol={"repeat_action_probability": 0.25})
    work = tmp_path / "work"
    work.mkdir()
    result = cli(
        "evaluate.py",
        "task=report",
        f"sweep=[{zero},{sticky}]",
        "logger.wandb.mode=disabled",
        cwd=work,
        env=ONE_THREAD,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the evaluations were played with different sticky actions")
    assert "(repeat_action_probability 0 in runs 0; 0.25 in runs 1)" in line
    assert list(work.iterdir()) == [] and not (tmp_path / "s" / "report").exists()


def test_runs_trained_with_other_sticky_actions_get_lines_of_their_own(tmp_path) -> None:
    fake_run(tmp_path / "s" / "0", seed=1, curve=[(100, 1.0)])
    fake_run(tmp_path / "s" / "1", seed=2, curve=[(100, 2.0)], sticky=0.25)
    fake_run(tmp_path / "s" / "2", model="sparse_fls", seed=1, curve=[(100, 3.0)], sticky=0.25)
    report = build_report(find_runs(str(tmp_path / "s"))[0], title="t")
    assert [(c.label, c.seeds) for c in report.curves] == [
        ("nature_cnn sticky=0", 1),
        ("nature_cnn sticky=0.25", 1),
    ] + [("sparse_fls", 1)]


def test_labels_carry_lambda_only_when_it_tells_something(tmp_path) -> None:
    fake_run(tmp_path / "s" / "0", model="nature_cnn", scores=[1.0])
    fake_run(tmp_path / "s" / "1", model="sparse_fls", lam=0.001, scores=[2.0])
    fake_run(tmp_path / "s" / "2", model="daqn", scores=[3.0])
    runs, _ = find_runs(str(tmp_path / "s"))
    report = build_report(runs, title="t")
    assert [r["label"] for r in report.scores] == ["nature_cnn", "sparse_fls λ=0.001", "daqn"]


def test_parameter_table_counts_the_models_themselves() -> None:
    from fls.models import MODELS

    table = parameter_table((4, 18))
    rows = [line for line in table.splitlines() if line.startswith("| `") and "model=" not in line]
    assert [row.split("`")[1] for row in rows] == list(MODELS)
    # Nature CNN by hand: conv 4->32 k8, 32->64 k4, 64->64 k3, fc 3136->512, policy 512->A, value 512->1
    trunk = (4 * 32 * 64 + 32) + (32 * 64 * 16 + 64) + (64 * 64 * 9 + 64) + (3136 * 512 + 512) + 513
    nature = next(row for row in rows if row.startswith("| `nature_cnn`"))
    assert f"| {trunk + 512 * 4 + 4:,} | {trunk + 512 * 18 + 18:,} |" in nature
    # the meta-device count is the count of a real, initialised policy
    import gymnasium as gym

    from fls.models import build_policy, count_parameters
    from fls.report.make import _model_config

    observation = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    for name in ("daqn", "dense_fls"):
        real = count_parameters(build_policy(_model_config(name), observation, gym.spaces.Discrete(18)))
        assert next(row for row in rows if row.startswith(f"| `{name}`")).endswith(f"| {real:,} |")


def _expand(experiment: str) -> tuple[list[dict[str, str]], object]:
    """The jobs Hydra's basic sweeper makes of ``-m experiment=<name>`` (without launching any), and the config."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from fls.cli import CONFIG_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
        overrides = OverridesParser.create().parse_overrides(params + [f"experiment={experiment}", "dry_run=true"])
        batches = BasicSweeper.split_arguments(overrides, None)[0]
        jobs = [dict(o.split("=", 1) for o in job) for job in batches]
        first = compose("train", overrides=list(batches[0]))
        last = compose("train", overrides=list(batches[-1]))
    return jobs, (cfg, first, last)


def test_paper_grid_expands_to_150_jobs() -> None:
    jobs, (cfg, first, last) = _expand("paper_grid")
    assert len(jobs) == 150
    grid = {(j["model"], j["env"], j["seed"]) for j in jobs}
    models = ("nature_cnn", "sparse_fls", "dense_fls", "rs", "daqn")
    games = ("BeamRider", "Breakout", "MsPacman", "SpaceInvaders", "Enduro", "Seaquest")
    assert grid == set(itertools.product(models, games, ("1", "9", "17", "25", "33")))
    assert cfg.total_timesteps == 50_000_000 and cfg.ppo.name == "paper" and cfg.ppo.clip_range == 0.1
    assert (first.model.name, first.env.name, first.seed) == ("nature_cnn", "BeamRider", 1)
    assert (last.model.name, last.env.name, last.seed) == ("daqn", "Seaquest", 33)
    assert last.total_timesteps == 50_000_000 and last.dry_run is True


def test_lambda_sweep_expands_to_30_jobs() -> None:
    jobs, (cfg, first, last) = _expand("lambda_sweep")
    assert len(jobs) == 30
    assert sorted({float(j["model.entropy_lambda"]) for j in jobs}) == [0, 0.0005, 0.001, 0.002, 0.003, 0.005]
    assert {j["seed"] for j in jobs} == {"1", "9", "17", "25", "33"}
    for composed in (cfg, first, last):
        assert composed.model.name == "rs" and composed.env.name == "Breakout"
        assert composed.total_timesteps == 10_000_000 and composed.ppo.clip_range == 0.2
        assert composed.ppo.clip_range_vf == 0.2
    assert first.model.entropy_lambda == 0 and last.model.entropy_lambda == 0.005


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep={tmp_path}/empty"], "no training runs in"),
        pytest.param([], "task=report needs sweep=", marks=pytest.mark.slow),  # a process costs seconds
    ],
)
def test_report_cli_errors_are_one_line(cli, tmp_path, args, message) -> None:
    (tmp_path / "empty").mkdir()
    args = [arg.format(tmp_path=tmp_path) for arg in args]
    result = cli("evaluate.py", "task=report", *args, f"hydra.run.dir={tmp_path / 'hydra'}", env=ONE_THREAD)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------
# End to end through the real commands


@pytest.mark.slow
def test_report_of_a_real_sweep(cli, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    trained = cli("train.py", "-m", *TINY_TRAIN, "seed=1,2", f"hydra.sweep.dir={sweep}", env=ONE_THREAD)
    assert trained.returncode == 0, trained.stderr[-3000:]
    runs = [sweep / "0", sweep / "1"]
    evaluated = cli(
        "evaluate.py",
        "-m",
        f"run={runs[0]},{runs[1]}",
        *TINY_EVAL,
        f"hydra.sweep.dir={tmp_path / 'eval_sweep'}",
        env=ONE_THREAD,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    # a third run without evaluation: the trained run 1 under another seed, its eval folder dropped
    shutil.copytree(runs[1], sweep / "2", ignore=shutil.ignore_patterns("eval"))
    config = sweep / "2" / "config.yaml"
    config.write_text(config.read_text().replace("seed: 2\n", "seed: 3\n"))

    result = cli("evaluate.py", "task=report", f"sweep={sweep}", f"hydra.run.dir={tmp_path / 'hydra'}", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    out = sweep / "report"

    seed_means = [
        np.mean([e.score for e in read_records(run / "eval" / "final_model" / "episodes.jsonl")[1]]) for run in runs
    ]
    (row,) = read_csv(out / "scores.csv")
    assert (row["game"], row["label"], row["seeds"], row["episodes_per_seed_max"]) == (
        "Breakout",
        "nature_cnn",
        "2",
        "3",
    )
    pooled = [e.score for run in runs for e in read_records(run / "eval" / "final_model" / "episodes.jsonl")[1]]
    assert float(row["mean"]) == pytest.approx(np.mean(pooled), abs=1e-12)
    assert float(row["episode_std"]) == pytest.approx(np.std(pooled), abs=1e-12)
    assert float(row["seed_std"]) == pytest.approx(np.std(seed_means), abs=1e-12)
    cell = f"| Breakout | {np.mean(pooled):.1f} ± {np.std(pooled):.1f} | {np.std(seed_means):.1f} |"
    assert cell in (out / "scores.md").read_text() and cell in result.stdout
    assert "2 seeds × 3 episodes per seed" in result.stdout

    check_images(out / "reward_curves.png", out / "reward_curves.svg")
    curve_runs = [r for r in (*runs, sweep / "2") if read_curve(r) is not None]
    curves = read_csv(out / "reward_curves.csv")
    assert len(curves) in ((1, 200) if curve_runs else (0,))
    assert all(int(point["seeds"]) == len(curve_runs) for point in curves)

    # the run without evaluation is named, in stdout and in the markdown
    report_md = (out / "report.md").read_text()
    for text in (result.stdout, report_md):
        line = next(line for line in text.splitlines() if line.startswith("| `2` |"))
        assert "evaluation of final_model" in line and "| 3 |" in line
        assert not any(line.startswith("| `0` |") and "evaluation" in line for line in text.splitlines())
    assert "3 of 3 runs lack something" in report_md
    assert list((out / "wandb").glob("offline-run-*")), "the report's offline W&B run"

    # a list of runs, with its own output folder
    listed = cli(
        "evaluate.py",
        "task=report",
        f"sweep=[{runs[0]},{runs[1]}]",
        f"report.out={tmp_path / 'listed'}",
        "logger.wandb.mode=disabled",
        f"hydra.run.dir={tmp_path / 'hydra2'}",
        env=ONE_THREAD,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert read_csv(tmp_path / "listed" / "scores.csv")[0]["mean"] == row["mean"]
    # without report.out: a new folder under outputs/reports/ of the working directory, nothing else written there
    work = tmp_path / "work"
    work.mkdir()
    default = cli("evaluate.py", "task=report", f"sweep=[{runs[0]},{runs[1]}]", "logger.wandb.mode=disabled", cwd=work)
    assert default.returncode == 0, default.stderr[-3000:]
    assert [p.name for p in work.iterdir()] == ["outputs"]
    (written,) = (work / "outputs" / "reports").glob("*/*")
    assert (written / "scores.csv").is_file() and str(written) in default.stdout


# issue 23's done-when at its smallest: 2 models x 2 games x 3 seeds, each 384 agent steps in one env (Breakout
# finishes its first game by then, so its training window has points; Pong does not), then one evaluation game each.
# About 3 minutes on 2 cores loaded 4-fold (most of it ALE stepping and Pong's evaluation games).
SWEEP_2X2X3 = (
    "model=nature_cnn,sparse_fls",
    "env=Breakout,Pong",
    "seed=1,2,3",
    "env.num_envs=1",
    "ppo.n_steps=64",
    "ppo.batch_size=64",
    "ppo.n_epochs=1",
    "total_timesteps=384",
    "after_training.eval_episodes=1",
    "after_training.eval_num_envs=1",
    "logger.wandb.mode=disabled",
    "logger.tensorboard=false",
)


@pytest.mark.slow
def test_a_sweep_of_2_models_2_games_3_seeds_gives_every_aggregate(cli, tmp_path) -> None:
    """train.py -m, then task=report: the aggregate table, the three figures, the probability of improvement and
    the IQM learning curves, with fls.stats' numbers on the runs' evaluation scores read back."""
    from scipy.stats import trim_mean

    from fls import stats
    from fls.report.runs import on_common_grid

    sweep = tmp_path / "sweep"
    trained = cli("train.py", "-m", *SWEEP_2X2X3, f"hydra.sweep.dir={sweep}", env=ONE_THREAD)
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = cli(
        "evaluate.py",
        "task=report",
        f"sweep={sweep}",
        "logger.wandb.mode=disabled",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = sweep / "report"
    for name in ("aggregate_metrics", "performance_profile", "probability_of_improvement", "learning_curves"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name

    # each run's score read back: the mean of its evaluation's episodes; a (seeds, [Breakout, Pong]) matrix per model
    models, games = ("nature_cnn", "sparse_fls"), ["Breakout", "Pong"]
    runs = {(r.model, r.game, r.seed): r.path for r in find_runs(str(sweep))[0]}
    assert len(runs) == 12

    def score(path: Path) -> float:
        return float(np.mean([e.score for e in read_records(path / "eval" / "final_model" / "episodes.jsonl")[1]]))

    scores = {m: np.array([[score(runs[(m, g, s)]) for g in games] for s in (1, 2, 3)]) for m in models}
    expected = stats.aggregate(scores, games).set_index(["model", "metric"])
    rows = read_csv(out / "aggregates.csv")
    assert {(r["model"], r["metric"]) for r in rows} == {(m, k) for m in models for k in stats.METRICS}
    for row in rows:
        for column in ("value", "ci_low", "ci_high"):
            want = expected.loc[(row["model"], row["metric"]), column]
            assert float(row[column]) == pytest.approx(want, rel=1e-9, abs=1e-12), (row, column)
        assert (row["runs"], row["games"]) == ("3", "2")
    assert "| nature_cnn | iqm |" in (out / "aggregates.md").read_text()
    pairs = {(p["x"], p["y"]): p for p in read_csv(out / "probability_of_improvement.csv")}
    assert set(pairs) == {models, models[::-1]}
    value, low, high = stats.probability_of_improvement(scores["nature_cnn"], scores["sparse_fls"], games)
    row = pairs[models]
    assert [float(row[k]) for k in ("probability", "ci_low", "ci_high")] == pytest.approx([value, low, high])

    # the learning curves: Breakout's training window of both models, the IQM over its 3 seeds on their grid
    curves = read_csv(out / "learning_curves.csv")
    assert {r["label"] for r in curves if r["panel"] == "Breakout"} == set(models)
    for model in models:
        found = [c for c in (read_curve(runs[(model, "Breakout", s)]) for s in (1, 2, 3)) if c is not None]
        grid, values = on_common_grid(found)
        last = [r for r in curves if (r["panel"], r["label"]) == ("Breakout", model)][-1]
        assert float(last["step"]) == grid[-1] and last["runs"] == str(len(found))
        assert float(last["iqm"]) == pytest.approx(trim_mean(values[:, -1], 0.25))


@pytest.mark.slow
def test_paper_grid_through_the_cli_dry_run(cli, tmp_path) -> None:
    """The real command expands the preset; command-line values narrow it (5 models x 1 game x 1 seed)."""
    result = cli(
        "train.py",
        "-m",
        "experiment=paper_grid",
        "dry_run=true",
        "hydra/launcher=basic",
        "env=Breakout",
        "seed=1",
        f"hydra.sweep.dir={tmp_path / 'grid'}",
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    launched = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if "[HYDRA] \t#" in line]
    assert len(launched) == 5
    assert {line.split("model=")[1].split()[0] for line in launched} == {
        "nature_cnn",
        "sparse_fls",
        "dense_fls",
        "rs",
        "daqn",
    }
    assert result.stdout.count("params: ") == 5
