"""Model files are read without unpickling: planted code never runs, real agents still load and act as with SB3."""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fls.agents.agent import load_agent
from fls.envs import make_vec_env
from fls.errors import ConfigError
from fls.evaluation.runner import run_episodes
from fls.model_files import allow_pickle_flag, read_model_data
from fls.models import MODELS, policy_kwargs
from fls.models.policy import FLSPolicy
from fls.ppo import AttentionPPO, LinearDecay
from fls.resume import restore_checkpoint
from fls.training import new_model, ppo_kwargs

ALGORITHMS = ("PPO", "A2C", "DQN", "QRDQN")
QUICK = ["eval.episodes=1", "eval.num_envs=1", "eval.max_episode_steps=30", "logger.wandb.mode=disabled"]


class Payload:
    """Unpickling this writes ``marker``: the stand-in for a shell command planted in a model file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def rewrite(path: Path, out: Path, edit_data=None, members: dict[str, bytes] | None = None) -> Path:
    """Copy an SB3 zip with its ``data`` JSON edited and/or some members replaced."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if edit_data is not None:
        data = json.loads(contents["data"])
        edit_data(data)
        contents["data"] = json.dumps(data).encode()
    contents.update(members or {})
    with zipfile.ZipFile(out, "w") as archive:
        for name, blob in contents.items():
            archive.writestr(name, blob)
    return out


def plant(path: Path, out: Path, field: str, marker: Path) -> Path:
    """A copy of ``path`` whose data field ``field`` unpickles to code writing ``marker`` (readable parts kept, as an
    attacker would keep them to look harmless; a field the file lacks is added)."""
    blob = base64.b64encode(pickle.dumps(Payload(marker))).decode()

    def edit(data: dict) -> None:
        item = data.get(field)
        data[field] = {**(item if isinstance(item, dict) else {":type:": "<class 'object'>"}), ":serialized:": blob}

    return rewrite(path, out, edit)


def make_sb3(algorithm: str, path: Path) -> Path:
    """A small SB3 Atari agent as those published: CnnPolicy on the real Breakout stack, rl-zoo-like kwargs."""
    import stable_baselines3 as sb3
    from sb3_contrib import QRDQN
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=1, seed=0)
    if algorithm == "PPO":
        model = sb3.PPO("CnnPolicy", env, n_steps=16, batch_size=16, n_epochs=1, clip_range=0.1, device="cpu")
    elif algorithm == "A2C":
        kwargs = {"optimizer_class": RMSpropTFLike, "optimizer_kwargs": {"eps": 1e-5}}
        model = sb3.A2C("CnnPolicy", env, n_steps=4, policy_kwargs=kwargs, device="cpu")
    elif algorithm == "DQN":
        model = sb3.DQN("CnnPolicy", env, buffer_size=64, learning_starts=0, train_freq=(2, "step"), device="cpu")
    else:
        model = QRDQN("CnnPolicy", env, buffer_size=64, policy_kwargs={"n_quantiles": 50}, device="cpu")
    model.learn(16)  # fills the rollout-derived fields (_last_obs, ep_info_buffer, ...) as in a trained file
    model.save(path)
    env.close()
    return path


@pytest.fixture(scope="module")
def sb3_zip(tmp_path_factory):
    """sb3_zip(algorithm): a small agent of that algorithm, made once per module."""
    folder, made = tmp_path_factory.mktemp("sb3"), {}

    def get(algorithm: str) -> Path:
        if algorithm not in made:
            made[algorithm] = make_sb3(algorithm, folder / f"{algorithm}.zip")
        return made[algorithm]

    return get


def model_cfg(name: str) -> dict:
    """A model's default config as train.py composes it (the schema's defaults + configs/model/<name>.yaml)."""
    from fls.config_schema import model_defaults

    return model_defaults(name)


def make_fls(name: str, path: Path) -> Path:
    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=1, seed=0)
    model = AttentionPPO(
        FLSPolicy,
        env,
        policy_kwargs=policy_kwargs(model_cfg(name)),
        n_steps=8,
        batch_size=8,
        learning_rate=LinearDecay(2.5e-4),
        clip_range=0.1,
        clip_range_vf=0.1,
        device="cpu",
    )
    model.save(path)
    env.close()
    return path


def batch() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (6, 4, 84, 84), dtype=np.uint8))


@contextmanager
def no_unpickling():
    """A tripwire: inside, anything reaching SB3's cloudpickle.loads fails the test."""
    from stable_baselines3.common import save_util

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(save_util.cloudpickle, "loads", lambda *_: pytest.fail("cloudpickle.loads was called"))
        yield


def serialized_fields(path: Path) -> list[str]:
    return [key for key, item in read_model_data(path).items() if isinstance(item, dict) and ":serialized:" in item]


@pytest.mark.parametrize(
    "algorithm", [ALGORITHMS[0], *(pytest.param(a, marks=pytest.mark.slow) for a in ALGORITHMS[1:])]
)
def test_sb3_agents_load_without_unpickling_and_act_as_with_sb3(sb3_zip, algorithm) -> None:
    path = sb3_zip(algorithm)
    reference = load_agent(path, allow_pickle=True)  # SB3's own load
    with no_unpickling():
        agent = load_agent(path)
    assert agent.algorithm == reference.algorithm
    assert len(serialized_fields(path)) >= 8  # the spaces, policy class, schedules, buffers were all rebuilt
    obs = batch()
    assert torch.equal(agent.scores(obs), reference.scores(obs))
    assert agent.model.policy_kwargs == reference.model.policy_kwargs
    assert agent.model.observation_space == reference.model.observation_space
    assert agent.model.action_space == reference.model.action_space
    assert type(agent.policy) is type(reference.policy)
    assert list(agent.model.ep_info_buffer) == list(reference.model.ep_info_buffer)
    if algorithm in ("DQN", "QRDQN"):
        assert agent.model.train_freq == reference.model.train_freq


@pytest.mark.parametrize("name", [n if n == "sparse_fls" else pytest.param(n, marks=pytest.mark.slow) for n in MODELS])
def test_every_fls_extractor_loads_without_unpickling_and_acts_as_with_sb3(tmp_path, name) -> None:
    path = make_fls(name, tmp_path / f"{name}.zip")
    reference = load_agent(path, allow_pickle=True)
    with no_unpickling():
        agent = load_agent(path)
    obs = batch()
    assert agent.algorithm == "AttentionPPO"
    assert torch.equal(agent.scores(obs), reference.scores(obs))
    assert agent.model.policy_kwargs["features_extractor_class"] is MODELS[name].cls
    assert agent.model.policy_kwargs == reference.model.policy_kwargs


def test_resume_load_restores_what_sb3_restores(tiny_run) -> None:
    """train.py's resume path: the model built from config.yaml, what training learned from the file."""
    path = tiny_run / "final_model.zip"
    reference = AttentionPPO.load(path, device="cpu")
    cfg = OmegaConf.load(tiny_run / "config.yaml")
    env = make_vec_env(cfg.env.name, num_envs=int(cfg.env.num_envs), seed=int(cfg.seed))
    try:
        safe = new_model(cfg, env)
        with no_unpickling():
            restore_checkpoint(safe, path, allow_pickle=False)
    finally:
        env.close()
    ref_state = reference.policy.state_dict()
    assert safe.policy.state_dict().keys() == ref_state.keys()
    assert all(torch.equal(safe.policy.state_dict()[k], v) for k, v in ref_state.items())
    assert list(safe.ep_info_buffer) == list(reference.ep_info_buffer)  # the logged mean return carries over
    assert safe.last_update_log == reference.last_update_log and "train/loss" in safe.last_update_log
    for progress in (1.0, 0.5, 0.1):
        assert safe.lr_schedule(progress) == reference.lr_schedule(progress)
        assert safe.clip_range(progress) == reference.clip_range(progress)
        assert safe.clip_range_vf(progress) == reference.clip_range_vf(progress)
    assert (safe.num_timesteps, safe._n_updates) == (reference.num_timesteps, reference._n_updates)
    optimizer, ref_optimizer = safe.policy.optimizer.state_dict(), reference.policy.optimizer.state_dict()
    settings = [
        [{k: v for k, v in group.items() if k != "lr"} for group in o["param_groups"]]
        for o in (optimizer, ref_optimizer)
    ]
    assert settings[0] == settings[1]  # the learning rate is set from the schedule at the start of every update
    for key, value in ref_optimizer["state"].items():
        assert all(torch.equal(optimizer["state"][key][k], v) for k, v in value.items())


PLANTED_FIELDS = [
    "policy_class",
    "policy_kwargs",
    "observation_space",
    "action_space",
    "lr_schedule",
    "clip_range",
    "_last_obs",
    "ep_info_buffer",
    "rollout_buffer_class",
]


@pytest.mark.parametrize("field", PLANTED_FIELDS)
def test_code_planted_in_a_known_field_never_runs(sb3_zip, tmp_path, field) -> None:
    marker = tmp_path / "marker"
    evil = plant(sb3_zip("PPO"), tmp_path / "evil.zip", field, marker)
    agent = load_agent(evil)  # rebuilt from the readable parts beside the payload
    assert not marker.exists()
    assert agent.algorithm == "PPO" and agent.scores(batch()).shape == (6, 4)


def test_code_planted_in_an_unknown_field_is_refused(sb3_zip, tmp_path) -> None:
    marker = tmp_path / "marker"
    evil = plant(sb3_zip("PPO"), tmp_path / "evil.zip", "evil", marker)
    with pytest.raises(ConfigError, match=r"data field 'evil' .* allow_pickle=true") as error:
        load_agent(evil)
    assert "\n" not in str(error.value) and not marker.exists()


@pytest.mark.parametrize("field", ["observation_space", "ep_info_buffer", "evil"])
def test_allow_pickle_opts_in_to_unpickling(sb3_zip, tmp_path, field) -> None:
    marker = tmp_path / "marker"
    evil = plant(sb3_zip("PPO"), tmp_path / "evil.zip", field, marker)
    try:
        load_agent(evil, allow_pickle=True)
    except ConfigError:
        pass  # the payload replaced a needed field by None: the load fails after the code ran
    assert marker.read_text() == "ran"


def test_weights_are_never_unpickled(sb3_zip, tmp_path) -> None:
    """policy.pth is read with torch.load(weights_only=True) even with the opt-in: a pickled object is refused."""
    marker = tmp_path / "marker"
    blob = io.BytesIO()
    torch.save({"payload": Payload(marker)}, blob)
    evil = rewrite(sb3_zip("PPO"), tmp_path / "evil.zip", members={"policy.pth": blob.getvalue()})
    for allow in (False, True):
        with pytest.raises(ConfigError, match="cannot be loaded as PPO") as error:
            load_agent(evil, allow_pickle=allow)
        message = str(error.value)
        assert "\n" not in message and "\x1b" not in message
        # Not torch's advice to set weights_only=False or allow-list globals, which would run the planted code.
        assert "weights_only" not in message and "add_safe_globals" not in message, message
        assert "its weights hold pickled code or objects (Unsupported global: GLOBAL exec)" in message, message
    assert not marker.exists()


def test_allow_pickle_must_be_a_boolean() -> None:
    assert allow_pickle_flag(OmegaConf.create({})) is False
    assert allow_pickle_flag(OmegaConf.create({"allow_pickle": True})) is True
    with pytest.raises(ConfigError, match="allow_pickle must be true or false, got 'yes'"):
        allow_pickle_flag(OmegaConf.create({"allow_pickle": "yes"}))


def with_weights(path: Path, out: Path, algorithm: str, change) -> Path:
    """A copy of an agent whose policy parameters were changed by ``change(name, tensor)`` (in place)."""
    agent = load_agent(path, allow_pickle=True)
    with torch.no_grad():
        for name, tensor in agent.policy.named_parameters():
            change(name, tensor)
    agent.model.save(out)
    return out


@pytest.mark.parametrize("algorithm", ["PPO", pytest.param("DQN", marks=pytest.mark.slow)])
def test_non_finite_parameters_are_refused(sb3_zip, tmp_path, algorithm) -> None:
    def poison(name: str, tensor: torch.Tensor) -> None:
        if name.endswith("0.bias"):
            tensor[1] = float("nan")

    broken = with_weights(sb3_zip(algorithm), tmp_path / "nan.zip", algorithm, poison)
    with pytest.raises(ConfigError, match=r"parameter \S+0\.bias is not finite \(1 of 32 values") as error:
        load_agent(broken)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("algorithm", ["PPO", pytest.param("DQN", marks=pytest.mark.slow)])
def test_non_finite_scores_stop_the_evaluation(sb3_zip, tmp_path, algorithm) -> None:
    """Finite but huge weights overflow to inf/NaN scores in play; argmax would hide them as action 0."""
    broken = with_weights(sb3_zip(algorithm), tmp_path / "huge.zip", algorithm, lambda _, t: t.fill_(1e10))
    agent = load_agent(broken)
    with pytest.raises(ConfigError, match="action scores became NaN or inf in episode 0") as error:
        run_episodes(agent, "Breakout", [0], base_seed=1000, streams=1, max_episode_steps=20, progress=False)
    assert "\n" not in str(error.value)


def test_non_finite_scores_stop_videos_trees_and_faithfulness(sb3_zip, tmp_path) -> None:
    """The same one check in the games the video, tree and faithfulness tasks play (softmax of NaN used to fail
    inside torch, and faithfulness wrote "n/a" AUCs)."""
    from fls.saliency.metrics.faithfulness import draw_frames
    from fls.saliency.video import play

    broken = with_weights(sb3_zip("PPO"), tmp_path / "huge.zip", "PPO", lambda _, t: t.fill_(1e10))
    agent = load_agent(broken)
    with pytest.raises(ConfigError, match=r"action scores became NaN or inf at step 0 of game 1 \(seed 3\)"):
        play(agent.policy, "Breakout", seed=3, max_steps=5)
    with pytest.raises(ConfigError, match=f"{broken}: the model's action scores became NaN or inf at step 0"):
        draw_frames(agent, "Breakout", 4, games=1, base_seed=1000, max_episode_steps=20, seed=0, progress=False)


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_evaluate_command_with_planted_files(cli, sb3_zip, tmp_path) -> None:
    marker = tmp_path / "marker"
    source = sb3_zip("PPO")
    rebuilt = plant(source, tmp_path / "evil.zip", "policy_class", marker)
    result = cli("evaluate.py", f"checkpoint={rebuilt}", "env=Breakout", *QUICK)
    assert result.returncode == 0 and not marker.exists(), result.stderr[-2000:]

    refused = plant(source, tmp_path / "evil2.zip", "evil", marker)
    one_line_error(cli("evaluate.py", f"checkpoint={refused}", "env=Breakout", *QUICK), "'evil'", "allow_pickle=true")
    assert not marker.exists() and not (tmp_path / "evil2_eval").exists()

    opted_in = plant(source, tmp_path / "evil3.zip", "ep_info_buffer", marker)
    result = cli("evaluate.py", f"checkpoint={opted_in}", "env=Breakout", "allow_pickle=true", *QUICK)
    assert result.returncode == 0 and marker.read_text() == "ran", result.stderr[-2000:]


@pytest.mark.slow
def test_evaluate_command_refuses_a_dqn_with_nan_weights(cli, sb3_zip, tmp_path) -> None:
    def poison(name: str, tensor: torch.Tensor) -> None:
        if name == "q_net.q_net.0.weight":
            tensor[0, 0] = float("nan")

    broken = with_weights(sb3_zip("DQN"), tmp_path / "nan.zip", "DQN", poison)
    result = cli("evaluate.py", f"checkpoint={broken}", "env=Breakout", *QUICK)
    one_line_error(result, "parameter q_net.q_net.0.weight is not finite (1 of 2048 values")


@pytest.mark.slow
@pytest.mark.parametrize(
    "field, extra, outcome",
    [
        ("learning_rate", [], "resumed"),
        ("policy_class", [], "resumed"),
        ("evil", [], "refused"),
        ("_last_obs", ["allow_pickle=true"], "ran"),
    ],
)
def test_resume_with_a_planted_checkpoint(cli, unfinished_run, tmp_path, field, extra, outcome) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(unfinished_run, run_dir)
    checkpoint = run_dir / "checkpoints" / "step_000000000128.zip"
    marker = tmp_path / "marker"
    plant(checkpoint, tmp_path / "planted.zip", field, marker).replace(checkpoint)
    result = cli("train.py", f"resume={run_dir}", *extra)
    if outcome == "refused":
        one_line_error(result, f"{checkpoint}: data field 'evil'", "allow_pickle=true")
        assert not (run_dir / "final_model.zip").exists()
    else:
        assert result.returncode == 0, result.stderr[-3000:]
        assert AttentionPPO.load(run_dir / "final_model.zip").num_timesteps == 256
    assert marker.exists() == (outcome == "ran")


def test_a_planted_env_name_is_not_made(sb3_zip, tmp_path) -> None:
    """SB3's load makes data["env"] when no env is given; gym.make("module:Id") would import the module."""
    (tmp_path / "planted_module.py").write_text(f"open({str(tmp_path / 'marker')!r}, 'w').write('ran')\n")

    def edit(data: dict) -> None:
        data["env"] = "planted_module:Planted-v0"

    evil = rewrite(sb3_zip("PPO"), tmp_path / "evil.zip", edit)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path))
        agent = load_agent(evil)
    assert agent.model.env is None and not (tmp_path / "marker").exists()


def files_of(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder)."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def poison_weights(path: Path, out: Path) -> Path:
    """A copy of a run's checkpoint with one NaN in its first layer (the file is ours: read it with SB3)."""
    model = AttentionPPO.load(path, device="cpu")
    with torch.no_grad():
        next(iter(model.policy.parameters())).view(-1)[0] = float("nan")
    model.save(out)
    return out


def with_data(**fields):
    def edit(data: dict) -> None:
        data.update(fields)

    return edit


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, fragments",
    [
        ("evil", ["data field 'evil'", "allow_pickle=true"]),
        ("env", ["data field 'env'"]),
        ("pth", ["cannot be loaded", "its weights hold pickled code or objects"]),
        ("nan", ["parameter", "is not finite (1 of", "no earlier checkpoint", "step 0"]),
    ],
)
def test_a_refused_resume_changes_nothing(cli, unfinished_run, tmp_path, damage, fragments) -> None:
    """Nothing is written before the checkpoint is loaded and checked: no .hydra/resumes.jsonl line, progress.csv
    keeps its rows past the checkpoint, no TensorBoard file."""
    run_dir = tmp_path / "run"
    shutil.copytree(unfinished_run, run_dir)
    checkpoint = run_dir / "checkpoints" / "step_000000000128.zip"
    damaged = tmp_path / "damaged.zip"
    if damage == "evil":
        plant(checkpoint, damaged, "evil", tmp_path / "marker")
    elif damage == "env":
        rewrite(checkpoint, damaged, with_data(env="Breakout"))
    elif damage == "pth":
        blob = io.BytesIO()
        torch.save({"payload": Payload(tmp_path / "marker")}, blob)
        rewrite(checkpoint, damaged, members={"policy.pth": blob.getvalue()})
    else:
        poison_weights(checkpoint, damaged)
    damaged.replace(checkpoint)
    before = files_of(run_dir)
    result = cli("train.py", f"resume={run_dir}", "logger.tensorboard=true")
    one_line_error(result, str(checkpoint), *fragments)
    assert files_of(run_dir) == before and not (tmp_path / "marker").exists()


@pytest.mark.slow
def test_nan_weights_in_the_newest_checkpoint_are_refused_and_the_previous_one_resumes(
    cli, unfinished_run, tmp_path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(unfinished_run, run_dir)
    good = run_dir / "checkpoints" / "step_000000000128.zip"
    broken = poison_weights(good, run_dir / "checkpoints" / "step_000000000192.zip")
    result = cli("train.py", f"resume={run_dir}")
    one_line_error(result, f"{broken}: parameter", "is not finite", good.name)
    assert "rename" in result.stderr or "move" in result.stderr
    broken.rename(broken.with_name(broken.name + ".broken"))  # what the message says to do
    resumed = cli("train.py", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"from {good.name} at step 128" in resumed.stdout
    assert AttentionPPO.load(run_dir / "final_model.zip").num_timesteps == 256


@pytest.mark.slow
def test_a_resume_trains_with_the_runs_config_not_the_checkpoints(cli, unfinished_run, tmp_path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(unfinished_run, run_dir)
    checkpoint = run_dir / "checkpoints" / "step_000000000128.zip"
    edit = with_data(n_epochs=1, ent_coef=0.9, entropy_lambda=0.5, gamma=0.5, gae_lambda=0.5, vf_coef=3.0)
    rewrite(checkpoint, tmp_path / "edited.zip", edit).replace(checkpoint)
    result = cli("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = OmegaConf.load(run_dir / "config.yaml")
    model = AttentionPPO.load(run_dir / "final_model.zip", device="cpu")
    for name, value in ppo_kwargs(cfg).items():
        if name == "compile":
            assert model.compile_step == value
        elif name not in ("learning_rate", "clip_range", "clip_range_vf"):  # schedules, stored as functions
            assert getattr(model, name) == value, name
    assert model._n_updates == 2 * cfg.ppo.n_epochs  # the update after the resume ran the config's epochs too
