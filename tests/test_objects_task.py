"""task=objects: the scores of a map against game-object boxes (hand-built maps, exact numbers), the task end to end
through evaluate.py on a tiny Breakout run, fls.objects.score, and the objects section of task=report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fls.errors import ConfigError
from fls.objects import GameObject
from fls.objects.results import ObjectResults
from fls.objects.scores import ANY, box_mask, energy_share, frame_scores, pointing_hit
from tests.conftest import evaluate_in_process, evaluate_refusal

BALL = GameObject("Ball", 12, 22, 2, 4)  # columns 12-13, rows 22-25
PADDLE = GameObject("Player", 100, 189, 16, 4)
AREA = 210 * 160


def peak_at(x: int, y: int, value: float = 1.0) -> np.ndarray:
    saliency = np.zeros((210, 160))
    saliency[y, x] = value
    return saliency


# ---------------------------------------------------------------------------------------------------------------
# The scores


@pytest.mark.parametrize(("tolerance", "hit"), [(0, False), (1, False), (2, True), (8, True)])
def test_pointing_game_grows_the_box_by_the_tolerance(tolerance, hit) -> None:
    assert pointing_hit(peak_at(10, 20), [BALL], tolerance) is hit  # 2 px left of and above the ball


def test_pointing_game_at_the_box_edges() -> None:
    assert pointing_hit(peak_at(12, 22), [BALL]) and pointing_hit(peak_at(13, 25), [BALL])
    assert not pointing_hit(peak_at(14, 25), [BALL]) and not pointing_hit(peak_at(13, 26), [BALL])
    assert pointing_hit(peak_at(15, 27), [BALL], tolerance=2) and not pointing_hit(peak_at(16, 27), [BALL], 2)
    assert pointing_hit(peak_at(10, 20), [PADDLE, BALL], tolerance=2)  # any box of the category


def test_a_flat_map_points_nowhere() -> None:
    everywhere = np.full((210, 160), 0.3)
    assert not pointing_hit(everywhere, [GameObject("Ball", 0, 0, 160, 210)], tolerance=8)
    assert not pointing_hit(np.zeros((210, 160)), [BALL], tolerance=8)
    assert not pointing_hit(-peak_at(12, 22), [BALL])  # negative values count as 0: all zero


def test_energy_share_and_ratio_are_exact() -> None:
    saliency = peak_at(12, 22, 2.0) + peak_at(13, 25, 1.0) + peak_at(80, 100, 1.0) - peak_at(0, 0, 5.0)
    assert energy_share(saliency, box_mask([BALL])) == 0.75  # 3 of 4 inside; the -5 counts as 0
    assert energy_share(np.zeros((210, 160)), box_mask([BALL])) == 0.0
    scores = frame_scores(saliency, [BALL], ["Player", "Ball"], tolerance=0)
    assert np.isnan(scores[0]).all()  # no paddle on this frame: no score
    np.testing.assert_array_equal(scores[1], [1.0, 0.75, 0.75 / (8 / AREA)])
    np.testing.assert_array_equal(scores[2], scores[1])  # any = the ball alone here


def test_any_object_is_the_union_of_the_boxes() -> None:
    uniform = np.ones((210, 160))
    scores = frame_scores(uniform, [BALL, PADDLE], ["Player", "Ball"])
    np.testing.assert_allclose(scores[:, 1], [64 / AREA, 8 / AREA, 72 / AREA])
    np.testing.assert_allclose(scores[:, 2], 1.0)  # a uniform map gets exactly the boxes' area
    assert (scores[:, 0] == 0).all()  # and points nowhere
    assert box_mask([BALL, BALL]).sum() == 8  # overlapping boxes count once


def test_results_average_over_the_frames_where_each_category_is_present() -> None:
    results = ObjectResults(["attention"], ["random"], ["Player", "Ball", ANY])
    for ball_score in ([1.0, 0.5, 2.0], [0.0, 0.25, 1.0], [math.nan] * 3):
        step = np.array([[[0.0, 0.1, 0.2], ball_score, [1.0, 0.6, 1.0]]] * 2)
        results.add(step, episode=0, reward=0.0)
    table = results.table()
    assert table["attention"]["Ball"] == {"pointing": 0.5, "energy": 0.375, "ratio": 1.5, "frames": 2}
    assert table["random"]["Player"]["frames"] == 3 and table["random"]["Player"]["energy"] == pytest.approx(0.1)
    row = results.rows()[1]
    assert row["method"] == "random" and row["kind"] == "baseline" and row["Ball_frames"] == 2


def test_a_category_never_on_screen_has_no_column_no_bars_and_says_so() -> None:
    results = ObjectResults(["attention"], ["random"], ["Player", "Submarine", "Ball", ANY])
    for _ in range(3):
        scores = np.array([[[1.0, 0.1, 2.0], [math.nan] * 3, [0.0, 0.01, 1.5], [1.0, 0.11, 1.9]]] * 2)
        results.add(scores, episode=0, reward=0.0)
    text = results.markdown(8)
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert len(tables) == 3 * 4  # a table per score: header, rule and one row per method and baseline
    assert tables[0] == "| Method | Player (3 frames) | Ball (3 frames) | any (3 frames) |"
    assert all(line.count("|") == 5 for line in tables) and "Never on screen (no score): Submarine." in text
    figure = results.figure_by_category()
    submarine = [ax for ax in figure.axes if ax.get_title().startswith("Submarine")]
    assert len(submarine) == 2 and all(not ax.patches for ax in submarine)
    assert all("never on screen" in [t.get_text() for t in ax.texts] for ax in submarine)
    assert all(len(ax.patches) == 2 for ax in figure.axes if not ax.get_title().startswith("Submarine"))


# ---------------------------------------------------------------------------------------------------------------
# The task


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["method"]: row for row in csv.DictReader(handle)}


TINY = ("task=objects", "saliency.methods=[attention,gradcam]", "saliency.max_steps=60")


def test_objects_task_writes_its_table_figures_and_settings(tiny_run, tmp_path, capsys) -> None:
    out = tmp_path / "objects"
    evaluate_in_process(f"run={tiny_run}", *TINY, f"objects.out={out}", "logger.wandb.mode=offline")
    assert {p.name for p in out.iterdir()} >= {
        "objects.csv",
        "objects.md",
        "objects_by_category.png",
        "objects_over_time.png",
        "summary.json",
        "wandb",
    }
    assert not list(out.glob(".*.tmp"))
    rows = read_rows(out / "objects.csv")
    assert list(rows) == ["attention", "gradcam", "random", "center_prior"]
    assert rows["random"]["kind"] == "baseline" and rows["attention"]["kind"] == "method"
    assert rows["attention"]["Player_frames"] == rows["attention"]["any_frames"] == "60"  # the paddle is always on
    for row in rows.values():
        assert 0 <= float(row["any_pointing"]) <= 1 and 0 <= float(row["any_energy"]) <= 1
    # a uniform random map gets about the boxes' area: its energy ratio is near 1
    assert float(rows["random"]["Player_ratio"]) == pytest.approx(1.0, abs=0.1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["tolerance"] == 8.0 and summary["settings"]["max_steps"] == 60
    assert summary["categories"] == ["Player", "Ball", "any"] and summary["steps"] == 60
    assert "| *centre prior* |" in (out / "objects.md").read_text()
    assert "objects: 60 steps of Breakout" in capsys.readouterr().out

    # the same settings again are accepted; other settings are refused, naming the one that differs
    message = evaluate_refusal(f"run={tiny_run}", *TINY, f"objects.out={out}", "objects.tolerance=2")
    assert "tolerance=8.0, not 2.0" in message and "objects.out=" in message


def test_a_game_without_decoder_is_refused_before_playing(tiny_run, monkeypatch) -> None:
    from fls.objects import detection

    monkeypatch.delitem(detection._DECODERS, "Breakout")
    message = evaluate_refusal(f"run={tiny_run}", *TINY)
    assert message.startswith("no object decoder for game 'Breakout' (games with one:")
    assert not (tiny_run / "objects").exists()


def test_objects_score_in_the_python_api(tiny_run, tmp_path, capsys) -> None:
    import fls
    import fls.objects

    assert fls.objects.score is fls.score_objects
    out = fls.objects.score(tiny_run, methods=["attention"], max_steps=30, tolerance=0, out=tmp_path / "o")
    assert out == tmp_path / "o"
    rows = read_rows(out / "objects.csv")
    assert list(rows) == ["attention", "random", "center_prior"] and rows["attention"]["Player_frames"] == "30"
    with pytest.raises(ConfigError, match="objects.tolerance"):
        fls.objects.score(tiny_run, methods=["attention"], max_steps=30, tolerance=-1)
    agent = fls.load(tiny_run)
    capsys.readouterr()
    assert fls.objects.score(agent, methods=["attention"], max_steps=30, tolerance=0, out=out) == out  # same again
    assert f"objects: {out} holds the results of these settings; scoring again" in capsys.readouterr().out


def test_help_of_fls_objects_shows_score_and_its_keywords() -> None:
    import pydoc

    import fls.objects

    text = pydoc.render_doc(fls.objects, renderer=pydoc.plaintext)
    assert "score = score_objects(run_or_agent" in text and "tolerance: pixels a box grows" in text
    assert "__getattr__" not in text


# ---------------------------------------------------------------------------------------------------------------
# The report section


def write_objects(
    run: Path, ball_energy: float, folder: str = "final_model_Breakout_seed2000_1ep_attention", **setting
):
    """A summary.json as task=objects writes it, in its default folder."""
    out = run / "objects" / folder
    out.mkdir(parents=True)

    def groups(energy: float, frames: int = 50) -> dict:
        values = {"pointing": 0.5, "energy": energy, "ratio": energy * 100, "frames": frames}
        return {"Player": {**values, "frames": 60}, "Ball": values, ANY: {**values, "frames": 60}}

    summary = {
        "checkpoint": str(run / "final_model.zip"),
        "game": "Breakout",
        "settings": {"checkpoint": "final_model", "game": "Breakout", "methods": ["attention"], "tolerance": 8.0}
        | setting,
        "steps": 60,
        "categories": ["Player", "Ball", ANY],
        "baselines": ["random", "center_prior"],
        "scores": {"attention": groups(ball_energy), "random": groups(0.01), "center_prior": groups(0.02)},
    }
    (out / "summary.json").write_text(json.dumps(summary))


def test_report_gathers_the_object_scores_by_game_model_and_method(tmp_path) -> None:
    from fls.report.make import write_report
    from fls.report.objects import add_objects, objects_rows
    from fls.report.runs import find_runs
    from fls.report.tables import build_report
    from tests.test_report import fake_run

    sweep = tmp_path / "sweep"
    for seed, energy in ((1, 0.2), (9, 0.4)):
        write_objects(fake_run(sweep / str(seed), model="sparse_fls", seed=seed, scores=[1.0]), energy)
    fake_run(sweep / "none", model="nature_cnn", seed=1, scores=[1.0])
    report = build_report(find_runs(sweep)[0], title="t")
    rows = objects_rows(report)
    assert [(r["method"], r["category"]) for r in rows][:4] == [
        ("attention", "Player"),
        ("attention", "Ball"),
        ("attention", ANY),
        ("center_prior", "Player"),
    ]
    ball = rows[1]
    assert ball["label"] == "sparse_fls" and ball["seeds"] == 2 and ball["frames"] == 100
    assert ball["energy"] == pytest.approx(0.3) and ball["energy_std"] == pytest.approx(0.1)
    assert ball["ratio"] == pytest.approx(30.0) and ball["pointing"] == 0.5 and ball["kind"] == "method"
    files = write_report(report, tmp_path / "report")
    files.update(add_objects(report, tmp_path / "report", files["report_md"]))
    text = files["report_md"].read_text()
    assert "## Saliency on game objects" in text
    assert "| Breakout | sparse_fls | attention | Ball | 0.5 ± 0 | 0.3 ± 0.1 | 30 ± 10 | 2 | 100 |" in text
    assert "| Breakout | sparse_fls | *random* | Ball |" in text
    with open(files["objects_csv"], newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 9
    out = tmp_path / "through_the_command"
    evaluate_in_process("task=report", f"sweep={sweep}", f"report.out={out}", "logger.wandb.mode=offline")
    (run,) = (out / "wandb").glob("offline-run-*")
    tables = {path.name.split("_")[0] for path in (run / "files" / "media" / "table" / "report").glob("*.table.json")}
    assert {"objects", "scores", "runs"} <= tables and "faithfulness" not in tables  # no faithfulness results here

    # results made with other settings are named, not silently pooled
    write_objects(sweep / "9", 0.9, folder="final_model_Breakout_seed7_1ep_attention", tolerance=2.0)
    notes: list[str] = []
    objects_rows(build_report(find_runs(sweep)[0], title="t"), notes)
    assert notes[0].startswith("9: object scores of attention differ between final_model_Breakout_seed2000")
    assert notes[1] == (
        "Breakout: object scores made with different settings, which do not compare: tolerance=8.0 in 1, 9; "
        "tolerance=2.0 in 9"
    )


def test_an_action_index_the_agent_lacks_is_refused_before_anything(tiny_run, tmp_path) -> None:
    out = tmp_path / "objects"
    message = evaluate_refusal(f"run={tiny_run}", *TINY, "saliency.target=7", f"objects.out={out}")
    assert "saliency.target=7 is not an action of this agent (valid: action, value, 0..3)" in message
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_leaves_no_results(tiny_run, tmp_path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import CHILD_ENV, ROOT

    out = tmp_path / "objects"
    args = [sys.executable, str(ROOT / "evaluate.py"), f"run={tiny_run}", "task=objects", "saliency.methods=[gradcam]"]
    args += ["saliency.episodes=20", "saliency.max_steps=100000", f"objects.out={out}", "logger.wandb.mode=disabled"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline:  # the folder is made just before the games are played
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted (Ctrl-C)" in stderr
    assert not (out / "summary.json").exists() and not (out / "objects.csv").exists()
