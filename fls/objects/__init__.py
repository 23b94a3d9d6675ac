"""Game objects as a ground truth for saliency maps: boxes read from the console's RAM (:func:`detect`), the scores
of a map against them (:mod:`fls.objects.scores`) and :func:`score`, which runs ``evaluate.py task=objects``
(:func:`fls.api.score_objects`, imported on first use so that importing this package stays light)."""

from typing import Any

from fls.objects.detection import GameObject, categories, decoder, detect, games_with_decoder, object_at

__all__ = ["GameObject", "categories", "decoder", "detect", "games_with_decoder", "object_at", "score"]


def __getattr__(name: str) -> Any:
    if name == "score":
        from fls.api import score_objects

        return score_objects
    raise AttributeError(f"module 'fls.objects' has no attribute {name!r}")
