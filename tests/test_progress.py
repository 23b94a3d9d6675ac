"""Progress output off a terminal: plain lines at a fixed pace, with count, rate and time left."""

from __future__ import annotations

import io

from tqdm import tqdm

from fls.progress import LineProgress, is_terminal, progress_bar


class Clock:
    """A settable clock, so the line pace is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_not_a_terminal_gets_plain_lines_every_interval() -> None:
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(1000, "train", "step", stream=out, interval=10.0, clock=clock)
    for _ in range(9):  # 9 s: nothing yet
        clock.now += 1.0
        bar.update(10)
    assert out.getvalue() == ""
    clock.now += 1.0
    bar.set_postfix(games=3, mean_return="1.5", refresh=False)
    bar.update(10)  # 10 s, 100 steps
    lines = out.getvalue().splitlines()
    assert lines == ["train: 100/1,000 steps (10%), 10.0 steps/s, ETA 01:30, games=3, mean_return=1.5"]
    assert "\r" not in out.getvalue()
    clock.now += 5.0
    bar.update(50)  # 5 s after the last line: no new one
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 5.0
    bar.close()
    bar.close()  # once only
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("train: 150/1,000 steps (15%), 7.5 steps/s, took 00:20")


def test_rate_and_eta_count_only_this_process() -> None:
    """A resumed run starts at ``initial``: its rate must not include the steps of earlier processes."""
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(2000, "train", "step", initial=1000, stream=out, interval=10.0, clock=clock)
    clock.now = 10.0
    bar.update(100)
    assert out.getvalue().strip() == "train: 1,100/2,000 steps (55%), 10.0 steps/s, ETA 01:30"


def test_unknown_total_and_nothing_done() -> None:
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(None, "playing Breakout", "step", stream=out, interval=1.0, clock=clock)
    clock.now = 2.0
    bar.update(4)
    assert out.getvalue().strip() == "playing Breakout: 4 steps, 2.0 steps/s"
    idle = LineProgress(10, "evaluate", "episode", stream=out, clock=clock)
    idle.close()  # nothing happened: no line
    assert len(out.getvalue().splitlines()) == 1


def test_progress_bar_picks_lines_off_a_terminal_and_tqdm_when_disabled() -> None:
    out = io.StringIO()
    assert not is_terminal(out)
    assert isinstance(progress_bar(10, "evaluate", "episode", stream=out), LineProgress)
    disabled = progress_bar(10, "evaluate", "episode", stream=out, disable=True)
    assert isinstance(disabled, tqdm)
    disabled.update(5)
    disabled.close()
    assert out.getvalue() == ""


def test_sweep_notice_says_where_jobs_write_and_what_runs_after_training(capsys) -> None:
    from omegaconf import OmegaConf

    from fls.progress import SweepNotice

    config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": "multirun/x"}, "launcher": {"submitit_folder": "multirun/x/.submitit/%j"}},
            "after_training": {"eval_episodes": 16, "video": True, "video_methods": ["attention", "gradcam"]},
        }
    )
    SweepNotice().on_multirun_start(config)
    assert capsys.readouterr().out.splitlines() == [
        "sweep: each job writes its run directory to multirun/x/<job number>/",
        "sweep: each job's output and errors go to multirun/x/.submitit/<job id>/",
        "sweep: after training, each job evaluates 16 episodes and records a saliency video (attention, gradcam)"
        " (after_training.*)",
    ]
    config.after_training.eval_episodes, config.after_training.video = 0, False
    config.hydra.launcher = {}
    SweepNotice().on_multirun_start(config)
    assert capsys.readouterr().out.splitlines() == [
        "sweep: each job writes its run directory to multirun/x/<job number>/"
    ]
