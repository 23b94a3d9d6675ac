"""fls: PPO agents for Atari with built-in attention (Free-Lunch Saliency) and the tools to study them."""

__version__ = "0.1.0"
