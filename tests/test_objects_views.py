"""Game objects in pictures: the boxes outlined on every panel of a real Breakout video (saliency.objects), the
setting recorded and named, refused for a game without a decoder before playing; attention-tree nodes naming the
object under their receptive-field centre (JSON, PNG legend, HTML hover), through the commands' Python API."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import fls
from fls.errors import ConfigError
from fls.objects import GameObject, detect, object_at
from fls.objects.drawing import PALETTE, object_colours
from fls.saliency.tree import AttentionTree, TreeNode, attention_trees
from fls.saliency.tree_views import hover_text, tree_image
from fls.saliency.video import play, record_video
from tests.conftest import TINY_SPARSE_FLS
from tests.test_saliency import policy_for

SCALE, BAR = 2, 30  # record_video's default scale; the title bar above the panels is 15 * scale


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def outline_pixel(obj: GameObject, panel: int) -> tuple[int, int]:
    """(row, column) in a composed frame of a pixel of ``obj``'s outline (1 px just outside the box at scale 2):
    the middle of its left side, or of its right side when the left one is off the panel."""
    x0, y0 = obj.x * SCALE, obj.y * SCALE
    x1, y1 = (obj.x + obj.w) * SCALE - 1, (obj.y + obj.h) * SCALE - 1
    column = x0 - 1 if x0 >= 1 else x1 + 1
    return BAR + (y0 + y1) // 2, panel * 160 * SCALE + column


def test_colours_are_one_per_category_in_the_game_s_order() -> None:
    assert object_colours("Breakout") == {"Player": PALETTE[0], "Ball": PALETTE[1]}


def test_a_label_whose_place_above_is_taken_goes_below_its_box() -> None:
    from PIL import Image

    from fls.objects.drawing import draw_objects

    # Seaquest: a diver beside a shark at the same height, their labels above would overlap
    shark, diver = GameObject("Shark", 40, 60, 8, 7), GameObject("Diver", 50, 62, 8, 11)
    colours = object_colours("Seaquest")
    image = Image.new("RGB", (160 * SCALE, 210 * SCALE))
    draw_objects(image, [shark, diver], colours, scale=SCALE)
    pixels = np.asarray(image)
    below = pixels[(diver.y + diver.h) * SCALE + 2 :, diver.x * SCALE - 1 : (diver.x + 30) * SCALE]
    assert (below.max(axis=-1) > 100).sum() > 20  # the word "Diver" (anti-aliased), nothing else is drawn there


def test_every_panel_outlines_the_ball_and_the_paddle_in_their_colours(tmp_path: Path) -> None:
    policy, steps = policy_for("sparse_fls"), 30
    recording = record_video(
        policy,
        "Breakout",
        None,
        methods=["attention"],
        seed=1,
        max_steps=steps,
        png_dir=tmp_path,
        progress=False,
        objects=True,
    )
    records = []
    play(policy, "Breakout", seed=1, max_steps=steps, on_step=records.append)  # the same game: the same RAM
    colours = object_colours("Breakout")
    shown = {"Player": 0, "Ball": 0}
    for record, png in zip(records, recording.frames, strict=True):
        frame = iio.imread(png)[..., :3]
        for obj in detect("Breakout", record.ram):
            for panel in range(3):  # the raw frame, the attention overlay, the input panel
                row, column = outline_pixel(obj, panel)
                assert tuple(frame[row, column]) == colours[obj.category], (record.step, obj, panel)
            shown[obj.category] += 1
    assert shown["Player"] == steps and shown["Ball"] > 0, shown  # the ball was in play in some frames
    plain = record_video(policy, "Breakout", None, seed=1, max_steps=1, png_dir=tmp_path / "plain", progress=False)
    (paddle,) = [obj for obj in detect("Breakout", records[0].ram) if obj.category == "Player"]
    row, column = outline_pixel(paddle, 0)
    assert tuple(iio.imread(plain.frames[0])[row, column, :3]) != colours["Player"]  # no boxes unless asked


def test_a_game_without_a_decoder_is_refused_before_playing(tmp_path: Path) -> None:
    # Every registered game has a decoder; an unknown one shows the check comes first (playing would say
    # "unknown game" instead).
    with pytest.raises(ConfigError, match=r"^no object decoder for game 'Nope' \(games with one: BeamRider, "):
        record_video(policy_for("sparse_fls"), "Nope", tmp_path / "x.mp4", objects=True, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_node_names_the_smallest_object_its_centre_falls_in() -> None:
    paddle, ball = GameObject("Player", 60, 189, 16, 4), GameObject("Ball", 70, 188, 2, 4)  # the ball over it
    assert object_at([paddle, ball], 71.0, 190.0) == ball and object_at([ball, paddle], 71.0, 190.0) == ball
    assert object_at([paddle, ball], 62.5, 191.5) == paddle
    assert object_at([paddle, ball], 59.9, 191.5) is None and object_at([paddle], 76.0, 190.0) is None

    def node_at(raw_x: float, raw_y: float, parent: int | None) -> TreeNode:
        """A node whose receptive-field centre is the raw-frame point (continuous coordinates)."""
        center = (raw_y * 84 / 210 - 0.5, raw_x * 84 / 160 - 0.5)  # to_raw's inverse
        return TreeNode(0, "input", 3, 0, 0, 1.0, 1.0, parent, 0 if parent is None else 1, center, 1)

    nodes = [node_at(71.0, 190.0, None), node_at(62.5, 191.5, 0), node_at(20.0, 100.0, 0)]
    tree = AttentionTree(nodes, ["input"], "relevance", 1, np.zeros((4, 84, 84), np.uint8))
    assert tree.node_objects() is None and "object" not in tree.to_dict()["nodes"][0]  # objects not known
    tree.objects = [paddle, ball]
    described = tree.to_dict()
    assert [node["object"] for node in described["nodes"]] == ["Ball", "Player", "none"]
    assert described["objects"] == [paddle.to_dict(), ball.to_dict()]
    assert hover_text(nodes[0], "Ball").endswith("<br>object: Ball")
    with_objects = tree_image(tree, frame=np.zeros((210, 160, 3), np.uint8), game="Breakout")
    tree.objects = None
    without = tree_image(tree, frame=np.zeros((210, 160, 3), np.uint8), game="Breakout")
    assert with_objects.shape[0] == without.shape[0] + 22  # the legend line
    raw = with_objects[22 : 22 + 336, :256]
    assert (raw == PALETTE[1]).all(axis=-1).any() and (raw == PALETTE[0]).all(axis=-1).any()  # the boxes outlined


def test_a_real_tree_s_nodes_name_the_objects_of_its_frame() -> None:
    policy = policy_for("sparse_fls")
    records = []
    play(policy, "Breakout", seed=1, max_steps=30, on_step=records.append)
    record = next(r for r in records if any(obj.category == "Ball" for obj in detect("Breakout", r.ram)))
    (tree,) = attention_trees(policy, record.observation[None], n=3)
    tree.objects = detect("Breakout", record.ram)
    for node, name in zip(tree.nodes, tree.node_objects(), strict=True):
        x, y = node.center[1] * 160 / 84 + 160 / 168, node.center[0] * 210 / 84 + 210 / 168  # pixel centre -> edges
        inside = sorted((obj.w * obj.h, obj.category) for obj in tree.objects if obj.contains(x, y))
        assert name == (inside[0][1] if inside else "none")


@pytest.mark.slow
def test_objects_from_training_the_python_api_and_trees(tmp_path: Path, monkeypatch) -> None:
    """after_training.video_objects and fls.video(objects=) draw the boxes and record it (and name the video), the
    default does neither; fls.trees writes each node's object into the JSON and the HTML."""
    monkeypatch.chdir(tmp_path)
    run = fls.train(
        [
            *TINY_SPARSE_FLS,
            "total_timesteps=128",
            "after_training.video=true",
            "after_training.video_objects=true",
            "after_training.video_methods=[attention]",
            "after_training.video_steps=4",
        ],
        run_dir=tmp_path / "run",
    )
    stem = "final_model_Breakout_seed2000_1ep_attention"
    (video,) = (run.dir / "videos").glob("*.mp4")
    assert video.name == f"{stem}_objects.mp4"
    assert json.loads(video.with_name(video.name + ".json").read_text())["objects"] is True
    agent = fls.load(run.dir, device="cpu")
    plain = fls.video(agent, ["attention"], max_steps=4, out=tmp_path / "videos")
    assert (
        plain.name == f"{stem}.mp4"
        and json.loads(plain.with_name(plain.name + ".json").read_text())["objects"] is False
    )
    boxed = fls.video(agent, ["attention"], max_steps=4, objects=True, out=tmp_path / "videos")
    assert boxed.name == video.name and iio.imread(boxed).shape == iio.imread(video).shape
    (png,) = fls.trees(agent, [3], n=2, depth=1, out=tmp_path / "trees")
    record = json.loads(png.with_suffix(".json").read_text())
    assert {obj["category"] for obj in record["objects"]} >= {"Player"}
    assert all(node["object"] in ("Player", "Ball", "none") for node in record["nodes"])
    assert "object: " in png.with_suffix(".html").read_text()


def test_a_video_made_before_the_setting_counts_as_made_without_objects(tmp_path: Path) -> None:
    from fls.tasks.video import refuse_another_video, settings_file

    video = tmp_path / "final_model_Breakout_seed2000_1ep_attention.mp4"
    video.write_bytes(b"")
    settings_file(video).write_text(json.dumps({"methods": ["attention"]}))  # no "objects": an older video
    refuse_another_video(video, {"methods": ["attention"], "objects": False})
    with pytest.raises(ConfigError, match="with objects=False, not True"):
        refuse_another_video(video, {"methods": ["attention"], "objects": True})
