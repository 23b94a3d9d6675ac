"""Typed configuration: every key of train.py and evaluate.py is type- and range-checked, bad values are one line.

The tables run in-process (the checks the CLI runs before Hydra and on the composed config) and, with --slow,
through the real command lines, where each case must exit 2 with one `error:` line and create nothing.
"""

from __future__ import annotations

import typing

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fls.cli import CONFIG_DIR, SchemaCheck, apply_aliases, check_composed, check_override_values, register_resolvers
from fls.config_schema import (
    SALIENCY_METHODS,
    TASKS,
    TREE_ROOTS,
    VALUE_LOSSES,
    VIDEO_FORMATS,
    check_config,
    leaf_keys,
)
from fls.errors import ConfigError

register_resolvers()

# (command line, the error line's start): every value is refused with `<key>=<value>: <what is accepted>`.
TRAIN_BAD = [
    (["model.entropy_lambda=abc"], "model.entropy_lambda=abc: a finite number >= 0"),
    (["model.entropy_lambda=-1"], "model.entropy_lambda=-1: a finite number >= 0"),
    (["model.entropy_lambda=nan"], "model.entropy_lambda=nan: a finite number"),
    (["env.num_envs=abc"], "env.num_envs=abc: an integer >= 1"),
    (["env.num_envs=0"], "env.num_envs=0: an integer >= 1"),
    (["env.num_envs=2.5"], "env.num_envs=2.5: an integer"),
    (["env.name=Tetris"], "env.name=Tetris: one of BeamRider, Breakout"),
    (["checkpoint_every=abc"], "checkpoint_every=abc: an integer >= 1"),
    (["total_timesteps=0"], "total_timesteps=0: an integer >= 1"),
    (["total_timesteps=1e7"], "total_timesteps=10000000.0: an integer >= 1 (write 10000000"),
    (["seed=-5"], "seed=-5: an integer >= 0"),
    (["seed=null"], "seed=null: an integer >= 0"),
    (["seed=1,-5"], "seed=-5: an integer >= 0"),  # every value of a sweep, before any job starts
    (["ppo.learning_rate=-1"], "ppo.learning_rate=-1: a finite number > 0"),
    (["ppo.learning_rate=0"], "ppo.learning_rate=0: a finite number > 0"),
    (["ppo.learning_rate=inf"], "ppo.learning_rate=inf: a finite number > 0"),
    (["ppo.learning_rate=nan"], "ppo.learning_rate=nan: a finite number > 0"),
    (["ppo.clip_range=-0.1"], "ppo.clip_range=-0.1: a finite number > 0"),
    (["ppo.clip_range_vf=-inf"], "ppo.clip_range_vf=-inf: a finite number > 0, or null"),
    (["ppo.gamma=1.5"], "ppo.gamma=1.5: a finite number >= 0 and <= 1"),
    (["ppo.n_steps=abc"], "ppo.n_steps=abc: an integer >= 1"),
    (["ppo.lr_schedule=cosine"], "ppo.lr_schedule=cosine: one of linear, constant"),
    (["ppo.value_loss=l2"], "ppo.value_loss=l2: one of baselines, sb3"),
    (["ppo.normalize_advantage=1"], "ppo.normalize_advantage=1: true or false"),
    (["dry_run=maybe"], "dry_run=maybe: true or false (a YAML/Hydra boolean)"),
    (["device=gpu"], "device=gpu: auto, cpu, cuda or cuda:N"),
    (["device=cuda:x"], "device=cuda:x: auto, cpu, cuda or cuda:N"),
    (["logger.wandb.mode=foo"], "logger.wandb.mode=foo: one of offline, online, disabled"),
    (["logger.tensorboard=yes"], "logger.tensorboard=yes: true or false"),
    (["logger.log_interval=0"], "logger.log_interval=0: an integer >= 1"),
    (["model.fls_kernel=5"], "model.fls_kernel=5: one of 3, 1"),
    (["model.attention_at=conv2"], "model.attention_at=conv2: one of conv3, conv1, every_conv"),
    (["model.sum_pool=no"], "model.sum_pool=no: true or false (a YAML/Hydra boolean), or null"),
    (["model=maxpool_cnn", "model.channels=[32,0]"], "model.channels=[32,0]: a list, each item an integer >= 1"),
    (["model=maxpool_cnn", "model.kernel_size=4"], "model.kernel_size=4: a positive odd integer"),
    (["after_training.video=maybe"], "after_training.video=maybe: true or false"),
    (["after_training.video_methods=[attention,foo]"], "after_training.video_methods=[attention,foo]: a list"),
    (["experiment=quickstart", "env.num_envs=0"], "env.num_envs=0: an integer >= 1"),
    (
        ["env.num_env=4"],
        "env.num_env=4: unknown key (keys of env: name, num_envs, num_threads, repeat_action_probability)",
    ),
    (["env.repeat_action_probability=1.5"], "env.repeat_action_probability=1.5: a finite number >= 0 and <= 1"),
    (["env.repeat_action_probability=-0.1"], "env.repeat_action_probability=-0.1: a finite number >= 0 and <= 1"),
    (["sed=1"], "sed=1: unknown key (top-level keys: model, env"),
    (["seed=[1"], "seed=[1: cannot parse"),
    # Unknown keys however they are written, keys and groups the config needs, Hydra's own groups and folders.
    (["+foo=1"], "+foo=1: unknown key (top-level keys: model, env"),
    (["++foo=1"], "++foo=1: unknown key (top-level keys: model, env"),
    (["+after_training.bogus=1"], "+after_training.bogus=1: unknown key (keys of after_training: eval_episodes"),
    (["~foo"], "~foo: unknown key (top-level keys: model, env"),
    (["+seed=3"], "+seed=3: seed is already in the config; set it with seed=3"),
    (["~seed"], "~seed: train.py needs seed (an integer >= 0 and <= 2147483647); set it, do not delete it"),
    (["~model"], "~model: train.py needs a model (choose one: model=<name>; daqn, dense_fls"),
    (["model=null"], "model=null: train.py needs a model (choose one: model=<name>; daqn, dense_fls"),
    (["experiment=null"], "experiment=null: leave experiment out to choose none (or one of lambda_search"),
    (["+experiment=quickstart"], "+experiment=quickstart: write experiment=quickstart (no + for a group"),
    (["resume="], "resume=: a path (not empty), or null"),
    (["resume=''"], "resume=: a path (not empty), or null"),
    (["hydra.run.dir="], "hydra.run.dir=: a folder (not empty: an empty hydra.run.dir is the current folder)"),
    (["hydra.sweep.dir="], "hydra.sweep.dir=: a folder (not empty"),
    (["hydra/launcher=bogus"], "unknown hydra/launcher 'bogus' (valid: basic, "),
    (["hydra/sweeper=bogus"], "unknown hydra/sweeper 'bogus' (valid: basic, "),
    (["hydra/launcher=null"], "unknown hydra/launcher 'null' (valid: basic, "),
    (["seed=" + "9" * 5000], "seed=99999999999999999999... (5000 characters): an integer >= 0 and <= 2147483647"),
    (["seed=1," + "9" * 5000], "seed=1," + "9" * 18 + "... (5002 characters): an integer >= 0"),
    (["ppo.learning_rate=" + "9" * 400], "ppo.learning_rate=99999999999999999999... (400 characters): a finite number"),
    # The model registry's checks of several keys also run before the run folder exists.
    (["model=nature_cnn", "model.sum_pool=true"], "model.sum_pool does not apply to nature_cnn"),
    (["model=dense_fls", "model.sum_pool=false"], "dense_fls always sum-pools"),
    (["model=nature_cnn", "model.entropy_lambda=0.01"], "model.entropy_lambda=0.01 needs a model with attention"),
]

EVALUATE_BAD = [
    (["eval.deterministic=no"], "eval.deterministic=no: true or false (a YAML/Hydra boolean)"),
    (["eval.episodes=0"], "eval.episodes=0: an integer >= 1"),
    (["eval.episodes=abc"], "eval.episodes=abc: an integer >= 1"),
    (["eval.num_envs=0"], "eval.num_envs=0: an integer >= 1"),
    (["eval.seed=-1"], "eval.seed=-1: an integer >= 0"),
    (["eval.shard=-1"], "eval.shard=-1: an integer >= 0"),
    (["eval.max_episode_steps=0"], "eval.max_episode_steps=0: an integer >= 1, or null"),
    (["eval.repeat_action_probability=1.5"], "eval.repeat_action_probability=1.5: a finite number >= 0 and <= 1, or"),
    (["eval.repeat_action_probability=-0.1"], "eval.repeat_action_probability=-0.1: a finite number >= 0 and <= 1"),
    # Before: "an integer >= 1 and <= 100", which 7 is
    (["faithfulness.percent_step=7"], "faithfulness.percent_step=7: an integer that divides 100 (1, 2, 4, 5, 10,"),
    (["task=train"], "task=train: one of episodes, merge, video, gaze, report"),
    (["device=tpu"], "device=tpu: auto, cpu, cuda or cuda:N"),
    (["logger.wandb.mode=on"], "logger.wandb.mode=on: one of offline, online, disabled"),
    (["saliency.methods=[foo]"], "saliency.methods=[foo]: a list, each item one of attention, gradcam"),
    (["saliency=[attention,foo]"], "saliency.methods=[attention,foo]: a list, each item one of"),
    (["saliency.format=avi"], "saliency.format=avi: one of mp4, gif"),
    (["saliency.normalize=max"], "saliency.normalize=max: one of video, frame"),
    (["saliency.target=logit"], "saliency.target=logit: action, value or an action index >= 0"),
    (["saliency.target=-1"], "saliency.target=-1: action, value or an action index >= 0"),
    (["saliency.fps=0"], "saliency.fps=0: an integer >= 1"),
    (["saliency.frames=maybe"], "saliency.frames=maybe: true or false"),
    (["gaze.kl_eps=nan"], "gaze.kl_eps=nan: a finite number >= 0"),
    (["gaze.game=Tetris"], "gaze.game=Tetris: one of BeamRider"),
    (["report.std_ddof=2"], "report.std_ddof=2: one of 0, 1"),
    (["report.grid_points=1"], "report.grid_points=1: an integer >= 2"),
    (["video=yes"], "video=yes: true or false (a YAML/Hydra boolean)"),
    (["experiment=quickstart"], "experiment=quickstart: evaluate.py has no experiment group (its groups: env)"),
    (["model=rs"], "model=rs: evaluate.py has no model group (its groups: env)"),
    (["env=Pong", "env.num_envs=0"], "env.num_envs=0: an integer >= 1"),
    (["+eval.bogus=1"], "+eval.bogus=1: unknown key (keys of eval: episodes, num_envs"),
    (["+env=Pong"], "+env=Pong: write env=Pong (no + for a group of evaluate.py's defaults)"),
    (["~eval.out"], "~eval.out: evaluate.py needs eval.out (a path (not empty), or null); set it, do not delete it"),
    (["eval.out="], "eval.out=: a path (not empty), or null"),
    (["run="], "run=: a path (not empty), or null"),
    (["gaze.data=' '"], "gaze.data= : a path (not empty), or null"),
    (["task=report", "sweep=[runs/a,'']"], "sweep=[runs/a,]: a path (not empty) or a list, each item a path"),
    (["hydra.run.dir="], "hydra.run.dir=: a folder (not empty"),
    # evaluation's shards are checked against each other once composed (a sweep: in every job, before the first)
    (["eval.shard=2", "eval.num_shards=2"], "eval.shard=2 is out of range for eval.num_shards=2 (valid: 0..1)"),
    (["eval.num_envs=2", "eval.num_shards=4"], "eval.num_shards=4 exceeds eval.num_envs=2: shards split the envs"),
]


def _ids(case: object) -> str:
    return " ".join(a if len(a) < 50 else f"{a[:20]}...({len(a)})" for a in case) if isinstance(case, list) else ""


def _compose(config_name: str, overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=hydra)


def _refusal(config_name: str, args: list[str], capsys) -> str:
    """The one error line the CLI's checks give for ``args`` (before Hydra, or once composed)."""
    try:
        args = apply_aliases(args, config_name)
        check_override_values(args, config_name)
        check_config(_compose(config_name, args), config_name)
    except ConfigError as error:
        return str(error)
    except SystemExit as exit_:
        assert exit_.code == 2
        return capsys.readouterr().err.strip().removeprefix("error: ")
    raise AssertionError(f"{args} was accepted")


@pytest.mark.parametrize(("args", "message"), TRAIN_BAD, ids=_ids)
def test_train_refuses(args, message, capsys) -> None:
    assert _refusal("train", args, capsys).startswith(message)


@pytest.mark.parametrize(("args", "message"), EVALUATE_BAD, ids=_ids)
def test_evaluate_refuses(args, message, capsys) -> None:
    assert _refusal("evaluate", args, capsys).startswith(message)


TRAIN_GOOD = [
    [],
    ["experiment=quickstart"],
    ["experiment=paper", "ppo=zoo"],
    ["ppo=zoo", "ppo.clip_range_vf=null"],
    ["ppo.learning_rate=1e-3", "ppo.clip_range=0.2", "ppo.gamma=1", "ppo.gae_lambda=0"],
    ["model=sparse_fls", "model.sum_pool=true", "model.fls_kernel=1", "model.attention_at=conv3"],
    ["model=sparse_fls", "model.attention_at=every_conv", "model.softplus_base2=true", "model.final_relu=false"],
    ["model=sparse_fls", "model.entropy_lambda=0", "model.normalize_attention=true"],
    ["model=sparse_fls", "model.attention_at=null", "model.sum_pool=null"],
    ["model=dense_fls", "model.normalize_attention=true", "model.fls_kernel=1"],
    ["model=rs", "model.pad_input=false", "model.entropy_lambda=0.001"],
    ["model=daqn"],
    ["model=nature_cnn", "env=Seaquest"],
    ["model=maxpool_cnn", "model.channels=[16,32]", "model.kernel_size=3"],
    ["seed=0", "device=cpu", "dry_run=true", "total_timesteps=30_720", "checkpoint_every=1"],
    ["device=cuda:1", "resume=null", "logger.wandb.mode=disabled", "logger.wandb.entity=null"],
    ["logger.wandb.tags=[a,b]", "logger.wandb.group=sweep1", "after_training.video_methods=[attention,gradcam]"],
    ["seed=1,2", "model=rs,sparse_fls"],  # a multirun's command line: every value is checked
]

EVALUATE_GOOD = [
    [],
    ["run=outputs/x", "eval.episodes=16", "eval.num_envs=8", "eval.deterministic=true"],
    ["run=123"],  # a directory named by digits
    ["checkpoint=model.zip", "env=Breakout", "eval.max_episode_steps=null", "eval.out=null"],
    ["video=true", "saliency=[attention,gradcam,fullgrad++]", "saliency.target=value", "saliency.layer=null"],
    ["task=video", "saliency.target=3", "saliency.format=gif", "saliency.normalize=frame"],
    ["task=gaze", "gaze.data=/data", "gaze.game=null", "gaze.max_frames=null", "gaze.kl_eps=0"],
    ["task=report", "sweep=[a,b]", "report.std_ddof=1", "report.checkpoint=null"],
    ["task=merge", "eval.shard=1", "eval.num_shards=2", "logger.wandb.mode=disabled"],
]


@pytest.mark.parametrize("args", TRAIN_GOOD, ids=_ids)
def test_train_accepts(args) -> None:
    check_override_values(args, "train")
    if not any("," in a for a in args):
        check_config(_compose("train", args), "train")


@pytest.mark.parametrize("args", EVALUATE_GOOD, ids=_ids)
def test_evaluate_accepts(args) -> None:
    args = apply_aliases(args, "evaluate")
    check_override_values(args, "evaluate")
    check_config(_compose("evaluate", args), "evaluate")


def test_interpolated_value_is_checked_once_composed(monkeypatch, capsys) -> None:
    """Values the command line cannot see (interpolations, presets) are checked on the composed config."""
    monkeypatch.setenv("FLS_TEST_SEED", "abc")
    cfg = _compose("train", ["seed=${oc.env:FLS_TEST_SEED}"], hydra=True)
    with pytest.raises(SystemExit) as exit_:
        SchemaCheck().on_run_start(config=cfg, config_name="train")
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "error: seed=abc: an integer >= 0 and <= 2147483647"


def test_sweeper_params_of_a_preset_are_checked(capsys) -> None:
    """experiment=lambda_sweep's own sweep passes; a bad value in a preset's sweep stops the multirun at once."""
    cfg = _compose("train", ["experiment=lambda_sweep"], hydra=True)
    SchemaCheck().on_multirun_start(config=cfg, config_name="train")
    cfg.hydra.sweeper.params["model.entropy_lambda"] = "0,-0.001"
    with pytest.raises(SystemExit):
        SchemaCheck().on_multirun_start(config=cfg, config_name="train")
    assert "model.entropy_lambda=-0.001: a finite number >= 0" in capsys.readouterr().err


def test_presets_compose_to_valid_configs() -> None:
    for experiment in ("quickstart", "paper", "paper_grid", "lambda_sweep", "machado"):
        check_composed(_compose("train", [f"experiment={experiment}"], hydra=True))


def test_machado_preset_sets_sticky_actions() -> None:
    """experiment=machado plays with sticky actions 0.25 (any game); the default is the paper's 0."""
    assert _compose("train", [])["env"]["repeat_action_probability"] == 0.0
    for args in (["experiment=machado"], ["env=Pong", "experiment=machado"], ["experiment=machado", "env=Seaquest"]):
        cfg = _compose("train", args, hydra=True)
        check_composed(cfg)
        assert cfg.env.repeat_action_probability == 0.25


def _leaves(node, prefix: str = "") -> set[str]:
    out = set()
    for key, value in node.items():
        if OmegaConf.is_dict(value):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


@pytest.mark.parametrize(
    ("config_name", "overrides"),
    [("train", []), ("train", ["model=maxpool_cnn", "ppo=zoo"]), ("evaluate", ["env=Breakout"])],
    ids=_ids,
)
def test_presets_set_only_declared_keys(config_name, overrides) -> None:
    """Every key comes from its one declaration (fls/config_schema.py): a preset in configs/ that sets a key the
    schema does not declare fails here, and no declared key is left without a value once presets are applied."""
    composed = _compose(config_name, overrides)
    described = {name for name, _, _ in leaf_keys(config_name)}
    assert _leaves(composed) - described == set(), "keys without a schema: declare them in fls/config_schema.py"
    OmegaConf.to_container(composed, throw_on_missing=True)  # raises if a declared key got no value


@pytest.mark.slow  # imports captum and the evaluation stack
def test_choices_match_their_sources() -> None:
    """The enumerations kept in the schema (to stay cheap to import) are the ones the code accepts."""
    from fls.ppo import ValueLoss
    from fls.saliency import METHODS
    from fls.saliency.tree import ROOTS
    from fls.tasks.registry import TASKS as EVALUATE_TASKS
    from fls.tasks.video import FORMATS

    assert SALIENCY_METHODS == tuple(METHODS)
    assert TREE_ROOTS == ROOTS
    assert tuple(TASKS) == tuple(EVALUATE_TASKS)
    assert VALUE_LOSSES == typing.get_args(ValueLoss)
    assert VIDEO_FORMATS == FORMATS


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "message"),
    [("train.py", [*a, "dry_run=true"], m) for a, m in TRAIN_BAD] + [("evaluate.py", a, m) for a, m in EVALUATE_BAD],
    ids=lambda v: v if isinstance(v, str) and v.endswith(".py") else _ids(v),
)
def test_command_line_refusal_is_one_line_and_creates_nothing(cli, script, args, message, tmp_path) -> None:
    result = cli(script, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"error: {message}"), result.stderr
    assert list(tmp_path.iterdir()) == [], "a refused command created files"
