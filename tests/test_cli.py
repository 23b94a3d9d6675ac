"""train.py from the command line: dry runs of every model and option, and one-line errors for bad input."""

from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir

from fls.cli import CONFIG_DIR, register_resolvers
from fls.training import dry_run

register_resolvers()

DRY_RUNS = [
    ["model=nature_cnn"],
    ["model=sparse_fls"],
    ["model=sparse_fls", "model.sum_pool=true"],
    ["model=sparse_fls", "model.sum_pool=true", "model.normalize_attention=true"],
    ["model=sparse_fls", "model.normalize_attention=true"],
    ["model=sparse_fls", "model.fls_kernel=1"],
    ["model=sparse_fls", "model.softplus_base2=true"],
    ["model=sparse_fls", "model.final_relu=false"],
    ["model=sparse_fls", "model.attention_at=conv1"],
    ["model=sparse_fls", "model.attention_at=every_conv", "model.fls_kernel=1", "model.softplus_base2=true"],
    ["model=dense_fls"],
    ["model=dense_fls", "model.normalize_attention=true", "model.fls_kernel=1", "model.final_relu=false"],
    ["model=rs"],
    ["model=rs", "model.pad_input=false"],
    ["model=daqn", "env=Seaquest"],
    ["model=maxpool_cnn", "env=MsPacman"],
    ["model=maxpool_cnn", "model.channels=[16,32]", "model.kernel_size=3"],
    ["model=sparse_fls", "model.entropy_lambda=0.001", "env=Pong"],
]


@pytest.mark.parametrize("args", DRY_RUNS, ids=lambda a: " ".join(a))
def test_dry_run_of_every_model_and_option(args, capsys) -> None:
    """The dry-run task on the composed config of each combination (in-process: spawning 18 CLIs is slow)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*args, "dry_run=true"])
    n_params = dry_run(cfg)
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"params: {n_params}"
    assert "FLSPolicy" in out and "features_extractor" in out and n_params > 100_000


@pytest.mark.slow  # a process costs seconds; the dry runs above run in-process, test_bad_input_... through the CLI
@pytest.mark.parametrize("args", [["model=sparse_fls"], ["model=dense_fls", "env=Seaquest"]], ids=" ".join)
def test_dry_run_command(cli, args, tmp_path) -> None:
    result = cli("train.py", *args, "dry_run=true", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"params: \d+", last), last


@pytest.mark.slow
def test_a_multirun_of_dry_runs_leaves_nothing_behind(cli, tmp_path) -> None:
    result = cli("train.py", "-m", "model=nature_cnn,daqn", "dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^params: \d+$", result.stdout, flags=re.M)) == 2
    assert list(tmp_path.iterdir()) == []  # not even Hydra's multirun/<date>/<time>/multirun.yaml


BAD = [
    (["model=resnet"], "unknown model 'resnet' (valid: daqn, dense_fls, maxpool_cnn, nature_cnn, rs, sparse_fls)"),
    (["env=Tetris"], "unknown env 'Tetris' (valid: BeamRider, Breakout"),
    (["env.name=Tetris"], "env.name=Tetris: one of BeamRider, Breakout"),
    (["model.dropout=0.5"], "unknown model option 'model.dropout' (valid: model.attention_at"),
    (["model=nature_cnn", "model.sum_pool=true"], "model.sum_pool does not apply to nature_cnn (its options: none)"),
    (
        ["model=sparse_fls", "model.pad_input=false"],
        "model.pad_input does not apply to sparse_fls (its options: sum_pool",
    ),
    (["model=dense_fls", "model.sum_pool=false"], "dense_fls always sum-pools"),
    (["model.attention_at=conv1", "model.sum_pool=true"], "needs model.attention_at=conv3"),
    (["model.attention_at=conv2"], "model.attention_at=conv2: one of conv3, conv1, every_conv"),
    (["model.fls_kernel=5"], "model.fls_kernel=5: one of 3, 1"),
    (["model=nature_cnn", "model.entropy_lambda=0.01"], "needs a model with attention; nature_cnn has none"),
    (["model.entropy_lambda=-1"], "model.entropy_lambda=-1: a finite number >= 0"),
    (["ppo=ppo2"], "unknown ppo 'ppo2' (valid: paper, zoo)"),
]


# One case through the real command line in the fast subset (a process costs seconds), all of them with --slow;
# the in-process tables of tests/test_config_schema.py check the messages of the config keys fast.
@pytest.mark.parametrize(
    ("args", "message"),
    [BAD[0], *(pytest.param(*case, marks=pytest.mark.slow) for case in BAD[1:])],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_bad_input_is_one_line_and_non_zero(cli, args, message, tmp_path) -> None:
    result = cli("train.py", *args, "dry_run=true", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


WANDB_MODE_REFUSED = (
    "error: environment variable WANDB_MODE='' is not a W&B mode: unset it or set one of online, offline, disabled "
    "(logger.wandb.mode chooses per command)"
)
SLURM_SWEEP = ["-m", "hydra/launcher=slurm", "hydra.sweep.dir={out}", "seed=1,2"]
SLURM_REFUSED = (
    "error: hydra/launcher=slurm needs a SLURM cluster, but sbatch and srun are not on PATH here; "
    "hydra/launcher=submitit_local or local_parallel runs the same jobs on this machine"
)


# What the library underneath would refuse only once the run or sweep folder exists (wandb validates WANDB_MODE in
# wandb.init, submitit looks for srun when the sweep starts) is refused up front, creating nothing.
@pytest.mark.parametrize(
    ("script", "args", "env", "message"),
    [
        ("train.py", ["dry_run=false", "hydra.run.dir={out}"], {"WANDB_MODE": ""}, WANDB_MODE_REFUSED),
        ("evaluate.py", ["run={tmp}"], {"WANDB_MODE": ""}, WANDB_MODE_REFUSED),
        ("train.py", SLURM_SWEEP, {"PATH": "/bin"}, SLURM_REFUSED),
    ],
    ids=["wandb-mode-train", "wandb-mode-evaluate", "slurm-without-slurm"],
)
def test_refused_before_anything_exists(cli, script, args, env, message, tmp_path) -> None:
    out = tmp_path / "out"
    result = cli(script, *(a.format(out=out, tmp=tmp_path) for a in args), env=env)
    assert result.returncode == 2, result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [message]
    assert not out.exists()


TINY_TRAINING = ["env.num_envs=2", "ppo.n_steps=64", "ppo.batch_size=64", "total_timesteps=64"]
TINY_TRAINING += ["logger.wandb.mode=disabled", "logger.tensorboard=false"]


# Commands that used to start work (a training, a run directory in the current folder, job 0 of a sweep) or end in
# Hydra's many lines: refused with one line, exit 2, and nothing made in the working directory (no outputs/, no
# multirun/). {run} is an empty folder outside it. test_config_schema.py's tables check more values in-process.
@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("train.py", ["+foo=1"], "error: +foo=1: unknown key (top-level keys: model, env, ppo, logger, seed"),
        pytest.param(
            "train.py",
            ["hydra.run.dir="],
            "error: hydra.run.dir=: a folder (not empty: an empty hydra.run.dir is the current folder)",
            marks=pytest.mark.slow,
        ),
        pytest.param("train.py", ["resume="], "error: resume=: a path (not empty), or null", marks=pytest.mark.slow),
        pytest.param(
            "train.py",
            ["-m", "model=nature_cnn,sparse_fls", "model.sum_pool=true"],
            "error: model.sum_pool does not apply to nature_cnn (its options: none) (job 0 of the sweep: "
            "model=nature_cnn model.sum_pool=True ",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "train.py",
            ["-m", "hydra/sweeper=bogus", "seed=1,2"],
            "error: unknown hydra/sweeper 'bogus' (valid: basic, ",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "evaluate.py",
            ["run={run}", "eval.episodes=2", "eval.num_envs=2", "+eval.bogus=1"],
            "error: +eval.bogus=1: unknown key (keys of eval: episodes",
            marks=pytest.mark.slow,
        ),
        (
            "evaluate.py",
            ["-m", "run={run}", "eval.num_envs=2", "eval.shard=0,1,5", "eval.num_shards=2"],
            "error: eval.shard=5 is out of range for eval.num_shards=2 (valid: 0..1) (job 2 of the sweep: run=",
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_refused_before_any_work(cli, script, args, message, tmp_path) -> None:
    run, cwd = tmp_path / "run", tmp_path / "cwd"
    run.mkdir()
    cwd.mkdir()
    extra = TINY_TRAINING if script == "train.py" else []
    result = cli(script, *(a.format(run=run) for a in args), *extra, cwd=cwd, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr[-3000:]
    assert list(cwd.iterdir()) == [] and list(run.iterdir()) == []


def test_train_help_lists_groups_choices_and_keys(cli) -> None:
    result = cli("train.py", "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for choice in ("sparse_fls*", "dense_fls", "maxpool_cnn", "Breakout*", "Seaquest", "zoo", "quickstart"):
        assert choice in out, choice
    assert "_options" not in out  # configs/model/_options.yaml is a shared base, not a choice
    assert "options: sum_pool, normalize_attention" in out  # each model's options
    for key in ("seed=1 ", "model.entropy_lambda=0.0", "env.num_envs=8", "ppo.learning_rate=", "dry_run=false"):
        assert f"  {key}" in out, key
    assert "an integer >= 1" in out and "--cfg job" in out
    sweeps = out[out.index("Sweeps (-m") : out.index("Most used keys")]
    for choice in ("hydra/launcher", "basic*", "local_parallel", "slurm", "submitit_local", "optuna_search"):
        assert f" {choice}" in sweeps, choice


@pytest.mark.slow
def test_help_shows_the_values_of_the_command_line(cli) -> None:
    out = cli("train.py", "experiment=quickstart", "--help").stdout
    assert "total_timesteps=30720 " in out and "after_training.video=true " in out


@pytest.mark.slow
def test_evaluate_help_lists_tasks_short_forms_and_only_its_groups(cli) -> None:
    result = cli("evaluate.py", "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for task in ("episodes", "merge", "video", "gaze", "report"):
        assert f"\n  {task} " in out, task
    assert "saliency=[attention,gradcam]" in out and "saliency.methods=[attention,gradcam]" in out
    assert "video=true" in out and "task=video" in out
    assert "Breakout" in out and "eval.episodes=8192" in out and "eval.deterministic=false" in out
    for refused in ("experiment", "_options", "sparse_fls", "ppo"):
        assert refused not in out, refused


def test_help_into_a_closed_pipe_is_quiet() -> None:
    """`evaluate.py --help | head -2`: the reader leaves early; no BrokenPipeError traceback, exit 0."""
    import subprocess
    import sys

    from tests.conftest import CHILD_ENV, ROOT

    process = subprocess.Popen(
        [sys.executable, str(ROOT / "evaluate.py"), "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CHILD_ENV,
    )
    process.stdout.close()  # before the help is written (the command takes ~0.5 s to start)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and b"Traceback" not in stderr, stderr.decode()[-2000:]
