"""Is this the same detector? The fixed pattern a batch of radiographs shares, compared with a reference's.

A detector unit multiplies every image by its own per-pixel gain pattern; flat-field correction removes most
of it, never all. In log space a radiograph of a wedge (or of any object whose transmission is a product of a
row and a column profile, heel and drift included) is ``log I = row(h) + column(w) + log gain(h, w) + noise``,
so removing each image's row and column means (double centring) leaves the gain pattern and noise. Averaged
over a batch, the noise shrinks as 1/sqrt(n) and the pattern stays: two batches from one unit correlate
pixel by pixel, two units do not (correlation ~ N(0, 1/pixels)).

The expected correlation of an n-image batch from the reference's unit follows from the pattern's variance S
and the per-image noise variance sigma^2, both measured on the reference (``N`` images):
``rho0(n) = S / sqrt((S + sigma^2 / n) (S + sigma^2 / N))``. The alarm fires below ``rho0 / 2``; the test is
informative only where ``rho0 / 2`` lies 3 sd above what two unrelated units give (``3 / sqrt(pixels)``), so
both error rates stay below about 0.2 %. Pixels that read 0 or less anywhere (dead) are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PatternCheck", "PatternReference", "fit_pattern_reference", "pattern_check", "pattern_of"]

_Z = 3.0
_FILL_ITERATIONS = 10


def _residuals(images: np.ndarray) -> np.ndarray:
    """Double-centred log images (N, C, H, W) float64, NaN where a pixel reads <= 0 or is not finite."""
    x = np.asarray(images, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(np.isfinite(x) & (x > 0), np.log(np.where(x > 0, x, 1.0)), np.nan)
    missing = np.isnan(logs)
    filled = np.where(missing, np.nanmean(logs, axis=(2, 3), keepdims=True), logs)
    for _ in range(_FILL_ITERATIONS):  # a dead pixel takes its row + column value, so the means stay unbiased
        fitted = filled.mean(axis=3, keepdims=True) + filled.mean(axis=2, keepdims=True)
        fitted -= filled.mean(axis=(2, 3), keepdims=True)
        filled = np.where(missing, fitted, logs)
    residuals = filled - filled.mean(axis=3, keepdims=True) - filled.mean(axis=2, keepdims=True)
    return np.where(missing, np.nan, residuals + filled.mean(axis=(2, 3), keepdims=True))


def _pattern(residuals: np.ndarray) -> np.ndarray:
    """The mean of double-centred residuals (N, C, H, W) over the images; NaN at pixels dead in any image."""
    return np.where(np.isfinite(residuals).all(axis=0), residuals.mean(axis=0), np.nan)


def pattern_of(images: np.ndarray) -> np.ndarray:
    """The fixed pattern (C, H, W) a batch (N, C, H, W) of I/I0 images shares; NaN at pixels dead in any image."""
    return _pattern(_residuals(images))


@dataclass(frozen=True)
class PatternReference:
    """The reference detector's pattern and the two variances that set a batch's expected similarity.

    Attributes:
        pattern: (C, H, W) mean double-centred log image of the reference (NaN: dead pixels).
        signal_var: S, the variance of the detector's pattern over pixels (noise removed).
        noise_var: sigma^2, the per-image, per-pixel variance about the pattern.
        n_images: N, the reference's image count.
    """

    pattern: np.ndarray
    signal_var: float
    noise_var: float
    n_images: int

    def expected_similarity(self, n: int) -> float:
        """rho0(n): the correlation an ``n``-image batch from the reference's detector is expected to have."""
        s, noise = self.signal_var, self.noise_var
        if s <= 0:
            return 0.0
        return s / math.sqrt((s + noise / n) * (s + noise / self.n_images))


def fit_pattern_reference(images: np.ndarray) -> PatternReference:
    """The :class:`PatternReference` of reference images (N >= 2, N, C, H, W) from the detector in operation.

    Raises:
        ValueError: fewer than 2 images, or not an (N, C, H, W) array.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(
            f"pattern reference: expected at least 2 images (N, C, H, W), got shape {images.shape}"
        )
    residuals = _residuals(images)
    pattern = _pattern(residuals)
    live = np.isfinite(pattern)
    n = images.shape[0]
    noise_var = float(np.var(residuals[:, live], axis=0, ddof=1).mean())
    signal_var = max(0.0, float(np.var(pattern[live])) - noise_var / n)
    return PatternReference(pattern=pattern, signal_var=signal_var, noise_var=noise_var, n_images=int(n))


@dataclass(frozen=True)
class PatternCheck:
    """One batch against the reference detector.

    Attributes:
        similarity: pixel correlation of the batch's pattern with the reference's.
        expected: rho0(n), the similarity a batch of this size from the reference's detector has.
        threshold: the alarm's bound (expected / 2).
        informative: whether the test can tell detector units apart at this batch size (else never alarms).
        n_images: images in the batch.
    """

    similarity: float
    expected: float
    threshold: float
    informative: bool
    n_images: int

    @property
    def alarm(self) -> bool:
        """The batch does not carry the reference detector's pattern."""
        return self.informative and not self.similarity >= self.threshold


def pattern_check(reference: PatternReference, images: np.ndarray) -> PatternCheck:
    """Compare a batch (N, C, H, W) with ``reference``.

    Raises:
        ValueError: the batch's channels or size differ from the reference's.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != reference.pattern.shape or images.shape[0] == 0:
        raise ValueError(
            f"pattern check: expected a batch of shape (N, {', '.join(map(str, reference.pattern.shape))}), "
            f"got {images.shape}"
        )
    batch = pattern_of(images)
    both = np.isfinite(batch) & np.isfinite(reference.pattern)
    similarity = (
        float(np.corrcoef(batch[both], reference.pattern[both])[0, 1]) if both.sum() > 2 else math.nan
    )
    n = int(images.shape[0])
    expected = reference.expected_similarity(n)
    threshold = expected / 2.0
    informative = threshold >= _Z / math.sqrt(max(int(both.sum()), 1))
    return PatternCheck(
        similarity=similarity, expected=expected, threshold=threshold, informative=informative, n_images=n
    )
