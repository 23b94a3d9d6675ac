"""Saliency-vs-gaze metrics over numpy maps: NSS, KL divergence, CC, AUC-Judd and shuffled AUC.

Conventions shared by every function:

* ``saliency`` is a 2-D float map; ``fixations`` an integer count map of the same shape (a pixel fixated
  k times counts k times wherever fixations are weighted). Maps are compared at the raw frame resolution
  (210x160): upsample model maps first (:func:`fls.models.renderer.upsample_to_frame`).
* All arithmetic is float64. Sums are element-wise products summed by numpy, not BLAS ``dot`` (a threaded
  BLAS can spend milliseconds on a 33,600-element dot product when cores are shared).
* Gaussian blur (KL, CC): :func:`gaussian_blur`, a separable kernel ``exp(-d^2 / (2 sigma^2))`` truncated at
  ``3 sigma`` (``2 * ceil(3 sigma) + 1`` taps, 31 for sigma = 5) and normalised to sum 1, with zero padding
  outside the frame (mass blurred past the border is lost, as with MATLAB's ``imfilter``; the KL then
  renormalises).
* ROC AUCs are exact (Mann-Whitney): P(saliency at a positive > at a negative) + 1/2 P(equal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "KL_EPSILON",
    "FrameScorer",
    "auc_judd",
    "cc",
    "gaussian_blur",
    "gaussian_kernel",
    "kl_divergence",
    "nss",
    "roc_auc",
    "shuffled_auc",
]

KL_EPSILON = 1e-7
"""Regulariser of the KL divergence, as in common saliency benchmarks (see :func:`kl_divergence`)."""
GAUSSIAN_TRUNCATE = 3.0
"""The Gaussian kernel is cut at this many sigmas."""

Seed = int | Sequence[int] | np.random.SeedSequence


def gaussian_kernel(sigma: float) -> np.ndarray:
    """1-D Gaussian kernel ``exp(-x^2 / (2 sigma^2))`` for ``|x| <= ceil(3 sigma)``, normalised to sum 1."""
    radius = int(math.ceil(GAUSSIAN_TRUNCATE * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(x**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(image: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Blur a 2-D map with the separable Gaussian of :func:`gaussian_kernel`, zero padding outside (float64).

    ``sigma <= 0`` returns the map unchanged (as float64).
    """
    image = np.asarray(image, np.float64)
    if sigma <= 0:
        return image.copy()
    kernel = gaussian_kernel(sigma)
    # sepFilter2D correlates; the kernel is symmetric, so this is the convolution.
    return cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_CONSTANT)


def _check(saliency: np.ndarray, fixations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a saliency/fixation pair and return them as float64 / int64."""
    saliency = np.asarray(saliency, np.float64)
    counts = np.asarray(fixations)
    if saliency.ndim != 2 or saliency.shape != counts.shape:
        raise ValueError(f"saliency {saliency.shape} and fixations {counts.shape} must be 2-D maps of one shape")
    if not np.isfinite(saliency).all():
        raise ValueError("saliency map has non-finite values")
    counts = _counts(counts, "fixations")
    if counts.sum() == 0:
        raise ValueError("no fixations: the metrics are undefined (skip the frame)")
    return saliency, counts


def _counts(counts: np.ndarray, name: str) -> np.ndarray:
    if counts.dtype.kind == "f":
        if not np.array_equal(counts, np.round(counts)):
            raise ValueError(f"{name} must be integer counts")
    elif counts.dtype.kind not in "iub":
        raise ValueError(f"{name} must be integer counts, got dtype {counts.dtype}")
    counts = counts.astype(np.int64)
    if (counts < 0).any():
        raise ValueError(f"{name} must be non-negative counts")
    return counts


def nss(saliency: np.ndarray, fixations: np.ndarray) -> float:
    """Normalised scanpath saliency: the z-scored map averaged over fixations, weighted by their counts.

    z = (s - mean(s)) / std(s) with the population std (ddof = 0). A constant map carries no information
    and scores 0 (the z-score is 0/0 there).
    """
    saliency, counts = _check(saliency, fixations)
    return _nss(saliency, counts)


def _nss(saliency: np.ndarray, counts: np.ndarray) -> float:
    std = saliency.std()
    if std == 0:
        return 0.0
    fixated = np.flatnonzero(counts)
    weights = counts.ravel()[fixated]
    z = (saliency.ravel()[fixated] - saliency.mean()) / std
    return float((z * weights).sum() / weights.sum())


def _fixation_density(counts: np.ndarray, sigma: float) -> np.ndarray:
    """The fixation map blurred by :func:`gaussian_blur` and normalised to sum 1."""
    density = gaussian_blur(counts, sigma)
    return density / density.sum()


def kl_divergence(saliency: np.ndarray, fixations: np.ndarray, sigma: float = 5.0, eps: float = KL_EPSILON) -> float:
    """KL(P_fix || Q_sal) in nats.

    P is the fixation map blurred by a Gaussian of ``sigma`` px (:func:`gaussian_blur`: truncated at 3 sigma,
    zero padding) and normalised to sum 1; Q is the saliency map, negative values clipped to 0 (a distribution
    cannot be negative), normalised to sum 1 (an all-zero map stays 0).

    ``KL = sum_{P > 0} P * log(eps + P / (Q + eps))`` with ``eps = 1e-7`` by default, the regularised form of
    common saliency benchmarks: finite even where Q = 0 under P > 0 (maps with exact zeros, e.g. Grad-CAM after
    its ReLU, would otherwise lose most frames). It reads slightly lower than the exact KL: identical P and Q
    give about ``-eps * |support of P|`` (~ -1e-4), and on 210x160 maps the gap measured -0.003 for the centre
    prior and -0.02 for a peaky map. ``eps = 0`` gives the exact KL, ``inf`` where Q = 0 under P > 0; the
    evaluation leaves infinite values out of its means, which is the reference's rule of dropping such frames.
    """
    saliency, counts = _check(saliency, fixations)
    return _kl(saliency, _fixation_density(counts, sigma), eps)


def _kl(saliency: np.ndarray, density: np.ndarray, eps: float) -> float:
    q = np.clip(saliency, 0.0, None)
    total = q.sum()
    q = q / total if total > 0 else q
    support = density > 0
    p, q = density[support], q[support]
    if eps == 0:
        if (q == 0).any():
            return math.inf
        return float(np.sum(p * np.log(p / q)))
    return float(np.sum(p * np.log(eps + p / (q + eps))))


def cc(saliency: np.ndarray, fixations: np.ndarray, sigma: float = 5.0) -> float:
    """Pearson correlation between the saliency map and the fixation map blurred as in :func:`kl_divergence`.

    A constant saliency map scores 0 (the correlation is 0/0 there).
    """
    saliency, counts = _check(saliency, fixations)
    return _cc(saliency, gaussian_blur(counts, sigma))


def _cc(saliency: np.ndarray, blurred: np.ndarray) -> float:
    s = saliency - saliency.mean()
    b = blurred - blurred.mean()
    denominator = math.sqrt(float((s * s).sum()) * float((b * b).sum()))
    return 0.0 if denominator == 0 else float((s * b).sum() / denominator)


def roc_auc(
    positives: np.ndarray,
    negatives: np.ndarray,
    positive_weights: np.ndarray | None = None,
    negative_weights: np.ndarray | None = None,
) -> float:
    """Exact ROC AUC = P(pos > neg) + 1/2 P(pos == neg), each value counted its weight times (default 1)."""
    positives = np.asarray(positives, np.float64).ravel()
    negatives = np.asarray(negatives, np.float64).ravel()
    pw = np.ones_like(positives) if positive_weights is None else np.asarray(positive_weights, np.float64).ravel()
    nw = np.ones_like(negatives) if negative_weights is None else np.asarray(negative_weights, np.float64).ravel()
    if pw.sum() <= 0 or nw.sum() <= 0:
        raise ValueError("ROC AUC needs at least one positive and one negative")
    order = np.argsort(positives, kind="stable")
    sorted_values = positives[order]
    cumulative = np.concatenate([[0.0], np.cumsum(pw[order])])
    below = cumulative[np.searchsorted(sorted_values, negatives, side="left")]
    below_or_equal = cumulative[np.searchsorted(sorted_values, negatives, side="right")]
    # For each negative: positives above it count 1, positives tied with it 1/2.
    wins = (cumulative[-1] - below_or_equal) + 0.5 * (below_or_equal - below)
    return float((nw * wins).sum() / (cumulative[-1] * nw.sum()))


def auc_judd(saliency: np.ndarray, fixations: np.ndarray) -> float:
    """AUC-Judd: positives = saliency at fixated pixels (with multiplicity), negatives = every non-fixated pixel.

    Computed exactly (ties count 1/2) rather than by Judd's sweep of thresholds at the fixated values; the
    two differ only in how ties are handled.
    """
    saliency, counts = _check(saliency, fixations)
    flat, weights = saliency.ravel(), counts.ravel()
    fixated = weights > 0
    if fixated.all():
        raise ValueError("every pixel is fixated: AUC-Judd has no negatives")
    return roc_auc(flat[fixated], flat[~fixated], positive_weights=weights[fixated])


def _min_max(saliency: np.ndarray) -> np.ndarray:
    low, high = saliency.min(), saliency.max()
    return np.zeros_like(saliency) if high == low else (saliency - low) / (high - low)


def shuffled_auc(
    saliency: np.ndarray,
    fixations: np.ndarray,
    other_fixations: np.ndarray,
    splits: int = 100,
    seed: Seed = 0,
) -> float:
    """Shuffled AUC: fixations of this frame against fixations of other frames, which cancels the centre bias.

    The map is min-max normalised (a monotone map, so it changes no ranking; a constant map becomes 0).
    Positives: the saliency at the fixations, with multiplicity (n of them). For each of ``splits`` splits,
    n negatives are drawn with replacement from the pixel locations of ``other_fixations`` (the summed
    fixation maps of other frames of the trial), each location with probability proportional to its count;
    the split's AUC is exact (ties 1/2) and the result is the mean over splits. All splits have n negatives,
    so that mean equals the AUC over the pooled ``splits * n`` draws; the draws are therefore made at once as
    one multinomial over the locations (same distribution, O(locations) instead of O(draws)). ``seed`` seeds
    ``numpy.random.default_rng``: the same seed gives the same negatives for every saliency map.
    """
    saliency, counts = _check(saliency, fixations)
    others = _counts(np.asarray(other_fixations), "other_fixations")
    if others.shape != counts.shape:
        raise ValueError(f"other_fixations {others.shape} must have the shape of fixations {counts.shape}")
    return FrameScorer(counts, others, splits=splits, seed=seed).shuffled_auc(saliency)


class FrameScorer:
    """Scores many saliency maps against one frame's fixations, doing the map-independent work once.

    Precomputes the blurred fixation map (KL, CC), the fixated pixels (NSS, AUCs) and the shuffled-AUC
    negatives. The public metric functions give the same numbers; this only saves time when several methods
    are scored on the same frame.
    """

    def __init__(
        self,
        fixations: np.ndarray,
        other_fixations: np.ndarray | None = None,
        *,
        sigma: float = 5.0,
        splits: int = 100,
        seed: Seed = 0,
        eps: float = KL_EPSILON,
    ) -> None:
        """Prepare scoring against ``fixations``; ``other_fixations`` None disables the shuffled AUC (NaN)."""
        self.counts = _counts(np.asarray(fixations), "fixations")
        self.total = int(self.counts.sum())
        if self.total == 0:
            raise ValueError("no fixations: the metrics are undefined (skip the frame)")
        if splits < 1:
            raise ValueError(f"splits must be >= 1, got {splits}")
        self.eps = eps
        self.blurred = gaussian_blur(self.counts, sigma)
        self.density = self.blurred / self.blurred.sum()
        self.fixated = np.flatnonzero(self.counts)
        self.fixated_weights = self.counts.ravel()[self.fixated]
        self.negatives: np.ndarray | None = None
        self.negative_draws: np.ndarray | None = None
        if other_fixations is not None:
            others = _counts(np.asarray(other_fixations), "other_fixations").ravel()
            locations = np.flatnonzero(others)
            if len(locations) == 0:
                raise ValueError("other_fixations has no fixation to draw shuffled-AUC negatives from")
            weights = others[locations].astype(np.float64)
            rng = np.random.default_rng(seed)
            self.negatives = locations
            self.negative_draws = rng.multinomial(splits * self.total, weights / weights.sum())

    def nss(self, saliency: np.ndarray) -> float:
        """See :func:`nss`."""
        return _nss(self._map(saliency), self.counts)

    def kl_divergence(self, saliency: np.ndarray) -> float:
        """See :func:`kl_divergence`."""
        return _kl(self._map(saliency), self.density, self.eps)

    def cc(self, saliency: np.ndarray) -> float:
        """See :func:`cc`."""
        return _cc(self._map(saliency), self.blurred)

    def shuffled_auc(self, saliency: np.ndarray) -> float:
        """See :func:`shuffled_auc`; NaN when built without ``other_fixations``."""
        return self._shuffled_auc(self._map(saliency))

    def _shuffled_auc(self, saliency: np.ndarray) -> float:
        if self.negatives is None or self.negative_draws is None:
            return math.nan
        flat = _min_max(saliency).ravel()
        drawn = self.negative_draws > 0
        return roc_auc(
            flat[self.fixated],
            flat[self.negatives[drawn]],
            positive_weights=self.fixated_weights,
            negative_weights=self.negative_draws[drawn],
        )

    def score(self, saliency: np.ndarray) -> dict[str, float]:
        """All four metrics of the evaluation: ``{"nss", "kl", "cc", "sauc"}``."""
        saliency = self._map(saliency)
        return {
            "nss": _nss(saliency, self.counts),
            "kl": _kl(saliency, self.density, self.eps),
            "cc": _cc(saliency, self.blurred),
            "sauc": self._shuffled_auc(saliency),
        }

    def _map(self, saliency: np.ndarray) -> np.ndarray:
        saliency = np.asarray(saliency, np.float64)
        if saliency.shape != self.counts.shape:
            raise ValueError(f"saliency {saliency.shape} must have the shape of fixations {self.counts.shape}")
        if not np.isfinite(saliency).all():
            raise ValueError("saliency map has non-finite values")
        return saliency
