"""Game objects as a ground truth for saliency maps: boxes read from the console's RAM (:func:`detect`)."""

from fls.objects.detection import GameObject, categories, detect, games_with_decoder

__all__ = ["GameObject", "categories", "detect", "games_with_decoder"]
