"""A non-editable install works anywhere: the wheel carries the configs, the console scripts and ``python -m`` run
from a folder outside the checkout, and the Python API loads, explains and evaluates what they made."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.conftest import CHILD_ENV, ROOT

TINY = (
    "model=nature_cnn",
    "env=Breakout",
    "env.num_envs=2",
    "ppo.n_steps=64",
    "ppo.batch_size=64",
    "total_timesteps=128",
    "logger.wandb.mode=disabled",
    "logger.tensorboard=false",
)


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=900, env=CHILD_ENV
    )
    assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_runs_the_commands_and_the_api(tmp_path) -> None:
    # The wheel, built from a copy of the checkout as a packager would (not editable; setuptools builds in the
    # source tree, which must stay clean).
    source = tmp_path / "source"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "outputs", "multirun", "wandb")
    shutil.copytree(ROOT, source, ignore=skip)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("fls-*.whl")
    # A clean venv that borrows the already installed dependencies (torch & co.) but not fls itself: site-packages
    # of this environment are appended by a .pth file, whose own .pth files (the editable install) are not read.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    Path(site, "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--no-deps", "-q", wheel, cwd=tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    located = run(python, "-c", "import fls, fls.cli; print(fls.__file__); print(fls.cli.CONFIG_DIR)", cwd=work)
    package, configs = located.stdout.split()
    assert package.startswith(site) and Path(configs, "train.yaml").is_file()  # the installed copy, configs inside

    dry = run(venv / "bin" / "fls-train", "model=rs", "dry_run=true", cwd=work)
    assert "params:" in dry.stdout and not any(work.iterdir())  # a dry run writes nothing
    run(python, "-m", "fls.train", *TINY, "hydra.run.dir=run", cwd=work)
    assert (work / "run" / "final_model.zip").is_file() and (work / "run" / "config.yaml").is_file()
    evaluated = run(
        venv / "bin" / "fls-evaluate",
        "run=run",
        "eval.episodes=2",
        "eval.num_envs=2",
        "eval.max_episode_steps=200",
        "logger.wandb.mode=disabled",
        cwd=work,
    )
    assert "2 episodes: mean" in evaluated.stdout and (work / "run" / "eval" / "final_model" / "summary.json").is_file()
    refused = subprocess.run(
        [venv / "bin" / "fls-evaluate", "run=run", "eval.bogus=1"], cwd=work, capture_output=True, text=True
    )
    assert refused.returncode == 2 and refused.stderr.startswith("error: eval.bogus=1")

    script = textwrap.dedent(
        """
        import json, numpy, fls, stable_baselines3
        from fls.envs import make_vec_env

        run = fls.train(["model=sparse_fls", "env.num_envs=2", "ppo.n_steps=64", "ppo.batch_size=64",
                         "total_timesteps=128", "logger.wandb.mode=disabled", "logger.tensorboard=false"],
                        run_dir="api_run")
        env = make_vec_env("Pong", num_envs=1, seed=0)
        stable_baselines3.PPO("CnnPolicy", env, n_steps=8, batch_size=8, device="cpu").save("sb3.zip")
        env.close()
        out = {}
        for name, agent in (("run", fls.load(run.dir, device="cpu")), ("sb3", fls.load("sb3.zip", game="Pong"))):
            maps = fls.explain(agent, numpy.zeros((2, 4, 84, 84), "uint8"), ["gradcam", "gradient"])
            result = fls.evaluate(agent, episodes=2, num_envs=2, progress=False)
            video = fls.video(agent, ["gradcam"], max_steps=4, out=f"videos_{name}")
            out[name] = {"game": agent.game, "shapes": [list(m.shape) for m in maps.values()],
                         "episodes": result.summary["episodes"], "video": video.is_file()}
        for bad in (lambda: fls.load("no-such-run"), lambda: fls.train(["model=bogus"]),
                    lambda: fls.evaluate(agent, episodes=0)):
            try:
                bad()
            except fls.FlsError as error:
                out.setdefault("refused", []).append(str(error))
        print(json.dumps(out))
        """
    )
    out = json.loads(run(python, "-c", script, cwd=work).stdout.strip().splitlines()[-1])
    assert out["run"] == {"game": "Breakout", "shapes": [[2, 84, 84]] * 2, "episodes": 2, "video": True}
    assert out["sb3"] == {"game": "Pong", "shapes": [[2, 84, 84]] * 2, "episodes": 2, "video": True}
    assert len(out["refused"]) == 3 and "does not exist" in out["refused"][0]
    assert "unknown model 'bogus'" in out["refused"][1]
