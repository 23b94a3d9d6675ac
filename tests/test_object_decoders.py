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


def test_frostbite_player_floes_and_birds():
    # Bailey's hat, face and boots (his grey coat is the igloo's colour); the water below the shore (row 75 on)
    assert_agrees(
        "Frostbite", "Player", colour_mask((162, 98, 33), (198, 108, 58), (162, 162, 42), rows=(50, 185)), tolerance=1
    )
    water = (75, 185)
    floes = colour_mask((214, 214, 214), (84, 138, 210), rows=water)  # white until jumped on, then blue
    assert_agrees("Frostbite", "FloatingBlock", floes, tolerance=1)
    assert_agrees("Frostbite", "Bird", colour_mask((132, 144, 252), rows=water), tolerance=1)
