"""Metrics of saliency maps against the model itself: faithfulness (perturbation curves) and sanity checks."""
