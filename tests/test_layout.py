"""One owner of a run's output layout: fls/rundir.py names every folder the tasks write and the report reads."""

from __future__ import annotations

import ast
from pathlib import Path

from fls.rundir import (
    evaluation_dir,
    faithfulness_dir,
    faithfulness_root,
    gaze_dir,
    gaze_root,
    objects_dir,
    objects_root,
    report_dir,
    trees_dir,
    videos_dir,
)

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "fls"
FOLDERS = {"eval", "gaze", "objects", "videos", "trees", "faithfulness", "report", "summary.json"}


def test_the_layout_of_a_run(tmp_path: Path) -> None:
    run, checkpoint = tmp_path / "run", tmp_path / "run" / "checkpoints" / "step_100.zip"
    assert evaluation_dir(run, checkpoint) == run / "eval" / "step_100"
    assert evaluation_dir(run, "final_model_seed7") == run / "eval" / "final_model_seed7"
    assert evaluation_dir(run, checkpoint, str(tmp_path / "x")) == tmp_path / "x"
    evaluation = evaluation_dir(run, checkpoint)
    assert faithfulness_root(evaluation) == evaluation / "faithfulness"
    assert faithfulness_dir(evaluation, ["attention", "gradcam"], "blur") == (
        evaluation / "faithfulness" / "attention-gradcam_blur"
    )
    assert gaze_root(run, checkpoint) == run / "gaze"
    assert gaze_dir(None, run, checkpoint, "Breakout", ["attention"]) == run / "gaze" / "step_100_Breakout_attention"
    assert gaze_dir(str(tmp_path / "g"), run, checkpoint, "Breakout", ["attention"]) == tmp_path / "g"
    assert objects_root(run, checkpoint) == run / "objects"
    assert objects_dir(None, run, checkpoint, "step_100_Breakout_x") == run / "objects" / "step_100_Breakout_x"
    assert objects_dir(str(tmp_path / "o"), run, checkpoint, "step_100_Breakout_x") == tmp_path / "o"
    assert videos_dir(None, run, checkpoint) == run / "videos"
    assert trees_dir(None, run, checkpoint) == run / "trees"
    assert report_dir(tmp_path) == tmp_path / "report"


def test_a_checkpoint_outside_a_run_keeps_its_outputs_beside_it(tmp_path: Path) -> None:
    model = tmp_path / "breakout.zip"
    assert evaluation_dir(None, model) == tmp_path / "breakout_eval"
    assert gaze_dir(None, None, model, "Pong", ["attention"]) == tmp_path / "breakout_gaze" / "breakout_Pong_attention"
    assert videos_dir(None, None, model) == tmp_path / "breakout_videos"
    assert trees_dir(None, None, model) == tmp_path / "breakout_trees"
    assert objects_dir(None, None, model, "breakout_Pong_x") == tmp_path / "breakout_objects" / "breakout_Pong_x"


def test_no_other_module_spells_a_folder_of_the_run() -> None:
    """A path joined with one of the layout's names (``run / "eval"``, ``*/summary.json``) is rundir.py's alone."""
    spelled = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.name == "rundir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                for side in (node.left, node.right):
                    if isinstance(side, ast.Constant) and side.value in FOLDERS:
                        spelled.append(f"{path.name}:{node.lineno} {side.value}")
            elif isinstance(node, ast.Call):  # e.g. folder.glob("*/summary.json")
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "summary.json" in arg.value:
                        spelled.append(f"{path.name}:{node.lineno} {arg.value}")
    assert not spelled


def test_markdown_tables_have_one_renderer() -> None:
    from fls.tables import markdown_table

    assert markdown_table(["a", "b", "c"], [[1, "x", 2.5]], "lr") == "| a | b | c |\n|---|---:|---|\n| 1 | x | 2.5 |"
    assert markdown_table(["a"], []) == "| a |\n|---|"
    rules = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("|---"):
                rules.append(f"{path.name}:{node.lineno}")
    assert not rules, "build markdown tables with fls.tables.markdown_table"
