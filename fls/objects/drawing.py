"""Game objects drawn on pictures of the frame: each box outlined just outside the object, its category written
beside it, one colour per category (its place in the game's :func:`~fls.objects.categories`, so the same in every
panel and frame of a game)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw

from fls.models.renderer import label_font
from fls.objects.detection import GameObject, categories

__all__ = ["PALETTE", "RGB", "draw_objects", "object_colours"]

RGB = tuple[int, int, int]
# Bright colours apart from the saliency colormap (inferno: black, purple, orange, yellow) and the tree's depths.
PALETTE: tuple[RGB, ...] = (
    (0, 255, 255),
    (255, 0, 255),
    (0, 255, 0),
    (255, 255, 255),
    (64, 128, 255),
    (255, 96, 96),
    (160, 255, 160),
    (200, 140, 255),
    (255, 200, 120),
    (0, 160, 160),
)


def object_colours(game: str) -> dict[str, RGB]:
    """Category -> outline colour for ``game`` (the palette repeats past its length); ConfigError for a game without
    a decoder, naming the games with one."""
    return {category: PALETTE[i % len(PALETTE)] for i, category in enumerate(categories(game))}


def draw_objects(
    image: Image.Image,
    objects: Sequence[GameObject],
    colours: Mapping[str, RGB],
    *,
    scale: float = 1.0,
    font_size: int | None = None,
) -> None:
    """Outline ``objects`` (raw-frame boxes) on ``image``, a picture of the frame ``scale`` times its size (in
    place), each labelled with its category.

    The outline (``max(1, scale // 2)`` pixels) lies just outside the box, so the object itself stays visible. A
    label goes above its box, or below it at the picture's top or where the place above is taken by a label
    already written, kept inside the picture; a label with neither place free is left out (the colour still says
    the category).
    """
    draw = ImageDraw.Draw(image)
    width, height = image.size
    line = max(1, int(scale // 2))
    font = label_font(font_size or max(8, round(6 * scale)))
    written: list[tuple[float, float, float, float]] = []
    for obj in objects:
        colour = colours[obj.category]
        x0, y0 = round(obj.x * scale), round(obj.y * scale)
        x1, y1 = round((obj.x + obj.w) * scale) - 1, round((obj.y + obj.h) * scale) - 1
        draw.rectangle([x0 - line, y0 - line, x1 + line, y1 + line], outline=colour, width=line)
        left, top, right, bottom = draw.textbbox((0, 0), obj.category, font=font)
        text_w, text_h = right - left, bottom - top
        tx = min(max(x0 - line, 0), width - text_w)
        above, below = y0 - line - text_h - 2, y1 + line + 2
        rows = [min(ty, height - text_h) for ty in ((above, below) if above >= 0 else (below,))]
        places = [(tx, ty, tx + text_w, ty + text_h) for ty in rows]
        free = [
            p for p in places if not any(p[0] < b[2] and b[0] < p[2] and p[1] < b[3] and b[1] < p[3] for b in written)
        ]
        if free:
            written.append(free[0])
            draw.text((free[0][0] - left, free[0][1] - top), obj.category, fill=colour, font=font)
