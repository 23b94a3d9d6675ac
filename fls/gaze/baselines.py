"""Reference saliency maps that ignore the frame: a centre-bias Gaussian and uniform noise.

Both are made at the network's 84x84 input resolution and scored through the same upsampling and metrics
as a model's maps, so any difference in the table comes from the maps alone. The 84x84 input covers the
whole 210x160 frame, so after upsampling the centre prior is a Gaussian of ``sigma_fraction`` of the frame
height vertically and of its width horizontally (52.5 px and 40 px at the default 0.25).
"""

from __future__ import annotations

import numpy as np

from fls.envs.preprocess import FRAME_SIZE

__all__ = [
    "BASELINES",
    "CENTER_PRIOR",
    "CENTER_SIGMA_FRACTION",
    "RANDOM",
    "BaselineMaps",
    "center_prior",
    "uniform_random",
]

CENTER_PRIOR = "center_prior"
RANDOM = "random"
BASELINES = (CENTER_PRIOR, RANDOM)
"""Names under which the evaluation reports the baselines."""
CENTER_SIGMA_FRACTION = 0.25
"""Standard deviation of the centre prior, as a fraction of each side of the map."""


def center_prior(
    size: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE), sigma_fraction: float = CENTER_SIGMA_FRACTION
) -> np.ndarray:
    """A (H, W) float64 Gaussian bump at the map centre, peak 1, per-axis sigma = ``sigma_fraction`` x side.

    The centre is at pixel ``((H - 1) / 2, (W - 1) / 2)`` (pixel centres), so the map is symmetric.
    """
    height, width = size
    y = (np.arange(height, dtype=np.float64) - (height - 1) / 2) / (sigma_fraction * height)
    x = (np.arange(width, dtype=np.float64) - (width - 1) / 2) / (sigma_fraction * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


def uniform_random(
    batch: int, rng: np.random.Generator, size: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE)
) -> np.ndarray:
    """(batch, H, W) float64 maps of independent uniform [0, 1) values drawn from ``rng``."""
    return rng.random((batch, *size))


class BaselineMaps:
    """The baselines for a batch of observations: ``{"center_prior": ..., "random": ...}``, each (B, 84, 84).

    The random maps come from a generator seeded once, so a trial replayed in any batch size gets the same
    maps (the generator fills its output in order).
    """

    def __init__(self, seed: int | list[int] = 0, size: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE)) -> None:
        """Seed the random maps."""
        self.rng = np.random.default_rng(seed)
        self.size = size
        self.center = center_prior(size)

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Maps for ``obs`` (B, 4, 84, 84); only the batch size is used."""
        batch = len(obs)
        return {
            CENTER_PRIOR: np.broadcast_to(self.center, (batch, *self.size)),
            RANDOM: uniform_random(batch, self.rng, self.size),
        }
