"""evaluate.py's saliency video and gaze tasks end to end, and their one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import pytest

from tests.conftest import evaluate_in_process, evaluate_refusal
from tests.test_gaze import TRIAL, make_trial

METHODS = "saliency=[attention,gradcam,fullgrad++,perturbation]"
QUIET = "logger.wandb.mode=disabled"


@pytest.fixture(scope="module")
def sb3_agent(tmp_path_factory) -> Path:
    """An external SB3 PPO CnnPolicy agent (no attention) saved as a .zip."""
    import stable_baselines3 as sb3

    from fls.envs import make_vec_env

    path = tmp_path_factory.mktemp("sb3") / "ppo_breakout.zip"
    env = make_vec_env("Breakout", num_envs=1, seed=0)
    sb3.PPO("CnnPolicy", env, device="cpu").save(path)
    env.close()
    return path


@pytest.mark.slow
def test_saliency_video_with_four_methods(cli, tiny_run, tmp_path) -> None:
    out = tmp_path / "videos"
    result = cli(
        "evaluate.py",
        f"run={tiny_run}",
        METHODS,
        "video=true",
        "saliency.max_steps=24",
        "saliency.frames=true",
        f"saliency.out={out}",
        QUIET,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stem = "final_model_Breakout_seed2000_1ep_attention-gradcam-fullgrad++-perturbation"
    video = out / f"{stem}.mp4"
    assert video.is_file() and "video with attention, gradcam, fullgrad++, perturbation" in result.stdout
    frames = iio.imread(video)
    assert frames.shape[0] == 24 and frames.shape[-1] == 3
    # raw frame + 4 methods + input panel, side by side, each 160 px wide at scale 2
    assert frames.shape[2] == 6 * 2 * 160
    assert len(list((out / f"{stem}_frames").glob("*.png"))) == 24
    assert not list(out.glob(".*partial*"))


@pytest.mark.slow  # tests/test_saliency.py renders a video in-process, fast
def test_saliency_video_of_an_external_sb3_agent(cli, sb3_agent, tmp_path) -> None:
    result = cli(
        "evaluate.py",
        f"checkpoint={sb3_agent}",
        "env=Breakout",
        "saliency=[gradcam,gradient]",
        "video=true",
        "saliency.max_steps=8",
        "saliency.format=gif",
        f"saliency.out={tmp_path}",
        QUIET,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert iio.imread(tmp_path / "ppo_breakout_Breakout_seed2000_1ep_gradcam-gradient.gif").shape[0] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["saliency=[attention,saliency_of_doom]"], "saliency.methods=[attention,saliency_of_doom]: a list"),
        (["saliency=[gradcam]", "saliency.layer=features_extractor.convs.9"], "features_extractor.convs.2"),
        (["saliency=[gradcam]", "saliency.target=policy"], "saliency.target=policy: action, value or an action"),
        (["saliency.format=avi"], "saliency.format=avi: one of mp4, gif"),
        (["saliency.gradcam_rectified=maybe"], "saliency.gradcam_rectified=maybe: true or false"),
    ],
)
def test_bad_saliency_input(tiny_run, args, message, tmp_path) -> None:
    refusal = evaluate_refusal(
        f"run={tiny_run}", *args, "video=true", "saliency.max_steps=4", f"saliency.out={tmp_path}"
    )
    assert message in refusal, refusal
    assert list(tmp_path.iterdir()) == []


def test_attention_on_a_model_without_attention_is_refused(sb3_agent) -> None:
    refusal = evaluate_refusal(f"checkpoint={sb3_agent}", "env=Breakout", "saliency=[attention]", "video=true")
    assert "attention" in refusal and "sparse_fls" in refusal, refusal


def test_gaze_results_are_named_by_what_they_score_and_never_replaced_by_others(tiny_run, tmp_path) -> None:
    """Another set of methods gets its own folder; other settings into a folder holding results are refused."""
    make_trial(tmp_path / "atari_head")
    run = Path(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("eval", "gaze", "wandb")))
    common = (f"run={run}", "task=gaze", f"gaze.data={tmp_path / 'atari_head'}", "gaze.splits=2", QUIET)
    evaluate_in_process(*common, "saliency=[attention]")
    first = run / "gaze" / "final_model_Breakout_attention"
    settings = json.loads((first / "summary.json").read_text())["settings"]
    assert settings["methods"] == ["attention"] and settings["kl_eps"] == 0.0 and settings["digest"]
    evaluate_in_process(*common, "saliency=[gradcam]")
    evaluate_in_process(*common, "saliency=[attention]")  # the same scoring again: the same numbers, accepted
    assert sorted(p.name for p in (run / "gaze").iterdir()) == [first.name, "final_model_Breakout_gradcam"]
    refusal = evaluate_refusal(*common, "saliency=[attention]", "gaze.kl_eps=1e-7")
    assert refusal == (
        f"{first} already holds gaze results with kl_eps=0.0, not 1e-07; give gaze.out=<another folder> to "
        f"keep both, or delete {first} to replace them"
    )
    assert json.loads((first / "summary.json").read_text())["settings"] == settings


@pytest.mark.slow  # tests/test_gaze.py scores a synthetic trial in-process, fast
def test_gaze_task_on_a_synthetic_atari_head_trial(cli, tiny_run, tmp_path) -> None:
    make_trial(tmp_path / "atari_head")
    out = tmp_path / "gaze"
    result = cli(
        "evaluate.py",
        "task=gaze",
        f"run={tiny_run}",
        f"gaze.data={tmp_path / 'atari_head'}",
        "saliency=[attention,gradcam]",
        "gaze.splits=10",
        f"gaze.out={out}",
        QUIET,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "summary.md").read_text()
    for method in ("attention", "gradcam", "center_prior", "random"):
        assert f"| breakout | {method} |" in table
    rows = (out / "frames.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 7  # header + 4 methods x 7 inputs with fixations
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gaze/kl_dropped_frames"] >= 0 and "gaze/breakout/gradcam/kl_dropped_frames" in summary
    assert "KL: exact" in table  # the exact KL by default, with its note under the table


@pytest.mark.slow
def test_gaze_task_reads_rectified_gradcam_when_asked(cli, tiny_run, tmp_path) -> None:
    """saliency.gradcam_rectified reaches the method: Grad-CAM's scores change, the attention's do not."""
    make_trial(tmp_path / "atari_head")
    scores = {}
    for rectified in ("false", "true"):
        out = tmp_path / f"gaze_{rectified}"
        result = cli(
            "evaluate.py",
            "task=gaze",
            f"run={tiny_run}",
            f"gaze.data={tmp_path / 'atari_head'}",
            "saliency=[attention,gradcam]",
            f"saliency.gradcam_rectified={rectified}",
            "gaze.splits=2",
            f"gaze.out={out}",
            QUIET,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        rows = (out / "frames.csv").read_text().splitlines()[1:]
        scores[rectified] = {m: [r for r in rows if f",{m}," in r] for m in ("attention", "gradcam")}
    assert scores["false"]["attention"] == scores["true"]["attention"]
    assert scores["false"]["gradcam"] != scores["true"]["gradcam"]


def test_gaze_task_errors(tiny_run, tmp_path) -> None:
    assert "task=gaze needs gaze.data=" in evaluate_refusal("task=gaze", f"run={tiny_run}")
    assert "breakout" in evaluate_refusal("task=gaze", f"run={tiny_run}", f"gaze.data={tmp_path}").lower()


def damage(data: Path, how: str) -> None:
    """A synthetic trial whose download went wrong: a truncated frame archive, a corrupt zip of the game's folder,
    or a gaze file with no gaze at all."""
    trial = data / "breakout" / f"{TRIAL}.tar.bz2"
    if how == "truncated-archive":
        trial.write_bytes(trial.read_bytes()[: trial.stat().st_size // 2])
    elif how == "corrupt-zip":
        archive = Path(shutil.make_archive(str(data / "breakout"), "zip", data, "breakout"))
        shutil.rmtree(data / "breakout")
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    else:
        gaze = trial.with_name(f"{TRIAL}.txt")
        lines = gaze.read_text().splitlines()
        gaze.write_text("\n".join([lines[0], *(",".join(line.split(",")[:6] + ["null"]) for line in lines[1:]), ""]))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated-archive", f"the frames of trial {TRIAL} ({{data}}/breakout/{TRIAL}.tar.bz2) cannot be read ("),
        ("corrupt-zip", "gaze data {data}/breakout.zip cannot be read (File is not a zip file): the file is damaged"),
        ("no-gaze", f"trial {TRIAL} ({{data}}/breakout/{TRIAL}.tar.bz2) has no usable gaze: no network input"),
    ],
)
def test_damaged_gaze_data_is_refused_naming_the_trial(tiny_run, tmp_path, how, message) -> None:
    """Before: a traceback (tarfile.ReadError, zipfile.BadZipFile), or for a trial without gaze an empty table
    and exit 0."""
    data = tmp_path / "atari_head"
    make_trial(data)
    damage(data, how)
    out = tmp_path / "gaze"
    refusal = evaluate_refusal(f"run={tiny_run}", "task=gaze", f"gaze.data={data}", f"gaze.out={out}", "gaze.splits=2")
    assert message.format(data=data) in refusal, refusal
    assert not list(out.glob("*.csv")) and not list(out.glob("summary.*"))


def test_the_gaze_summary_is_strict_json(tiny_run, tmp_path) -> None:
    """Gaze only at raw frames 15 and 16: the inputs with fixations are all too close to one another to draw
    shuffled-AUC negatives from, so every sAUC mean is undefined. It used to be written as a bare NaN."""
    data = tmp_path / "atari_head"
    make_trial(data)
    gaze = data / "breakout" / f"{TRIAL}.txt"
    lines = gaze.read_text().splitlines()
    for i, line in enumerate(lines[1:], start=1):
        fields = line.split(",")
        if fields[0].startswith("RZ_") and int(fields[0].rsplit("_", 1)[1]) - 1 not in (15, 16):
            lines[i] = ",".join(fields[:6] + ["null"])
    gaze.write_text("\n".join(lines) + "\n")
    out = tmp_path / "gaze"
    evaluate_in_process(f"run={tiny_run}", "task=gaze", f"gaze.data={data}", f"gaze.out={out}", "gaze.splits=2", QUIET)

    def refuse(constant: str) -> None:
        raise AssertionError(f"summary.json holds {constant}, which is not JSON")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=refuse)
    assert summary["gaze/breakout/attention/sauc"] is None and summary["gaze/breakout/attention/frames"] == 4
