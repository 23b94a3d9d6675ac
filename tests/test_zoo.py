"""rl-zoo3 experiment folders and zoo-like acting: the safe YAML reader, model choice, refusals of settings fls cannot
replay, ε-greedy draws per episode, and (slow) folders written by rl_zoo3's real train entry, evaluated and explained.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import yaml

from fls.agents.agent import load_agent, resolve_checkpoint, run_game, saved_exploration_rate
from fls.agents.zoo import PythonTag, read_zoo_folder, read_zoo_yaml, zoo_checkpoint
from fls.errors import ConfigError
from fls.evaluation.records import read_records
from fls.evaluation.runner import acting_epsilon, choose_actions, episode_rng
from tests.conftest import CHILD_ENV, built_once, evaluate_in_process, evaluate_refusal

ENV_ID = "BreakoutNoFrameskip-v4"
QUIET = "logger.wandb.mode=disabled"
# rl-zoo3 2.9's dqn.yml "atari" entry, with the small buffers of a test run.
DQN_ATARI = {
    "batch_size": 32,
    "buffer_size": 1000,
    "env_wrapper": ["stable_baselines3.common.atari_wrappers.AtariWrapper"],
    "exploration_final_eps": 0.01,
    "exploration_fraction": 0.1,
    "frame_stack": 4,
    "learning_starts": 100,
    "n_timesteps": 10000000.0,
    "policy": "CnnPolicy",
}


def dump_like_the_zoo(path: Path, mapping: dict) -> None:
    """What rl-zoo3 writes: yaml.dump of an OrderedDict with sorted keys (python tags included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(OrderedDict(sorted(mapping.items()))))


@pytest.fixture(scope="module")
def dqn_zip(tmp_path_factory) -> Path:
    """A real (untrained) SB3 DQN CnnPolicy archive whose saved exploration rate is the zoo's final 0.01."""
    import stable_baselines3 as sb3

    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=1, seed=0)
    small = {"features_extractor_kwargs": {"features_dim": 16}}  # a 3136x512 orthogonal init takes seconds
    model = sb3.DQN("CnnPolicy", env, buffer_size=100, exploration_final_eps=0.01, policy_kwargs=small, device="cpu")
    model.exploration_rate = 0.01  # where training leaves it
    path = tmp_path_factory.mktemp("dqn") / "dqn.zip"
    model.save(path)
    env.close()
    return path


def make_folder(root: Path, model: Path, hyperparams: dict | None = None, env_id: str = ENV_ID) -> Path:
    """logs/dqn/<EnvId>_1/ laid out as rl_zoo3.train writes it: final model, a checkpoint, config.yml, args.yml."""
    name = env_id.replace("/", "-")
    folder = root / "logs" / "dqn" / f"{name}_1"
    folder.mkdir(parents=True)
    shutil.copy(model, folder / f"{name}.zip")
    shutil.copy(model, folder / "rl_model_250_steps.zip")
    dump_like_the_zoo(folder / name / "config.yml", DQN_ATARI if hyperparams is None else hyperparams)
    dump_like_the_zoo(folder / name / "args.yml", {"algo": "dqn", "env": env_id, "seed": 3, "env_kwargs": None})
    return folder


def test_zoo_yaml_is_read_with_a_safe_loader(tmp_path) -> None:
    path = tmp_path / "config.yml"
    dump_like_the_zoo(path, {**DQN_ATARI, "pair": (1, 2)})
    assert "!!python/object/apply:collections.OrderedDict" in path.read_text()
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(path.read_text())  # why fls needs its own loader
    assert read_zoo_yaml(path) == {**DQN_ATARI, "pair": (1, 2)}
    # Any other python tag is kept as data, never imported or called.
    marker = tmp_path / "executed"
    path.write_text(f"a: !!python/object/apply:os.system ['touch {marker}']\nb: !!python/name:os.remove\n")
    data = read_zoo_yaml(path)
    assert not marker.exists()
    assert data["a"] == PythonTag("python/object/apply:os.system", [f"touch {marker}"])
    assert isinstance(data["b"], PythonTag)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        read_zoo_yaml(path)


def test_folder_gives_the_model_and_the_game(tmp_path, dqn_zip) -> None:
    folder = make_folder(tmp_path, dqn_zip)
    assert resolve_checkpoint(None, str(folder)) == (folder / f"{ENV_ID}.zip", folder)
    assert resolve_checkpoint(None, str(folder), 250) == (folder / "rl_model_250_steps.zip", folder)
    assert resolve_checkpoint(str(folder), None, "250")[0] == folder / "rl_model_250_steps.zip"  # run= works too
    assert run_game(folder) == "Breakout"
    experiment = read_zoo_folder(folder)
    assert (experiment.seed, experiment.n_envs, list(experiment.models())) == (3, 1, ["final", "250"])
    # A model file inside a folder is checked against the folder's settings; a lone zip is not a zoo model.
    assert resolve_checkpoint(None, str(folder / "rl_model_250_steps.zip")) == (
        folder / "rl_model_250_steps.zip",
        folder,
    )
    assert zoo_checkpoint(None, str(dqn_zip)) is None
    with pytest.raises(ConfigError, match=r"no best_model.zip .*--eval-freq.*available: final, 250"):
        resolve_checkpoint(None, str(folder), "best")
    with pytest.raises(ConfigError, match="no rl_model_100_steps.zip; available: final, 250"):
        resolve_checkpoint(None, str(folder), 100)
    with pytest.raises(ConfigError, match="zoo.model must be final, best or a checkpoint step N, got 'latest'"):
        resolve_checkpoint(None, str(folder), "latest")
    with pytest.raises(ConfigError, match="picks a model of an rl-zoo3 folder"):
        resolve_checkpoint(None, str(dqn_zip), "best")
    with pytest.raises(ConfigError, match="is a directory but not an rl-zoo3 experiment folder"):
        resolve_checkpoint(None, str(tmp_path))


def test_zoo_model_is_refused_where_it_does_not_apply(tmp_path, dqn_zip) -> None:
    """zoo.model picks a zip of an rl-zoo3 folder: with an fls run (or a file) it would be ignored, so it is refused."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("env:\n  name: Breakout\n")
    shutil.copy(dqn_zip, run / "final_model.zip")
    for model in ("best", 250):
        refused = rf"^zoo.model={model} picks a model of an rl-zoo3 folder; run=.* is an fls run: drop zoo.model"
        with pytest.raises(ConfigError, match=refused):
            resolve_checkpoint(str(run), None, model)
    assert resolve_checkpoint(str(run), None, "final") == (run / "final_model.zip", run)


REFUSED = [
    ({**DQN_ATARI, "frame_stack": 2}, ENV_ID, "frame_stack 2: fls plays 4 stacked frames"),
    ({k: v for k, v in DQN_ATARI.items() if k != "frame_stack"}, ENV_ID, "frame_stack None"),
    ({**DQN_ATARI, "normalize": True}, ENV_ID, "VecNormalize"),
    ({**DQN_ATARI, "env_wrapper": ["rl_zoo3.wrappers.FrameSkip"]}, ENV_ID, "env_wrapper rl_zoo3.wrappers.FrameSkip"),
    (
        {**DQN_ATARI, "env_wrapper": [{"stable_baselines3.common.atari_wrappers.AtariWrapper": {"frame_skip": 2}}]},
        ENV_ID,
        "AtariWrapper frame_skip=2",
    ),
    ({k: v for k, v in DQN_ATARI.items() if k != "env_wrapper"}, ENV_ID, "no env_wrapper"),
    ({**DQN_ATARI, "env_kwargs": {"full_action_space": True}}, ENV_ID, "env_kwargs full_action_space=True"),
    (DQN_ATARI, "ALE/Breakout-v5", "env ALE/Breakout-v5 is not one of the Atari games fls plays"),
    (DQN_ATARI, "CartPole-v1", "env CartPole-v1 is not one of the Atari games fls plays"),
]


@pytest.mark.parametrize(("hyperparams", "env_id", "reason"), REFUSED)
def test_settings_fls_cannot_replay_are_refused(tmp_path, dqn_zip, hyperparams, env_id, reason) -> None:
    folder = make_folder(tmp_path, dqn_zip, hyperparams, env_id)
    with pytest.raises(ConfigError) as info:
        resolve_checkpoint(None, str(folder))
    message = str(info.value)
    assert "cannot be replayed by fls" in message and reason in message and "\n" not in message, message


def test_vecnormalize_statistics_are_refused(tmp_path, dqn_zip) -> None:
    folder = make_folder(tmp_path, dqn_zip)
    (folder / ENV_ID / "vecnormalize.pkl").write_bytes(b"not read")
    with pytest.raises(ConfigError, match="VecNormalize"):
        resolve_checkpoint(None, str(folder))
    with pytest.raises(ConfigError, match="VecNormalize"):  # also for a model file of that folder
        resolve_checkpoint(None, str(folder / f"{ENV_ID}.zip"))


def test_epsilon_greedy_draws_come_from_each_episode_generator() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 4))
    greedy = scores.argmax(axis=1)

    def draw(epsilon: float, steps: int = 400, rows=range(6)) -> np.ndarray:
        rngs = [episode_rng(1000, i) for i in rows]
        return np.stack([choose_actions(scores[list(rows)], rngs, False, epsilon) for _ in range(steps)])

    assert np.array_equal(draw(0.0, 3), np.tile(greedy, (3, 1)))
    uniform = draw(1.0)
    assert all(np.bincount(column, minlength=4).min() > 60 for column in uniform.T)  # 400 draws over 4 actions
    some = draw(0.25)
    assert np.array_equal(some, draw(0.25))  # seeded
    off_greedy = float((some != greedy).mean())
    assert abs(off_greedy - 0.25 * 3 / 4) < 0.04, off_greedy  # a random action can be the greedy one
    # Episode i's actions depend on its own generator only, not on which other episodes share the batch.
    assert np.array_equal(draw(0.25, rows=[4, 2])[:, 0], some[:, 4])
    # Rows without a generator (finished streams) act greedily.
    assert np.array_equal(choose_actions(scores[:2], [None, None], False, 1.0), greedy[:2])


def test_acting_epsilon_follows_the_zoo(dqn_zip, tmp_path) -> None:
    agent = load_agent(dqn_zip, "cpu", n_actions=4)
    assert saved_exploration_rate(dqn_zip) == 0.01
    assert acting_epsilon(agent, False, None) == 0.01  # the saved rate, as rl-zoo3's enjoy
    assert acting_epsilon(agent, True, None) == 0.0
    assert acting_epsilon(agent, False, 0.2) == 0.2
    assert acting_epsilon(agent, True, 0.0) == 0.0
    with pytest.raises(ConfigError, match="contradicts greedy play"):
        acting_epsilon(agent, True, 0.1)
    with pytest.raises(ConfigError, match=r"eval.epsilon must be a probability in \[0, 1\]"):
        acting_epsilon(agent, False, 1.5)
    import stable_baselines3 as sb3

    from fls.envs import make_vec_env

    env = make_vec_env("Breakout", num_envs=1, seed=0)
    small = {"features_extractor_kwargs": {"features_dim": 16}}
    sb3.PPO("CnnPolicy", env, n_steps=16, batch_size=16, policy_kwargs=small, device="cpu").save(tmp_path / "ppo.zip")
    env.close()
    ppo = load_agent(tmp_path / "ppo.zip", "cpu", n_actions=4)
    assert acting_epsilon(ppo, False, None) is None
    with pytest.raises(ConfigError, match="eval.epsilon applies to Q-learning agents"):
        acting_epsilon(ppo, False, 0.05)


@pytest.mark.slow
def test_a_zoo_folder_on_the_command_line(cli, tmp_path, dqn_zip) -> None:
    folder = make_folder(tmp_path, dqn_zip)
    bad = cli("evaluate.py", f"checkpoint={folder}", "zoo.model=best", QUIET)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert [line for line in bad.stderr.splitlines() if line.strip()][0].startswith("error: zoo.model=best")
    assert "trained on Breakout" in evaluate_refusal(f"checkpoint={folder}", "env=Seaquest")
    attention = evaluate_refusal(f"checkpoint={folder}", "saliency=[attention]", "video=true")
    assert "methods that apply: gradcam" in attention, attention
    # task=gaze explains a DQN like a PPO agent (the greedy action's Q on each replayed input).
    from tests.test_gaze import make_trial

    make_trial(tmp_path / "atari_head")
    gaze = cli(
        "evaluate.py",
        "task=gaze",
        f"checkpoint={folder}",
        f"gaze.data={tmp_path / 'atari_head'}",
        "saliency=[gradcam,fullgrad++]",
        "gaze.splits=10",
        QUIET,
    )
    assert gaze.returncode == 0, gaze.stderr[-3000:]
    table = (folder / "gaze" / "BreakoutNoFrameskip-v4_Breakout_gradcam-fullgrad++" / "summary.md").read_text()
    assert "| breakout | gradcam |" in table and "| breakout | fullgrad++ |" in table
    frames = cli(
        "evaluate.py",
        f"checkpoint={folder}",
        "saliency=[gradcam++,perturbation_critic]",
        "video=true",
        "saliency.max_steps=3",
        "saliency.frames=true",
        "saliency.target=value",
        QUIET,
    )
    assert frames.returncode == 0, frames.stderr[-3000:]
    assert len(list((folder / "videos").glob("*_frames/*.png"))) == 3


# --- rl_zoo3's own train entry (slow) ------------------------------------------------------------------------------

ZOO_RUNS = {
    "dqn": ["-params", "buffer_size:1000", "learning_starts:100"],
    "qrdqn": ["-params", "buffer_size:1000", "learning_starts:100"],
    "ppo": ["-params", "n_envs:2"],
    "a2c": ["-params", "n_envs:2"],
}


@pytest.fixture(scope="module")
def zoo_logs(tmp_path_factory) -> Path:
    """logs/<algo>/BreakoutNoFrameskip-v4_1/ for each algorithm, written by ``python -m rl_zoo3.train`` (once per
    session, also under pytest -n)."""
    pytest.importorskip("rl_zoo3")

    def train(root: Path) -> None:
        # rl_zoo3's own train entry (what `python -m rl_zoo3.train` runs), once per algorithm in one process: the
        # imports are paid once.
        runs = [
            ["--algo", algo, "--env", ENV_ID, "-n", "500", "-f", "logs", "--seed", "3", "--eval-freq", "-1"]
            + ["--save-freq", "250", "--device", "cpu", *extra]
            for algo, extra in ZOO_RUNS.items()
        ]
        lines = ["import sys", "from rl_zoo3.train import train", f"for args in {runs!r}:"]
        script = "\n".join([*lines, "    sys.argv = ['train', *args]", "    train()"])
        command = [sys.executable, "-c", script]
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900, env=CHILD_ENV)
        assert result.returncode == 0, result.stderr[-3000:]
        for algo in ZOO_RUNS:
            assert (root / "logs" / algo / f"{ENV_ID}_1" / f"{ENV_ID}.zip").is_file(), algo

    return built_once(tmp_path_factory, "zoo", train) / "logs"


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(ZOO_RUNS))
def test_rl_zoo3_folders_are_evaluated_and_explained(cli, zoo_logs, algo, tmp_path) -> None:
    folder = zoo_logs / algo / f"{ENV_ID}_1"
    q_learning = algo in ("dqn", "qrdqn")
    args = [f"checkpoint={folder}", "eval.episodes=2", "eval.num_envs=2", "eval.max_episode_steps=300", QUIET]
    result = cli("evaluate.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    header, episodes = read_records(folder / "eval" / ENV_ID / "episodes.jsonl")
    assert header["game"] == "Breakout" and header["checkpoint"] == str(folder / f"{ENV_ID}.zip")
    assert header["algorithm"] == {"dqn": "DQN", "qrdqn": "QRDQN", "ppo": "PPO", "a2c": "A2C"}[algo]
    assert len(episodes) == 2 and header["deterministic"] is False
    assert header["epsilon"] == (0.01 if q_learning else None)  # the zoo's final exploration rate, as enjoy plays
    # The replays below run in-process (the command line itself was checked just above).
    evaluate_in_process(*args, f"eval.out={tmp_path / 'again'}")
    replayed = read_records(tmp_path / "again" / "episodes.jsonl")[1]
    assert sorted(replayed, key=lambda e: e.index) == sorted(episodes, key=lambda e: e.index)  # ε draws are seeded
    if q_learning:
        evaluate_in_process(*args, "eval.deterministic=true", f"eval.out={tmp_path / 'greedy'}")
        greedy_header = read_records(tmp_path / "greedy" / "episodes.jsonl")[0]
        assert greedy_header["deterministic"] is True and greedy_header["epsilon"] == 0.0
        evaluate_in_process(*args, "zoo.model=250", "eval.epsilon=0.05")
        assert read_records(folder / "eval" / "rl_model_250_steps" / "episodes.jsonl")[0]["epsilon"] == 0.05
    # Perturbation scores ½‖ΔQ‖² on Q-networks (its own path); on actor-critics it is tested in test_saliency.py.
    methods = "gradcam-fullgrad++-perturbation" if q_learning else "gradcam-fullgrad++"
    video = cli(
        "evaluate.py",
        f"checkpoint={folder}",
        f"saliency=[{methods.replace('-', ',')}]",
        "video=true",
        "saliency.max_steps=6",
        QUIET,
    )
    assert video.returncode == 0, video.stderr[-3000:]
    video_name = f"{ENV_ID}_Breakout_seed2000_1ep_{methods}.mp4"  # named by its content
    assert (folder / "videos" / video_name).is_file(), sorted(p.name for p in (folder / "videos").iterdir())
    assert ("ε-greedy ε=0.01" in video.stdout) == q_learning, video.stdout
    # attention trees of every algorithm's network; Q-networks play ε-greedy as in the video
    evaluate_in_process(f"checkpoint={folder}", "task=tree", "tree.steps=[2]", "tree.n=2", QUIET)
    (tree,) = (folder / "trees").glob(f"{ENV_ID}_Breakout_seed2000_game1_step000002.json")
    nodes = json.loads(tree.read_text())["nodes"]
    assert nodes and {node["layer"] for node in nodes} >= {"input"}, nodes[:3]
