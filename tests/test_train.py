"""train.py end to end on real Atari: run directory, W&B offline, determinism, interrupt + resume, sweeps."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fls.ppo import AttentionPPO
from fls.rundir import checkpoints
from fls.training import same_setting
from tests.conftest import CHILD_ENV, ROOT

# 2 envs x 64 steps = 128 agent steps per update; 2 minibatches of 64.
TINY = ["env=Breakout", "env.num_envs=2", "ppo.n_steps=64", "ppo.batch_size=64", "logger.tensorboard=true"]


def read_progress(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_training_writes_a_complete_run_directory(cli, tmp_path) -> None:
    run_dir = tmp_path / "run"
    result = cli(
        "train.py",
        "model=sparse_fls",
        "model.entropy_lambda=0.001",
        *TINY,
        "total_timesteps=512",
        "checkpoint_every=256",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "config.yaml").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert not (run_dir / "train.log").exists() and not (run_dir / ".lock").exists()  # no empty log, lock released
    assert (run_dir / "final_model.zip").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000000000256.zip"]
    rows = read_progress(run_dir)
    assert [int(r["time/total_timesteps"]) for r in rows] == [128, 256, 384, 512]
    assert all(float(r["train/attention_entropy"]) > 0 for r in rows[1:] if r.get("train/attention_entropy"))
    assert list((run_dir / "tb").glob("**/events.out.tfevents.*"))
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    # stderr is not a terminal here: plain progress lines with the rate, no carriage-return bar
    assert "train: 512/512 steps (100%)" in result.stderr and "steps/s" in result.stderr and "\r" not in result.stderr
    assert f"run directory: {run_dir}" in result.stdout
    model = AttentionPPO.load(run_dir / "final_model.zip", device="cpu")
    assert model.num_timesteps == 512 and model.entropy_lambda == 0.001


@pytest.mark.slow
def test_same_seed_gives_identical_first_updates(cli, tmp_path) -> None:
    params = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        result = cli(
            "train.py",
            "model=sparse_fls",
            *TINY,
            "total_timesteps=128",
            "logger.wandb.mode=disabled",
            "seed=7",
            f"hydra.run.dir={run_dir}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        model = AttentionPPO.load(run_dir / "final_model.zip", device="cpu")
        params.append(torch.cat([p.detach().flatten() for p in model.policy.parameters()]))
    assert torch.equal(params[0], params[1])


def _wait_for(path_glob: Path, pattern: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(path_glob.glob(pattern)):
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing matched {path_glob}/{pattern} within {timeout}s")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_resumes_without_losing_or_repeating_updates(tmp_path, how) -> None:
    run_dir = tmp_path / "run"
    budget = 640  # 5 updates of 128 steps: interrupted after the 2nd, 3 left to resume
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        "model=nature_cnn",
        *TINY,
        f"total_timesteps={budget}",
        "checkpoint_every=256",
        "logger.wandb.mode=disabled",
        "after_training.eval_episodes=2",
        "after_training.eval_num_envs=2",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    _wait_for(run_dir / "checkpoints", "step_000000000256.zip")
    process.send_signal(how)
    _, stderr = process.communicate(timeout=120)
    assert not (run_dir / "final_model.zip").exists(), "the run finished before it could be interrupted"
    if how == signal.SIGTERM:
        assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
        assert "continue with resume=" in stderr
    else:
        assert process.returncode == -signal.SIGKILL
    assert not list((run_dir / "checkpoints").glob("*.tmp"))
    assert not (run_dir / "eval").exists()

    resumed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"resume={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=CHILD_ENV,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    model = AttentionPPO.load(run_dir / "final_model.zip", device="cpu")
    assert model.num_timesteps == budget
    assert model._n_updates == 4 * budget // 128  # 4 epochs per update: none lost, none repeated
    steps = [int(r["time/total_timesteps"]) for r in read_progress(run_dir)]
    assert steps == list(range(128, budget + 1, 128))  # each update logged once, in order
    # The resume kept the run's own settings, not the command line's defaults: checkpoints every 256 steps (the
    # default is 1M), W&B still off, and the after-training evaluation ran.
    assert max(step for step, _ in checkpoints(run_dir)) >= budget - 256
    assert not (run_dir / "wandb").exists()
    assert (run_dir / "eval" / "final_model" / "summary.json").is_file()
    assert not list(run_dir.glob(".hydra-resume-*")) and (run_dir / ".hydra" / "resumes.jsonl").is_file()


@pytest.mark.slow
def test_resume_errors(cli, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("train.py", f"resume={empty}")
    assert result.returncode != 0 and "has no checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    corrupt = tmp_path / "corrupt"
    (corrupt / "checkpoints").mkdir(parents=True)
    (corrupt / "checkpoints" / "step_000000000128.zip").write_bytes(b"PK\x03\x04 truncated")
    result = cli("train.py", f"resume={corrupt}")
    assert result.returncode != 0 and "is corrupt" in result.stderr and "Traceback" not in result.stderr
    assert (corrupt / "checkpoints" / "step_000000000128.zip").read_bytes() == b"PK\x03\x04 truncated"


@pytest.mark.slow
def test_a_resume_logs_every_update_and_drops_a_torn_row(cli, unfinished_run, tmp_path) -> None:
    """The first row after a resume has the statistics of the update before it (saved with the checkpoint), and a
    row torn by a kill mid-write is gone."""
    run_dir = tmp_path / "run"
    shutil.copytree(unfinished_run, run_dir)
    progress = run_dir / "progress.csv"
    header, first, second = progress.read_text().splitlines(keepends=True)
    step_column = header.split(",").index("time/total_timesteps")
    torn = ",".join(second.split(",")[:step_column]) + "," + second.split(",")[step_column][:1]  # "...,2"
    progress.write_text(header + first + torn)
    result = cli("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert progress.read_text().endswith("\n")
    rows = read_progress(run_dir)
    assert [int(r["time/total_timesteps"]) for r in rows] == [128, 256]
    assert all(None not in row and None not in row.values() for row in rows)  # every row has every column
    train_keys = [key for key in rows[1] if key.startswith("train/")]
    assert train_keys and all(rows[1][key] for key in train_keys), rows[1]
    assert int(rows[1]["train/n_updates"]) == 4  # the update at step 128, logged with the row of step 256


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(cli, unfinished_run, tmp_path) -> None:
    """A SIGTERM during start-up (or a full disk) leaves config.yaml and no checkpoint: resume= starts the run
    from step 0 with its own config."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(unfinished_run / "config.yaml", run_dir / "config.yaml")
    relaunch = cli("train.py", "model=sparse_fls", f"hydra.run.dir={run_dir}")
    assert relaunch.returncode == 2 and f"continue it with resume={run_dir}" in relaunch.stderr
    result = cli("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "from step 0" in result.stdout
    assert AttentionPPO.load(run_dir / "final_model.zip", device="cpu").num_timesteps == 256
    assert [int(r["time/total_timesteps"]) for r in read_progress(run_dir)] == [128, 256]
    (line,) = (run_dir / ".hydra" / "resumes.jsonl").read_text().splitlines()
    assert json.loads(line)["checkpoint"] is None


@pytest.mark.parametrize(
    ("old", "new", "same"),
    [
        (0.0, 0, True),
        (1_000_000, 1e6, True),
        (1_000_000, "1e6", True),
        (0.001, 0.0010, True),
        (0.001, 0.002, False),
        (True, 1, False),
        (False, "false", False),
        ([16, 32], [16.0, 32], True),
        ({"a": 1}, {"a": 1.0}, True),
        (None, 0, False),
        ("sparse_fls", "sparse_fls", True),
    ],
)
def test_resume_compares_values_after_type_conversion(old, new, same) -> None:
    assert same_setting(old, new) is same


@pytest.mark.slow
def test_resume_accepts_equal_values_and_refuses_others(cli, tiny_run) -> None:
    before = sorted(p.name for p in tiny_run.rglob("*"))
    same = cli("train.py", f"resume={tiny_run}", "model.entropy_lambda=0", "total_timesteps=128", "dry_run=true")
    assert same.returncode == 0, same.stderr[-3000:]
    assert same.stdout.strip().splitlines()[-1].startswith("params: ")
    other = cli("train.py", f"resume={tiny_run}", "ppo.n_epochs=3")
    assert other.returncode == 2 and "ppo.n_epochs=3 differs from the run's ppo.n_epochs=4" in other.stderr
    assert sorted(p.name for p in tiny_run.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["env.num_envs=0"], "env.num_envs=0: an integer >= 1"),
        pytest.param(
            ["model.entropy_lambda=-0.5"], "model.entropy_lambda=-0.5: a finite number >= 0", marks=pytest.mark.slow
        ),
        pytest.param(
            ["device=cuda:3"] if not torch.cuda.is_available() else ["device=tpu"], "device", marks=pytest.mark.slow
        ),
    ],
)
def test_bad_training_input(cli, tmp_path, args, message) -> None:
    result = cli("train.py", *args, "total_timesteps=128", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # a refused run creates nothing


@pytest.mark.slow
def test_two_job_sweep_through_submitit_local(cli, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    result = cli(
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        "model=nature_cnn",
        *TINY,
        "total_timesteps=128",
        "seed=1,9",
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.timeout_min=10",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        run_dir = sweep / job
        assert (run_dir / "final_model.zip").is_file(), sorted(p.name for p in run_dir.iterdir())
        assert list((run_dir / "wandb").glob("offline-run-*"))
    seeds = {(sweep / job / "config.yaml").read_text().split("seed: ")[1].split()[0] for job in ("0", "1")}
    assert seeds == {"1", "9"}


@pytest.mark.slow
def test_env_num_threads_reaches_the_training_env(tmp_path, monkeypatch) -> None:
    """env.num_threads: the C++ worker threads of the training envs, recorded in the run's config; a resume (e.g. on
    a machine with more cores) may change it."""
    import fls
    import fls.training
    from fls.envs import make_vec_env
    from tests.conftest import TINY_SPARSE_FLS

    made = []

    def recording(*args, **kwargs):
        made.append(make_vec_env(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(fls.training, "make_vec_env", recording)
    run = fls.train([*TINY_SPARSE_FLS, "total_timesteps=128", "env.num_threads=1"], run_dir=tmp_path / "run")
    assert [env.num_threads for env in made] == [1]
    assert "num_threads: 1" in (run.dir / "config.yaml").read_text()
    fls.train([f"resume={run.dir}", "env.num_threads=2"])  # how fast the envs step, not what the run is: may change
    with pytest.raises(fls.FlsError, match=r"env\.num_threads=-1"):
        fls.train([*TINY_SPARSE_FLS, "env.num_threads=-1"], run_dir=tmp_path / "refused")
    with pytest.raises(fls.FlsError, match="num_threads must be >= 0"):
        make_vec_env("Breakout", num_envs=2, num_threads=-1)


@pytest.mark.slow
def test_wandb_disabled_never_imports_wandb(tmp_path) -> None:
    """logger.wandb.mode=disabled: training (with its after-training evaluation) and evaluation never import wandb,
    so a machine without it (a GPU node, a minimal install) trains and evaluates."""
    code = (
        "import sys\n"
        "import fls\n"
        "from tests.conftest import TINY_SPARSE_FLS, evaluate_in_process\n"
        "args = [*TINY_SPARSE_FLS, 'total_timesteps=128', 'after_training.eval_episodes=2',"
        " 'after_training.eval_num_envs=2']\n"
        f"run = fls.train(args, run_dir={str(tmp_path / 'run')!r})\n"
        "evaluate_in_process(f'run={run.dir}', 'eval.episodes=2', 'eval.num_envs=2', 'eval.max_episode_steps=100',"
        f" 'eval.out={tmp_path / 'eval'}', 'logger.wandb.mode=disabled')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'wandb'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, env=CHILD_ENV
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-2000:]
    assert (tmp_path / "eval" / "summary.json").is_file() and not list(tmp_path.glob("**/wandb"))
