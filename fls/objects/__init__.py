"""Game objects as a ground truth for saliency maps: boxes read from the console's RAM (:func:`detect`)."""

from fls.objects.detection import GameObject, categories, decoder, detect, games_with_decoder, object_at

__all__ = ["GameObject", "categories", "decoder", "detect", "games_with_decoder", "object_at"]
