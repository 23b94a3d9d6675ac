"""BreakoutInfinite (Breakout whose wall respawns forever, see fls/envs/breakout.py) and the Python vector env.

The cap is reached in a few hundred agent steps: once the ROM has drawn its wall, the test leaves only the
bottom row (18 one-point bricks, which the ball from below hits first) and writes the score 863, then
steers the paddle under the ball from RAM (ball x 99, ball y 101, paddle x 72). The first brick makes 864,
exactly as the last brick of a real second wall does (the ROM decides on the score alone); ALE counts the
written 863 as reward like any score change, so the true score is still ``displayed + 432 * wraps``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ale_py import Action
from stable_baselines3.common.monitor import Monitor

from fls.envs import GAMES, AtariVecEnv, GameSpec, PythonAtariVecEnv, get_game, make_single_env, make_vec_env
from fls.envs.breakout import BRICK_RAM, FULL_WALL, SCORE_CAP, WALL_POINTS, count_bricks, read_score, write_score
from fls.errors import ConfigError

PIXEL_TOL = 1  # as in tests/test_envs.py: C++ vs Python cv2.resize (measured 0)
BALL_X, BALL_Y, PADDLE_X = 99, 101, 72
BOTTOM_ROW_WALL = np.where(np.arange(36) % 6 == 0, FULL_WALL, 0).astype(np.uint8)
BOTTOM_ROW_WALL[12:18] |= 15  # the non-brick low nibble of column group 2, set in a cleared wall too


def _track(ram: np.ndarray) -> int:
    """RIGHT/LEFT/NOOP to keep the paddle under the ball (offset found by probing; good for these seeds)."""
    gap = int(ram[BALL_X]) - 6 - int(ram[PADDLE_X])
    return 2 if gap > 3 else 3 if gap < -3 else 0


def _near_cap(ale) -> None:
    """Leave only the bottom row of bricks and show 863 points: the next brick makes 864."""
    for i, value in enumerate(BOTTOM_ROW_WALL):
        ale.setRAM(i, int(value))
    write_score(ale, SCORE_CAP - 1)


def test_registry_and_backends() -> None:
    spec = get_game("BreakoutInfinite")
    plain = get_game("Breakout")
    assert GAMES["BreakoutInfinite"] is spec
    assert (spec.rom, spec.max_frames, spec.eval_max_episode_steps) == (plain.rom, plain.max_frames, 30_000)
    assert spec.score_wrap and not spec.native
    assert plain.native and not plain.score_wrap
    with pytest.raises(ConfigError):
        GameSpec("PongInfinite", "pong", score_wrap=True)
    with pytest.raises(ConfigError):
        make_vec_env("BreakoutInfinite", 1, backend="native")
    with pytest.raises(ConfigError):
        make_vec_env("Breakout", 1, backend="gpu")  # type: ignore[arg-type]
    native = make_vec_env("Breakout", 1)
    assert isinstance(native, AtariVecEnv)
    native.close()
    for name, backend in (("BreakoutInfinite", "auto"), ("BreakoutInfinite", "python"), ("Breakout", "python")):
        env = make_vec_env(name, 3, seed=4, backend=backend)  # type: ignore[arg-type]
        assert isinstance(env, PythonAtariVecEnv) and env.game is get_game(name)
        assert env.observation_space.shape == (4, 84, 84) and env.action_space.n == 4
        assert env.action_meanings == ["NOOP", "FIRE", "RIGHT", "LEFT"]
        assert env.get_attr("render_mode") == [None] * 3
        assert env.env_method("get_action_meanings", indices=1) == [env.action_meanings]
        assert env.env_is_wrapped(Monitor) == [True] * 3
        assert env.seed(4) == [4, 5, 6]
        with pytest.raises(RuntimeError):
            env.step(np.zeros(3, np.int64))
        env.close()


def _assert_same_step(a: tuple, b: tuple) -> None:
    """Two ``VecEnv.step`` results agree: obs (to PIXEL_TOL), rewards, dones and every info entry."""
    obs_a, rew_a, done_a, infos_a = a
    obs_b, rew_b, done_b, infos_b = b
    assert int(np.abs(obs_a.astype(np.int16) - obs_b).max()) <= PIXEL_TOL
    assert np.array_equal(obs_a == 0, obs_b == 0)  # same zeroed (stale) frames
    assert rew_a.dtype == rew_b.dtype == np.float32 and done_a.dtype == done_b.dtype == bool
    assert np.array_equal(rew_a, rew_b) and np.array_equal(done_a, done_b)
    for info_a, info_b in zip(infos_a, infos_b, strict=True):
        assert info_a.keys() == info_b.keys()
        for key, value in info_a.items():
            if key == "terminal_observation":
                assert int(np.abs(value.astype(np.int16) - info_b[key]).max()) <= PIXEL_TOL
            elif key == "episode":
                assert (value["r"], value["l"]) == (info_b[key]["r"], info_b[key]["l"])
            else:
                assert value == info_b[key], key


@pytest.mark.parametrize(
    ("game", "kwargs", "steps", "min_dones"),
    [
        # (hundreds of emulator steps on two backends each: the fast subset keeps the wrapped game, --slow all)
        pytest.param("Breakout", {}, 400, 4, marks=pytest.mark.slow),
        ("BreakoutInfinite", {"clip_rewards": False}, 300, 4),
        pytest.param("Breakout", {"episodic_life": False, "max_episode_steps": 70}, 250, 4, marks=pytest.mark.slow),
        pytest.param("MsPacman", {"clip_rewards": False}, 300, 1, marks=pytest.mark.slow),
        # Short raw-frame limit: the step that hits it ends mid frame-skip, then SameStep autoreset.
        pytest.param(
            dataclasses.replace(get_game("Seaquest"), max_frames=403),
            {"episodic_life": False},
            200,
            1,
            marks=pytest.mark.slow,
        ),
    ],
    ids=["breakout", "infinite-below-cap", "breakout-eval-step-limit", "mspacman", "seaquest-frame-limit"],
)
def test_python_vec_env_matches_native(game: str | GameSpec, kwargs: dict, steps: int, min_dones: int) -> None:
    # Same seeds and actions -> same trajectories as the native env on the game without the wrap (below 864
    # BreakoutInfinite is Breakout), including reset_games mid-run.
    spec = game if isinstance(game, GameSpec) else get_game(game)
    plain = dataclasses.replace(spec, score_wrap=False)
    native = make_vec_env(plain, 2, seed=21, **kwargs)
    python = make_vec_env(spec, 2, seed=21, backend="python", **kwargs)
    assert isinstance(native, AtariVecEnv) and isinstance(python, PythonAtariVecEnv)
    obs_native, obs_python = native.reset(), python.reset()
    assert np.array_equal(obs_native, obs_python)
    assert native.reset_infos == python.reset_infos
    rng = np.random.default_rng(5)
    counts = {"done": 0, "episode": 0, "truncated": 0}
    for t in range(steps):
        if t == steps // 2:
            mask = np.array([False, True])
            assert np.array_equal(native.reset_games(mask, [1234]), python.reset_games(mask, [1234]))
        actions = rng.integers(0, native.action_space.n, 2)
        out_native, out_python = native.step(actions), python.step(actions)
        _assert_same_step(out_native, out_python)
        counts["done"] += int(out_native[2].sum())
        counts["episode"] += sum("episode" in info for info in out_native[3])
        counts["truncated"] += sum(bool(info.get("TimeLimit.truncated")) for info in out_native[3])
    native.close()
    python.close()
    assert counts["done"] >= min_dones, counts
    if "max_episode_steps" in kwargs or spec.max_frames < 1000:
        assert counts["truncated"] >= min_dones, counts


def test_reset_games_python_vec_env() -> None:
    env = make_vec_env("BreakoutInfinite", 3, seed=0)
    with pytest.raises(ValueError):
        env.reset_games(np.array([True, False, True]), [1])
    first = env.reset_games(np.ones(3, bool), [50, 51, 52])  # resets everything first when not started
    for _ in range(40):
        obs, *_ = env.step(np.full(3, 2))
    again = env.reset_games(np.array([True, False, False]), [50])
    assert np.array_equal(again[0], first[0])  # same seed -> same game start, whenever it is reset
    assert np.array_equal(again[1:], obs[1:])  # the others go on untouched
    single = make_single_env("BreakoutInfinite", 52)
    assert np.array_equal(single.reset()[0], first[2])
    env.close()


def test_wall_respawns_after_second_wall_with_true_score() -> None:
    # Single env (the wrap acts inside the frame skip), in lockstep with plain Breakout until the wall is back.
    infinite = make_single_env("BreakoutInfinite", 3, clip_rewards=False, max_episode_steps=700)
    plain = make_single_env("Breakout", 3, clip_rewards=False, max_episode_steps=700)
    core, plain_core = infinite.get_wrapper_attr("core"), plain.get_wrapper_attr("core")
    infinite.reset()
    plain.reset()
    for _ in range(12):  # the ROM draws its wall during the first 36 raw frames after a reset
        infinite.step(0)
        plain.step(0)
    _near_cap(core.ale)
    _near_cap(plain_core.ale)
    assert count_bricks(core.ale.getRAM()) == 18
    bricks = 18
    total = 0.0
    shown: list[int] = []
    wrap_step = refill_step = None
    episode = None
    for t in range(700):
        action = _track(core.ale.getRAM())
        _, reward, terminated, truncated, info = infinite.step(action)
        assert reward >= 0
        total += reward
        if "episode" in info:
            episode = info["episode"]
            break
        ram = core.ale.getRAM()
        shown.append(read_score(ram))
        # Rewards count the true score: the displayed one plus 432 per rewrite (the setup's 863 included).
        assert total == read_score(ram) + WALL_POINTS * core.score_wraps
        assert read_score(ram) <= SCORE_CAP
        if wrap_step is None and core.score_wraps:
            wrap_step = t
        if refill_step is None and count_bricks(ram) > bricks:
            refill_step = t
            assert count_bricks(ram) >= 107  # all 108 bricks, less one if the ball hit one in the same step
        bricks = count_bricks(ram)
        if terminated or truncated:
            infinite.reset()
        if refill_step is None:
            # Until then both games play alike: the rewrite leaks no -432 into the reward.
            _, plain_reward, plain_terminated, plain_truncated, _ = plain.step(action)
            assert plain_reward == reward
            assert np.array_equal(plain_core.ale.getRAM()[BRICK_RAM], ram[BRICK_RAM])
            if plain_terminated or plain_truncated:
                plain.reset()
    assert wrap_step is not None and refill_step is not None and wrap_step < refill_step
    # 863, then 864 -> 432 within the frame skip (864 shows only if the step's last raw frame made it).
    assert shown[wrap_step - 1] in (SCORE_CAP - 1, SCORE_CAP) and WALL_POINTS <= shown[wrap_step] < WALL_POINTS + 20
    assert shown.count(SCORE_CAP) <= 1 and max(shown[refill_step:]) > WALL_POINTS  # the new wall scores
    assert episode is not None and episode["l"] == 700
    assert episode["r"] == total > SCORE_CAP  # unclipped return = true score, past the old cap
    assert core.score_wraps == 0  # the time limit started a new game

    # Plain Breakout is unaffected: no rewrite, its score passes 864 on the remaining bricks, no wall comes back.
    plain_bricks = count_bricks(plain_core.ale.getRAM())
    for _ in range(150):
        *_, info = plain.step(_track(plain_core.ale.getRAM()))
        ram = plain_core.ale.getRAM()
        assert count_bricks(ram) <= plain_bricks and info["lives"] > 0
        plain_bricks = count_bricks(ram)
    assert read_score(ram) > SCORE_CAP and plain_bricks < 18 and plain_core.score_wraps == 0


@pytest.mark.parametrize(
    ("write", "at_frame", "refill"),
    [(None, 0, None), (433, 0, None), (432, 0, "first"), (432, 200, "later")],
    ids=["864-stays", "433", "432-at-864", "432-after-a-paddle-hit"],
)
def test_rom_refills_wall_at_paddle_hit_when_score_is_432(write: int | None, at_frame: int, refill: str | None) -> None:
    # The ROM behaviour fls/envs/breakout.py relies on, at raw-frame level on plain Breakout from the frame
    # where the score reached 864: the wall comes back at the next paddle hit iff the score is exactly 432
    # then; writing it when 864 is reached is enough, and a later write waits for the following paddle hit.
    env = make_single_env("Breakout", 8)
    ale = env.get_wrapper_attr("core").ale
    env.reset()
    for _ in range(12):
        env.step(0)
    _near_cap(ale)

    def act() -> None:
        ram = ale.getRAM()
        gap = int(ram[BALL_X]) - 6 - int(ram[PADDLE_X])
        ale.act(Action.FIRE if ram[BALL_Y] == 0 else Action.RIGHT if gap > 2 else Action.LEFT if gap < -2 else 0)

    while read_score(ale.getRAM()) < SCORE_CAP:
        act()
    assert read_score(ale.getRAM()) == SCORE_CAP and count_bricks(ale.getRAM()) == 17
    events = []
    bricks = 17
    for frame in range(600):
        if write is not None and frame == at_frame:
            write_score(ale, write)
        act()
        ram = ale.getRAM()
        if count_bricks(ram) != bricks:
            events.append((frame, "refill" if count_bricks(ram) > bricks else "brick", read_score(ram)))
        bricks = count_bricks(ram)
    refills = [e for e in events if e[1] == "refill"]
    assert sum(e[1] == "brick" for e in events) >= 3, events
    if refill is None:
        assert not refills and bricks < 17
    else:
        assert len(refills) == 1 and refills[0][2] == WALL_POINTS and bricks > 100, events
        first_brick = next(e[0] for e in events if e[1] == "brick")
        assert (refills[0][0] < first_brick) == (refill == "first")  # the 1st paddle hit comes before a brick


def test_infinite_vec_env_evaluation_style() -> None:
    env = make_vec_env("BreakoutInfinite", 2, seed=0, clip_rewards=False, max_episode_steps=100)
    assert isinstance(env, PythonAtariVecEnv)
    env.reset()
    obs = env.reset_games(np.ones(2, bool), [10, 11])
    ale = env.cores[0].ale
    rng = np.random.default_rng(0)
    totals = np.zeros(2)
    episodes: dict[int, dict] = {}
    bricks = None
    refills = 0
    for t in range(100):
        if t == 12:
            _near_cap(ale)
            bricks = count_bricks(ale.getRAM())
        actions = np.array([_track(ale.getRAM()) if t >= 12 else 0, rng.integers(0, 4)])
        obs, rewards, dones, infos = env.step(actions)
        assert obs.shape == (2, 4, 84, 84) and rewards.dtype == np.float32 and (rewards >= 0).all()
        totals += rewards
        for i, info in enumerate(infos):
            assert {"lives", "game_over"} <= info.keys() and "rgb" not in info
            if dones[i]:
                assert info["terminal_observation"].shape == (4, 84, 84) and "TimeLimit.truncated" in info
            if "episode" in info:
                episodes[i] = info["episode"]
        if bricks is not None and not dones[0]:
            refills += count_bricks(ale.getRAM()) > bricks
            bricks = count_bricks(ale.getRAM())
    assert sorted(episodes) == [0, 1] and all(e["l"] == 100 for e in episodes.values())
    assert all(info["TimeLimit.truncated"] and info["game_over"] for info in infos)
    assert [episodes[0]["r"], episodes[1]["r"]] == totals.tolist()
    assert episodes[0]["r"] > SCORE_CAP and refills == 1  # env 0 went past the cap and got its wall back
    assert episodes[1]["r"] < SCORE_CAP
    assert [core.score_wraps for core in env.cores] == [0, 0]  # new games after the time limit
    env.close()
