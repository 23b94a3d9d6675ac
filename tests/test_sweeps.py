"""How a multirun ends when a job cannot finish: a NaN ends that job only; Ctrl-C on a parallel sweep lets every
running job checkpoint (fls/sweep.py), a job in a sweep worker taking the signal it gets twice as one request
(fls/runtime.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fls.runtime import StopSignals
from tests.conftest import CHILD_ENV, ROOT

# 2 envs x 64 steps = 128 agent steps per update
TINY = [
    "model=nature_cnn",
    "env=Breakout",
    "env.num_envs=2",
    "ppo.n_steps=64",
    "ppo.batch_size=64",
    "logger.wandb.mode=disabled",
    "logger.tensorboard=false",
]


@pytest.mark.parametrize("repeat_stops", [True, False])
def test_a_second_signal_stops_at_once_except_in_a_sweep_worker(repeat_stops) -> None:
    stop = StopSignals("stopping", repeat_stops=repeat_stops)
    with stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == signal.SIGINT
        if repeat_stops:
            with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C: stop at once
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)
        else:  # the process group's copy and the one the sweep passes on: one request
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            assert stop.signal == signal.SIGINT


def failed_jobs(sweep: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep / "failed_jobs.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_job_stopped_by_a_nan_does_not_end_the_sweep(cli, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    # job 0's learning rate blows the weights up in its first update; job 1 trains normally
    result = cli(
        "train.py", "-m", *TINY, "total_timesteps=256", "ppo.learning_rate=1e30,2.5e-4", f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert (sweep / "1" / "final_model.zip").is_file() and not (sweep / "0" / "final_model.zip").exists()
    (record,) = failed_jobs(sweep)
    assert record["job"] == 0 and record["exit_code"] == 3 and "non-finite" in record["reason"]
    assert f"job 0 ({sweep / '0'}): error: non-finite action scores in a minibatch of PPO update 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ctrl_c_on_a_parallel_sweep_lets_every_running_job_checkpoint(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    args = [*TINY, "total_timesteps=1000000", "seed=1,9,17", f"hydra.sweep.dir={sweep}"]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=local_parallel", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CHILD_ENV,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 120
    while not all((sweep / job / "progress.csv").is_file() for job in ("0", "1")):  # both jobs are training
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group gets it
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
    for job in ("0", "1"):
        assert list((sweep / job / "checkpoints").glob("step_*.zip")), f"job {job} did not checkpoint\n{stderr}"
    assert not (sweep / "2").exists()  # the job not started leaves no folder
    assert sorted((r["job"], r["exit_code"]) for r in failed_jobs(sweep)) == [(0, 130), (1, 130), (2, 130)]
    assert "job 2 not started: the sweep was interrupted" in stderr
    assert "resume an interrupted job with train.py resume=<its folder>" in stderr
