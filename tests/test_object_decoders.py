"""Every game's RAM decoder against its objects' own pixels: >= 90% agreement over seeded random play."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fls.errors import ConfigError
from fls.objects import categories, detect, games_with_decoder
from tests.object_pixels import agreement, colour_mask


def assert_agrees(game: str, category: str, mask, **kwargs) -> None:
    result = agreement(game, category, mask, **kwargs)
    assert result.boxes > 20 and result.blobs > 20, f"{game} {category}: too few frames with the object: {result}"
    assert result.precision >= 0.9 and result.recall >= 0.9, f"{game} {category}: {result}"


def test_a_game_without_a_decoder_is_refused_naming_those_with_one():
    with pytest.raises(ConfigError, match="no object decoder for game 'Tetris'.*Breakout"):
        detect("Tetris", np.zeros(128, np.uint8))
    with pytest.raises(ConfigError, match="128 bytes"):
        detect("Breakout", np.zeros(64, np.uint8))


def test_every_registered_game_has_a_decoder():
    from fls.envs.games import GAMES

    assert set(games_with_decoder()) == set(GAMES)
    for game in GAMES:
        assert categories(game)


def test_breakout_paddle_and_ball():
    red = (200, 72, 72)
    inside_walls = (8, 152)
    assert_agrees("Breakout", "Ball", colour_mask(red, rows=(93, 189), columns=inside_walls))  # below the bricks
    assert_agrees("Breakout", "Player", colour_mask(red, rows=(189, 193), columns=inside_walls))


@pytest.mark.slow  # 5-8 s of play; Breakout's and Pong's run in the fast subset
def test_ms_pacman_player_and_ghosts():
    maze = (0, 172)  # above the lives and the score
    assert_agrees("MsPacman", "Player", colour_mask((210, 164, 74), rows=maze), tolerance=1)
    # The ghosts flicker (see fls.objects.games.ms_pacman): a box may hold what the last three steps drew, and what
    # this step drew lies in a box.
    ghosts = colour_mask((180, 122, 48), (84, 184, 153), (198, 89, 179), (200, 72, 72), rows=maze)
    drawn = []

    def recent_ghosts(frame):
        drawn[:] = [*drawn[-2:], ghosts(frame)]
        return np.logical_or.reduce(drawn)

    assert_agrees("MsPacman", "Ghost", recent_ghosts, tolerance=2, recall_mask_fn=ghosts)


@pytest.mark.slow  # 5-8 s of play; Breakout's and Pong's run in the fast subset
def test_beam_rider_ship_saucers_and_shots():
    yellow = (210, 210, 64)
    assert_agrees("BeamRider", "Player", colour_mask(yellow, rows=(150, 182)), tolerance=1)  # above the lives
    beams = (43, 163)  # below the sector count, above the ship's purple tips
    saucers = colour_mask((236, 236, 236), (170, 170, 170), rows=beams)  # white, grey on the horizon
    assert_agrees("BeamRider", "Saucer", saucers, tolerance=2, min_pixels=1)  # 1-pixel saucers on the horizon
    lasers_and_torpedoes = colour_mask((198, 108, 58), (164, 89, 208), rows=beams)

    def shots(frame):  # leave out the screen-wide flashes and the enemies' flat purple shots (4 x 2 pixels)
        mask = lasers_and_torpedoes(frame).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        width, height = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
        return np.isin(
            labels, [label for label in range(1, n) if width[label] <= 8 and 2 * height[label] > width[label]]
        )

    assert_agrees("BeamRider", "Player_Projectile", shots, tolerance=1, min_pixels=1)


@pytest.mark.slow  # 5-8 s of play; Breakout's and Pong's run in the fast subset
def test_enduro_player_and_cars():
    road = (51, 156)  # below the sky, above the dashboard
    white = colour_mask((192, 192, 192), rows=road)

    def player_car(frame):  # the thin white road edges share the car's colour: keep car-shaped blobs
        mask = white(frame).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        height, width = stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_WIDTH]
        return np.isin(labels, [label for label in range(1, n) if height[label] <= 12 and width[label] >= 8])

    assert_agrees("Enduro", "Player", player_car, tolerance=1)
    cars = [(162, 162, 42), (66, 114, 194), (66, 158, 130), (198, 108, 58), (110, 156, 66), (162, 134, 56)]
    assert_agrees("Enduro", "Car", colour_mask(*cars, rows=road), tolerance=3)


@pytest.mark.slow  # 5-8 s of play; Breakout's and Pong's run in the fast subset
def test_frostbite_player_floes_and_birds():
    # Bailey's hat, face and boots (his grey coat is the igloo's colour); the water below the shore (row 75 on)
    assert_agrees(
        "Frostbite", "Player", colour_mask((162, 98, 33), (198, 108, 58), (162, 162, 42), rows=(50, 185)), tolerance=1
    )
    water = (75, 185)
    floes = colour_mask((214, 214, 214), (84, 138, 210), rows=water)  # white until jumped on, then blue
    assert_agrees("Frostbite", "FloatingBlock", floes, tolerance=1)
    assert_agrees("Frostbite", "Bird", colour_mask((132, 144, 252), rows=water), tolerance=1)


def test_pong_paddles_and_ball():
    # The boxes bound the pixels exactly (tolerance 1); a box a few pixels off fails (the test below).
    playfield = (34, 194)  # between the white walls
    assert_agrees("Pong", "Player", colour_mask((92, 186, 92), rows=playfield), steps=300, tolerance=1)
    assert_agrees("Pong", "Enemy", colour_mask((213, 130, 74), rows=playfield), steps=300, tolerance=1)
    assert_agrees("Pong", "Ball", colour_mask((236, 236, 236), rows=playfield), steps=300, tolerance=1)


@pytest.mark.slow  # 5-8 s of play; Breakout's and Pong's run in the fast subset
def test_space_invaders_cannon_invaders_ship_and_shots():
    # The boxes bound the pixels (tolerance 1 as for Pong). Shots and a new cannon flicker: the decoder reports
    # what the frame shows (see its docstring).
    cannon_rows = (185, 195)  # not the score above or the marks in the ground below
    assert_agrees("SpaceInvaders", "Player", colour_mask((50, 132, 50), rows=cannon_rows), tolerance=1)
    assert_agrees("SpaceInvaders", "Alien", colour_mask((134, 134, 29)), tolerance=1)
    assert_agrees("SpaceInvaders", "Bullet", colour_mask((142, 142, 142)), tolerance=1)
    # the mother ship first shows up after ~230 steps of these seeds
    assert_agrees("SpaceInvaders", "Satellite", colour_mask((151, 25, 122), rows=(0, 30)), seeds=(2, 4), tolerance=1)


@pytest.mark.slow  # 5-8 s of play; Breakout's and Pong's run in the fast subset
def test_seaquest_submarine_enemies_divers_and_torpedoes():
    import cv2

    water = (45, 155)  # below the HUD, above the sea floor and the oxygen bar

    def blobs(colour, keep):
        """The pixels of ``colour`` under water in 8-connected blobs whose (width, height) ``keep`` accepts."""
        base = colour_mask(colour, rows=water)

        def mask(frame):
            pixels = base(frame)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(pixels.astype(np.uint8), connectivity=8)
            kept = [i for i in range(1, n) if keep(stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT])]
            return np.isin(labels, kept)

        return mask

    def thin(colour):
        """The pixels of ``colour`` under water in one-row lines of 5 pixels or more (the agent's torpedo, also where
        it touches the submarine)."""
        base = colour_mask(colour, rows=water)

        def mask(frame):
            pixels = base(frame)
            alone = pixels.copy()
            alone[1:] &= ~pixels[:-1]
            alone[:-1] &= ~pixels[1:]
            n, labels, stats, _ = cv2.connectedComponentsWithStats(alone.astype(np.uint8), connectivity=4)
            return np.isin(labels, [i for i in range(1, n) if stats[i, cv2.CC_STAT_WIDTH] >= 5])

        return mask

    def short(colour, rows):
        """The pixels of ``colour`` under water in groups (pixels up to 5 rows, 2 columns apart) of ``rows`` rows or
        fewer (an enemy torpedo, not a diver)."""
        base = colour_mask(colour, rows=water)

        def mask(frame):
            pixels = base(frame)
            near = cv2.dilate(pixels.astype(np.uint8), np.ones((11, 5), np.uint8))
            n, labels, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=8)
            return pixels & np.isin(labels, [i for i in range(1, n) if stats[i, cv2.CC_STAT_HEIGHT] - 10 <= rows])

        return mask

    yellow, blue, grey = (187, 187, 53), (66, 72, 200), (170, 170, 170)  # agent + torpedo, diver + enemy torpedo
    assert_agrees("Seaquest", "Player", blobs(yellow, lambda w, h: h > 1), tolerance=1)
    assert_agrees("Seaquest", "PlayerMissile", thin(yellow), tolerance=1)
    assert_agrees("Seaquest", "Shark", colour_mask((92, 186, 92), rows=water), tolerance=1)
    assert_agrees("Seaquest", "Diver", colour_mask(blue, rows=water), tolerance=1)  # no enemy torpedo in these seeds
    # Enemy submarines and their torpedoes show up in these seeds.
    assert_agrees("Seaquest", "Submarine", colour_mask(grey, rows=water), seeds=(4, 13), tolerance=1)
    assert_agrees("Seaquest", "EnemyMissile", short(blue, 4), seeds=(4, 13), tolerance=1)


@pytest.mark.parametrize("shift", [(4, 0), (0, 4)])
def test_the_check_fails_a_decoder_off_by_a_few_pixels(monkeypatch, shift):
    """A box 4 px off its object (Pong's 16-row paddles included) fails precision or recall: a wrong offset cannot
    pass the checks above."""
    import dataclasses

    import tests.object_pixels

    def shifted(game, ram):
        return [dataclasses.replace(o, x=o.x + shift[0], y=o.y + shift[1]) for o in detect(game, ram)]

    monkeypatch.setattr(tests.object_pixels, "detect", shifted)
    field = (34, 194)  # between the walls
    for category, colour in (("Player", (92, 186, 92)), ("Enemy", (213, 130, 74)), ("Ball", (236, 236, 236))):
        result = agreement("Pong", category, colour_mask(colour, rows=field), seeds=(0,), steps=300, tolerance=1)
        assert result.precision < 0.9 or result.recall < 0.9, f"{category}: {result}"
