"""Game objects as a ground truth for saliency maps: boxes read from the console's RAM (:func:`detect`), the scores
of a map against them (:mod:`fls.objects.scores`) and :func:`score`, which runs ``evaluate.py task=objects``
(:func:`fls.api.score_objects`; fls.api imports only numpy at first, so importing this package stays light)."""

from fls.api import score_objects as score
from fls.objects.detection import GameObject, categories, decoder, detect, games_with_decoder, object_at

__all__ = ["GameObject", "categories", "decoder", "detect", "games_with_decoder", "object_at", "score"]
