"""Pictures of attention trees: a PNG over the input frames, a self-contained 3-D plotly HTML, and a video panel.

Every node is drawn at the centre of its receptive field; edges go parent -> child with a width proportional to the
child's contribution relative to the strongest node of its level (contributions shrink with depth, so one scale
for the whole tree would leave the lower levels invisible). Colours go by depth below the root.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from fls.models.renderer import label_font
from fls.objects.drawing import draw_objects, object_colours
from fls.rundir import atomic_path
from fls.saliency.tree import AttentionTree, TreeNode, to_raw

# Root first: red, orange, yellow, green, cyan, blue, violet (depth below the root).
DEPTH_COLOURS = [(230, 40, 40), (255, 140, 0), (250, 220, 0), (60, 200, 80), (0, 200, 230), (70, 110, 255)]
MAX_WIDTH = 6.0


def depth_colour(depth: int) -> tuple[int, int, int]:
    """RGB colour of the nodes ``depth`` levels below the roots."""
    return DEPTH_COLOURS[min(depth, len(DEPTH_COLOURS) - 1)]


def _level_peaks(tree: AttentionTree) -> dict[int, float]:
    peaks: dict[int, float] = {}
    for node in tree.nodes:
        peaks[node.level] = max(peaks.get(node.level, 0.0), node.contribution)
    return peaks


def relative_strength(tree: AttentionTree) -> list[float]:
    """Each node's contribution divided by the largest one of its level, in [0, 1] (non-positive -> 0)."""
    peaks = _level_peaks(tree)
    return [max(node.contribution, 0.0) / peaks[node.level] if peaks[node.level] > 0 else 0.0 for node in tree.nodes]


def draw_tree(
    draw: ImageDraw.ImageDraw,
    tree: AttentionTree,
    to_canvas: Callable[[float, float], tuple[float, float]],
    *,
    unit: float = 1.0,
    leaf_channel: int | None = None,
) -> None:
    """Draw edges then nodes of ``tree`` with ``to_canvas(y, x)`` mapping observation pixels to canvas (x, y).

    ``unit`` scales widths and radii. With ``leaf_channel`` set, input-pixel nodes whose strongest frame is another
    one are drawn hollow (the stacked-frames view shows which frame each leaf reads).
    """
    strength = relative_strength(tree)
    top = max((node.level for node in tree.nodes), default=0)
    for parent, child in tree.edges():
        a, b = tree.nodes[parent], tree.nodes[child]
        width = max(1, round(unit * (0.5 + MAX_WIDTH * strength[child])))
        draw.line([to_canvas(*a.center), to_canvas(*b.center)], fill=depth_colour(b.depth), width=width)
    for node, level_strength in sorted(zip(tree.nodes, strength, strict=True), key=lambda item: -item[0].depth):
        radius = unit * (1.5 + 3.0 * node.level / max(top, 1) + 1.5 * level_strength)
        px, py = to_canvas(*node.center)
        box = [px - radius, py - radius, px + radius, py + radius]
        hollow = leaf_channel is not None and node.level == 0 and node.channel != leaf_channel
        colour = depth_colour(node.depth)
        draw.ellipse(box, fill=None if hollow else colour, outline=colour if hollow else (0, 0, 0), width=1)


def tree_panel(frame_rgb: np.ndarray, tree: AttentionTree, *, scale: int = 1, supersample: int = 3) -> np.ndarray:
    """The tree drawn over a raw (210, 160, 3) frame, ``scale`` times its size (drawn ``supersample`` times larger
    still, then reduced, for smooth lines)."""
    height, width = frame_rgb.shape[:2]
    big_scale = scale * supersample
    big = cv2.resize(frame_rgb, (width * big_scale, height * big_scale), interpolation=cv2.INTER_NEAREST)
    image = Image.fromarray(big)
    side = tree.observation.shape[-1]

    def to_canvas(y: float, x: float) -> tuple[float, float]:
        cx, cy = to_raw(y, x, (height, width), side)
        return (cx + 0.5) * big_scale - 0.5, (cy + 0.5) * big_scale - 0.5

    draw_tree(ImageDraw.Draw(image), tree, to_canvas, unit=big_scale * 0.5)
    return cv2.resize(np.asarray(image), (width * scale, height * scale), interpolation=cv2.INTER_AREA)


def tree_image(
    tree: AttentionTree,
    *,
    frame: np.ndarray | None = None,
    scale: int = 4,
    title: str = "",
    action_name: str | None = None,
    game: str | None = None,
) -> np.ndarray:
    """RGB picture: the raw frame with the tree (if ``frame`` is given), then the stacked input frames, oldest first,
    each with the tree (input-pixel nodes filled on the frame they read most, hollow on the others), above a caption
    (``title``, the explained action: ``action_name`` or its index) and a colour legend of the layers.

    With the tree's game :attr:`~fls.saliency.tree.AttentionTree.objects` known, the raw frame outlines them
    (:func:`fls.objects.drawing.draw_objects`, colours by category of ``game``) and a last line counts the nodes
    whose receptive-field centre falls in each category (roots apart).
    """
    stack = tree.observation
    side = stack.shape[-1]
    panel = side * scale
    panels: list[tuple[str, np.ndarray]] = []
    names = tree.node_objects()
    if frame is not None:
        raw_h = panel
        raw_w = round(frame.shape[1] * panel / frame.shape[0])
        raw = cv2.resize(tree_panel(frame, tree, scale=2), (raw_w, raw_h), interpolation=cv2.INTER_AREA)
        if tree.objects and game is not None:
            picture = Image.fromarray(raw)
            draw_objects(picture, tree.objects, object_colours(game), scale=raw_h / frame.shape[0], font_size=12)
            raw = np.asarray(picture)
        panels.append(("raw frame", raw))
    for index in range(stack.shape[0]):
        gray = cv2.resize(stack[index], (panel, panel), interpolation=cv2.INTER_NEAREST)
        image = Image.fromarray(np.repeat(gray[..., None], 3, axis=2))

        def to_canvas(y: float, x: float) -> tuple[float, float]:
            return (x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5

        draw_tree(ImageDraw.Draw(image), tree, to_canvas, unit=scale / 2, leaf_channel=index)
        age = stack.shape[0] - 1 - index
        panels.append(("input frame t" + (f"-{age}" if age else " (newest)"), np.asarray(image)))

    font = label_font(14)
    header, footer = 22, 44 if names is None else 66
    width = sum(p.shape[1] for _, p in panels) + 4 * (len(panels) - 1)
    canvas = Image.new("RGB", (width, header + panel + footer), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    left = 0
    for name, picture in panels:
        canvas.paste(Image.fromarray(picture), (left, header))
        draw.text((left + 4, 3), name, fill=(255, 255, 255), font=font)
        left += picture.shape[1] + 4
    if tree.action is None:
        explained = "the value"
    else:
        explained = f"action {action_name or tree.action}"
    caption = f"{title}  explains {explained}; {tree.root_text()}".strip()
    draw.text((4, header + panel + 4), caption, fill=(255, 255, 255), font=font)
    x = 4
    depths = sorted({(node.depth, node.layer) for node in tree.nodes})
    for depth, layer in depths:
        draw.ellipse([x, header + panel + 26, x + 10, header + panel + 36], fill=depth_colour(depth))
        draw.text((x + 14, header + panel + 24), layer, fill=(255, 255, 255), font=font)
        x += 24 + int(draw.textlength(layer, font=font))
    if names is not None:
        draw.text((4, header + panel + 46), object_legend(tree, names), fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def object_legend(tree: AttentionTree, names: list[str]) -> str:
    """``objects at node centres: Ball 4 (1 root), Player 2, none 10``: the nodes per game object, most first."""
    counts: dict[str, list[int]] = {}
    for node, name in zip(tree.nodes, names, strict=True):
        count = counts.setdefault(name, [0, 0])
        count[0] += 1
        count[1] += node.parent is None
    order = sorted(counts, key=lambda name: (name == "none", -counts[name][0], name))
    parts = []
    for name in order:
        total, roots = counts[name]
        parts.append(f"{name} {total}" + (f" ({roots} root{'s' if roots > 1 else ''})" if roots else ""))
    return "objects at node centres: " + ", ".join(parts)


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB array as a PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)


def hover_text(node: TreeNode, game_object: str | None = None) -> str:
    """The hover text of a node: layer, channel, position, activation, contribution, receptive field, and the game
    object its centre falls in (when known)."""
    channel = f"frame {node.channel}" if node.level == 0 else f"channel {node.channel}"
    role = "root: contribution" if node.parent is None else "contribution to parent"
    parent = f"{role} {node.contribution:.4g}"
    text = (
        f"{node.layer} · {channel} · (y, x) = ({node.y}, {node.x})<br>"
        f"activation {node.activation:.4g} · {parent}<br>"
        f"receptive field {node.field} px centred at ({node.center[0]:.1f}, {node.center[1]:.1f})"
    )
    return text if game_object is None else f"{text}<br>object: {game_object}"


def tree_figure(tree: AttentionTree, *, title: str = ""):
    """A plotly 3-D figure: the newest input frame at height 0, one translucent plane per level above it, nodes at
    their receptive-field centres on their level's plane, edges parent -> child (width by contribution); the title
    says what the roots are."""
    import plotly.graph_objects as go

    frame = tree.observation[-1].astype(float)
    side = frame.shape[-1]
    axis = np.arange(side)
    traces = [
        go.Surface(
            x=axis,
            y=axis,
            z=np.zeros_like(frame),
            surfacecolor=frame,
            colorscale="gray",
            cmin=0,
            cmax=255,
            showscale=False,
            hoverinfo="skip",
            name="input frame (newest)",
        )
    ]
    levels = sorted({node.level for node in tree.nodes})
    for level in levels:
        if level == 0:
            continue
        depth = next(node.depth for node in tree.nodes if node.level == level)
        colour = "rgb({},{},{})".format(*depth_colour(depth))
        traces.append(
            go.Surface(
                x=[0, side - 1],
                y=[0, side - 1],
                z=[[level, level], [level, level]],
                surfacecolor=[[0, 0], [0, 0]],
                colorscale=[[0, colour], [1, colour]],
                opacity=0.12,
                showscale=False,
                hoverinfo="skip",
                name=tree.levels[level],
            )
        )
    strength = relative_strength(tree)
    names = tree.node_objects()
    for parent, child in tree.edges():
        a, b = tree.nodes[parent], tree.nodes[child]
        traces.append(
            go.Scatter3d(
                x=[a.center[1], b.center[1]],
                y=[a.center[0], b.center[0]],
                z=[a.level, b.level],
                mode="lines",
                line={"color": "rgb({},{},{})".format(*depth_colour(b.depth)), "width": 1 + 7 * strength[child]},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    for level in levels:
        members = [i for i, node in enumerate(tree.nodes) if node.level == level]
        nodes = [tree.nodes[i] for i in members]
        traces.append(
            go.Scatter3d(
                x=[node.center[1] for node in nodes],
                y=[node.center[0] for node in nodes],
                z=[level] * len(nodes),
                mode="markers",
                marker={
                    "size": [4 + 6 * strength[i] for i in members],
                    "color": ["rgb({},{},{})".format(*depth_colour(node.depth)) for node in nodes],
                    "line": {"color": "black", "width": 1},
                },
                hovertext=[hover_text(tree.nodes[i], None if names is None else names[i]) for i in members],
                hoverinfo="text",
                name=tree.levels[level],
            )
        )
    figure = go.Figure(data=traces)
    figure.update_layout(
        title=f"{title}<br><sub>{tree.root_text()}</sub>" if title else tree.root_text(),
        scene={
            "xaxis": {"title": "x (input pixels)", "range": [0, side - 1]},
            "yaxis": {"title": "y (input pixels)", "range": [side - 1, 0]},
            "zaxis": {"title": "layer", "tickvals": levels, "ticktext": [tree.levels[i] for i in levels]},
            "aspectmode": "manual",
            "aspectratio": {"x": 1, "y": 1, "z": 0.9},
        },
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
    )
    return figure


def write_html(tree: AttentionTree, path: str | Path, *, title: str = "") -> Path:
    """Write the 3-D view as one self-contained HTML file (plotly.js inline: opens offline), atomically."""
    figure = tree_figure(tree, title=title)
    with atomic_path(path) as tmp:
        figure.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return Path(path)
