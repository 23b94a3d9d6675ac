"""Hostile input and faults: each case exits with its code and one line, and leaves the disk as it was.

HOSTILE is a table (add rows, not tests): a row names the script, its arguments (``{run}`` is a copy of a real
tiny run, ``{sandbox}`` the working directory, ``{readonly}`` a folder this process cannot write, ``{file}`` a
plain file), the exit code and a fragment of the one-line message. Every row runs in an empty working directory
and asserts that neither it nor the run changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

HOSTILE = [
    # (id, script, args, exit code, message fragment)
    ("refused-train", "train.py", ["model.entropy_lambda=-1"], 2, "model.entropy_lambda=-1: a finite number >= 0"),
    ("refused-game", "train.py", ["env.name=Tetris"], 2, "env.name=Tetris: one of BeamRider, Breakout"),
    ("dry-run", "train.py", ["dry_run=true", "env.num_envs=1"], 0, None),
    ("resume-typo", "train.py", ["resume={sandbox}/no_such_run"], 2, "does not exist"),
    ("resume-not-a-run", "train.py", ["resume={sandbox}"], 2, "has no checkpoint"),
    ("resume-contradiction", "train.py", ["resume={run}", "seed=2"], 2, "seed=2 differs from the run's seed=1"),
    ("resume-experiment", "train.py", ["resume={run}", "experiment=quickstart"], 2, "differs from the run's"),
    ("fresh-into-a-run", "train.py", ["hydra.run.dir={run}"], 2, "already holds a run; continue it with resume="),
    ("run-dir-readonly", "train.py", ["hydra.run.dir={readonly}/run"], 2, "{readonly}"),
    ("run-dir-under-file", "train.py", ["hydra.run.dir={file}/run"], 2, "not a directory; a file stands where"),
    ("evaluate-missing-run", "evaluate.py", ["run={sandbox}/no_such_run"], 2, "no_such_run"),
    ("evaluate-bad-shard", "evaluate.py", ["run={run}", "eval.shard=3", "eval.num_shards=2"], 2, "eval.shard=3"),
    (
        "evaluate-zoo-model-of-a-run",
        "evaluate.py",
        ["run={run}", "zoo.model=best", "eval.episodes=2", "eval.num_envs=2"],
        2,
        "zoo.model=best picks a model of an rl-zoo3 folder; run={run} is an fls run: drop zoo.model",
    ),
    ("evaluate-unknown-task", "evaluate.py", ["run={run}", "task=dance"], 2, "task=dance: one of episodes, merge"),
    (
        "evaluate-out-under-file",
        "evaluate.py",
        ["run={run}", "eval.episodes=2", "eval.num_envs=2", "eval.out={file}/eval"],
        2,
        "not a directory; a file stands where",
    ),
    (
        "evaluate-out-readonly",
        "evaluate.py",
        ["run={run}", "eval.episodes=2", "eval.num_envs=2", "eval.out={readonly}/eval"],
        2,
        "eval.out=",
    ),
]


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots``: folders by name (a folder made and removed again changes its parent's time),
    files by size and modification time."""
    tree = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            stat = path.lstat()
            tree[str(path)] = (0, 0) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return tree


def run_script(script: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def readonly(tmp_path) -> Path:
    """A folder this process cannot write: a chmod 555 folder, or for root (who ignores modes) /sys."""
    if os.geteuid() == 0:
        yield Path("/sys/fls-hostile")
        return
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


# Each row is a process of a few seconds: the fast subset runs one row per script, --slow runs them all.
FAST_ROWS = {"resume-contradiction", "evaluate-bad-shard"}


@pytest.mark.parametrize(
    ("script", "args", "code", "message"),
    [pytest.param(*c[1:], id=c[0], marks=() if c[0] in FAST_ROWS else pytest.mark.slow) for c in HOSTILE],
)
def test_hostile_input(script, args, code, message, tmp_path, run_copy, readonly) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    plain_file = tmp_path / "plain_file"
    plain_file.write_text("not a folder\n")
    names = {"run": run_copy, "sandbox": sandbox, "readonly": readonly, "file": plain_file}
    args = [arg.format(**names) for arg in args]
    before = snapshot(sandbox, run_copy, plain_file)
    result = run_script(script, *args, cwd=sandbox)
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    if message is not None:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
        assert message.format(**names) in lines[0], lines[0]
    assert snapshot(sandbox, run_copy, plain_file) == before
    if os.geteuid() == 0:
        assert not Path("/sys/fls-hostile").exists()


VIDEO = "final_model_Breakout_seed2000_1ep_attention"  # <checkpoint>_<game>_seed<seed>_<episodes>ep_<methods>
HOLDER = """
import sys, time
from fls.locks import hold
with hold(sys.argv[1], "test"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_in_another_process(lock_file: Path) -> subprocess.Popen:
    """A real second process holding ``lock_file`` (returns once it holds it)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize(
    ("script", "args", "lock"),
    [
        # (test_lock_refusal_names_the_holder_... below checks the refusal in-process, fast)
        pytest.param("train.py", ["resume={run}"], ".lock", marks=pytest.mark.slow),
        pytest.param(
            "evaluate.py",
            ["run={run}", "eval.episodes=2", "eval.num_envs=2"],
            "eval/final_model/.episodes.jsonl.lock",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "evaluate.py",
            ["run={run}", "video=true", "saliency=[attention]"],
            f"videos/.{VIDEO}.lock",
            marks=pytest.mark.slow,
        ),
    ],
    ids=["resume", "evaluate", "video"],
)
def test_a_held_output_refuses_a_second_writer(script, args, lock, run_copy, tmp_path) -> None:
    lock_file = run_copy / lock
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    holder = hold_in_another_process(lock_file)
    try:
        before = snapshot(run_copy)
        result = run_script(script, *[a.format(run=run_copy) for a in args], cwd=tmp_path)
        after = snapshot(run_copy)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert f"is being written by PID {holder.pid} on " in lines[0] and "-c" in lines[0], lines[0]
    assert after == before


def _wait_for_holder(lock_file: Path, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            record = json.loads(lock_file.read_text() or "null")
        except (OSError, json.JSONDecodeError):
            record = None
        if record:
            return record
        time.sleep(0.2)
    raise AssertionError(f"nobody took {lock_file} within {timeout}s")


@pytest.mark.slow
def test_two_evaluations_of_one_output(run_copy, tmp_path) -> None:
    """A real evaluation holds its records; a second one on the same output is refused at once, the first goes on."""
    args = ["run=" + str(run_copy), "eval.episodes=512", "eval.num_envs=2", "logger.wandb.mode=disabled"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "evaluate.py"), *args], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        holder = _wait_for_holder(run_copy / "eval" / "final_model" / ".episodes.jsonl.lock")
        assert holder["pid"] == first.pid and "evaluate.py" in holder["command"]
        second = run_script("evaluate.py", *args, cwd=tmp_path)
        assert first.poll() is None, "the first evaluation ended before the second started; use more episodes"
    finally:
        first.terminate()
        first.communicate(timeout=120)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"is being written by PID {first.pid} on " in second.stderr and "evaluate.py run=" in second.stderr


@pytest.mark.slow
def test_a_training_refuses_a_concurrent_resume(tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = ["env.num_envs=2", "ppo.n_steps=64", "ppo.batch_size=64", "total_timesteps=100000"]
    args += ["logger.wandb.mode=disabled", "logger.tensorboard=false", "checkpoint_every=128"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        holder = _wait_for_holder(run_dir / ".lock")
        assert holder["pid"] == first.pid
        deadline = time.time() + 300
        while not list((run_dir / "checkpoints").glob("step_*.zip")) and time.time() < deadline:
            time.sleep(0.5)
        rows_before = (run_dir / "progress.csv").read_text().count("\n")
        second = run_script("train.py", f"resume={run_dir}", cwd=tmp_path)
        assert first.poll() is None
    finally:
        first.terminate()
        first.communicate(timeout=120)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"is being written by PID {first.pid} on " in second.stderr and "train.py " in second.stderr
    assert rows_before >= 2
    steps = [line.split(",") for line in (run_dir / "progress.csv").read_text().splitlines()[1:]]
    assert len(steps) == len({tuple(row) for row in steps})  # no row written twice


@pytest.mark.slow
def test_fresh_runs_with_one_name_get_their_own_directories(tmp_path) -> None:
    """Two launches in the same second (here: every second of the next minute is already taken) that differ only
    in model.entropy_lambda each get a directory of their own."""
    from datetime import datetime, timedelta

    now = datetime.now()
    taken = []
    for second in range(180):
        moment = now + timedelta(seconds=second)
        folder = tmp_path / "outputs" / f"{moment:%Y-%m-%d}" / f"{moment:%H-%M-%S}_Breakout_sparse_fls_seed1"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text("someone else's run\n")
        taken.append(folder)
    args = ["env.num_envs=2", "ppo.n_steps=64", "ppo.batch_size=64", "total_timesteps=64"]
    args += ["logger.wandb.mode=disabled", "logger.tensorboard=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    launches = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args, f"model.entropy_lambda={lam}"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lam in (0.0, 0.001)
    ]
    for launch in launches:
        _, stderr = launch.communicate(timeout=600)
        assert launch.returncode == 0, stderr[-3000:]
    assert all((folder / "config.yaml").read_text() == "someone else's run\n" for folder in taken)
    runs = sorted(p.parent for p in (tmp_path / "outputs").glob("*/*/final_model.zip"))
    assert len(runs) == 2 and all(run.name.endswith(("_2", "_3")) for run in runs), runs
    lambdas = sorted(float(p.joinpath("config.yaml").read_text().split("entropy_lambda: ")[1].split()[0]) for p in runs)
    assert lambdas == [0.0, 0.001]


def test_lock_refusal_names_the_holder_and_is_released_when_it_dies(tmp_path) -> None:
    from fls.locks import LockedError, hold

    lock_file = tmp_path / ".lock"
    holder = hold_in_another_process(lock_file)
    try:
        with pytest.raises(LockedError, match=rf"is being written by PID {holder.pid} on .*\(-c {lock_file}, since "):
            with hold(lock_file, "the test folder"):
                pass
    finally:
        holder.kill()  # kill -9: the kernel releases the lock
        holder.wait()
    with hold(lock_file, "the test folder"), hold(lock_file, "the test folder"):  # free now, and re-entrant
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()  # removed on release


def _make(path: str) -> str:
    from fls.rundir import new_directory

    return str(new_directory(path))


def test_one_name_asked_for_at_once_gives_distinct_directories(tmp_path) -> None:
    import multiprocessing

    name = "10-00-00_Breakout_sparse_fls_seed1"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        made = pool.map(_make, [str(tmp_path / "outputs" / name)] * 6)
    assert sorted(Path(p).name for p in made) == [name] + [f"{name}_{i}" for i in range(2, 7)]


def test_the_next_writer_removes_orphans_of_an_interrupted_write(run_copy, tmp_path) -> None:
    orphans = [run_copy / ".config.yaml.k2j4.tmp", run_copy / "checkpoints" / ".step_000000000128.zip.x81.tmp"]
    for orphan in orphans:
        orphan.parent.mkdir(exist_ok=True)
        orphan.write_bytes(b"half a file")
    result = run_script("train.py", f"resume={run_copy}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already finished" in result.stdout
    assert not any(orphan.exists() for orphan in orphans)
    assert (run_copy / "final_model.zip").is_file()


@pytest.fixture
def overflowing_run(run_copy) -> Path:
    """A copy of the tiny run whose weights are all 1e10: finite parameters, action scores that overflow to NaN."""
    import torch

    from fls.agents.agent import load_agent

    agent = load_agent(run_copy / "final_model.zip")
    with torch.no_grad():
        for tensor in agent.policy.parameters():
            tensor.fill_(1e10)
    agent.model.save(run_copy / "final_model.zip")
    return run_copy


OVERFLOW_TASKS = {
    "video": ["video=true", "saliency=[attention]", "saliency.max_steps=20"],
    "tree": ["task=tree", "tree.steps=[1]", "saliency.max_steps=5"],
    "faithfulness": ["task=faithfulness", "faithfulness.frames=4", "faithfulness.sanity=false", "eval.seed=100"],
    "episodes": ["eval.episodes=1", "eval.num_envs=1", "eval.max_episode_steps=30", "eval.seed=100"],
    "gaze": ["task=gaze", "gaze.data={sandbox}"],
    "objects": ["task=objects", "saliency=[attention]", "saliency.max_steps=20"],
}


@pytest.mark.parametrize(
    "task", [pytest.param(t, marks=() if t == "video" else pytest.mark.slow) for t in OVERFLOW_TASKS]
)
def test_a_model_whose_scores_overflow_is_refused_by_every_task(task, overflowing_run, tmp_path) -> None:
    """Before: video and tree tracebacks (softmax of NaN), faithfulness exit 0 with "n/a" AUCs, episodes exit 2
    with a header-only episodes.jsonl left behind. Now: one line, exit 2, nothing written."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    args = [a.format(sandbox=sandbox) for a in OVERFLOW_TASKS[task]]
    before = snapshot(sandbox, overflowing_run)
    result = run_script("evaluate.py", f"run={overflowing_run}", *args, "logger.wandb.mode=disabled", cwd=sandbox)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "action scores became NaN or inf" in lines[0], result.stderr[-3000:]
    assert str(overflowing_run / "final_model.zip") in lines[0]
    assert snapshot(sandbox, overflowing_run) == before


def run_with_file_size_limit(limit: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """evaluate.py unable to write more than ``limit`` bytes to any file (``ulimit -f``): a disk that fills up."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)

    def limit_file_size() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=limit_file_size,
    )


@pytest.mark.parametrize(
    ("suffix", "steps"),
    [("mp4", 40), pytest.param("mp4", 400, marks=pytest.mark.slow), pytest.param("gif", 40, marks=pytest.mark.slow)],
    ids=["mp4-cut-at-close", "mp4-encoder-dies-while-fed", "gif"],
)
def test_a_video_that_does_not_fit_is_refused_and_not_kept(suffix, steps, run_copy, tmp_path) -> None:
    """Before: the mp4 encoder died at the limit, the broken file was renamed into place and its path printed
    with exit 0 (fed a longer video: a many-line IOError; the gif: a traceback). Now: one line naming the video,
    exit 2, no video, no partial file."""
    out = tmp_path / "videos"
    args = [f"run={run_copy}", "video=true", "saliency=[attention]", f"saliency.max_steps={steps}"]
    args.append(f"saliency.out={out}")
    result = run_with_file_size_limit(
        30_000, *args, f"saliency.format={suffix}", "logger.wandb.mode=disabled", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("playing", "render"))]
    assert lines == [
        f"error: {out / VIDEO}.{suffix}: file too large; the file is larger than this process may write (ulimit -f) "
        "or the file system holds: raise the limit or write elsewhere (eval.out=, saliency.out=, gaze.out= or "
        "report.out=<folder>)"
    ], result.stderr[-3000:]
    assert not out.exists()


def test_a_full_disk_names_the_file_being_written(tmp_path) -> None:
    """Before: "a file: file too large" (the write error carries no name); the temporary file was named when the
    rename failed."""
    target = tmp_path / "summary.json"
    code = (
        "import resource, sys\n"
        "from fls.errors import os_error_message\n"
        "from fls.rundir import atomic_write_text\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "try:\n"
        f"    atomic_write_text({str(target)!r}, 'x' * 5000)\n"
        "except OSError as error:\n"
        "    print(os_error_message(error, 'evaluate'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith(f"{target}: file too large; "), (result.stdout, result.stderr)
    assert list(tmp_path.iterdir()) == []
