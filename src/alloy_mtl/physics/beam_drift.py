"""Has the beam moved? A likelihood-ratio test of a batch of radiographs against the instrument a model was trained for.

The physics-limit estimator fits the one instrument the batch shares (tube voltage, filtration, scintillator,
scatter; alloys marginalised, labels unused) inside ``search_ranges`` and compares the batch's class-marginal
log-likelihood there with its log-likelihood under the reference instrument:

    statistic = 2 * (log L(batch | fitted) - log L(batch | reference))

Under "no drift" the statistic is asymptotically chi-square with one degree of freedom per fitted setting
(Wilks), so the alarm threshold is that distribution's ``1 - alpha`` quantile. The fit is a compass search
whose smallest step is 1/16 of each range, so it only leaves the reference for a clear gain and the
statistic is usually exactly 0 without drift; measured false alarms and detections are in
``benchmarks/bench_drift.py``. Because the alloys are marginalised, a batch of one alloy, or any alloy mix,
is not drift; another material is (the unknown-material detector answers for those images).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import chi2

from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument_fit import FITTED_KEYS, nominal_instrument, parse_tolerances
from alloy_mtl.physics.simulator import SimulationConfig

__all__ = ["DEFAULT_DRIFT_RANGES", "BeamDrift", "beam_drift", "search_range_problems"]

logger = logging.getLogger(__name__)

DEFAULT_DRIFT_RANGES: dict[str, tuple[float, float]] = {
    "kv_scale": (0.95, 1.05),
    "al_filter_mm": (0.0, 3.0),
    "scintillator_mm": (0.1, 0.4),
    "scatter_fraction_scale": (0.33, 3.0),
}
"""Where the fit looks for the batch's instrument, about the reference (``kv_scale`` and
``scatter_fraction_scale`` are factors on the reference's values, the others absolute): kV +-5 %, filtration
0-3 mm, CsI 0.1-0.4 mm, scatter /3..x3 (the range of the calibration issue's synthetic labs)."""


@dataclass(frozen=True)
class BeamDrift:
    """The likelihood-ratio test of one batch.

    Attributes:
        statistic: 2 x (log-likelihood at the fitted instrument - at the reference), >= 0.
        threshold: the chi-square ``1 - alpha`` quantile with ``df`` degrees of freedom.
        df: the number of fitted settings.
        alpha: the false-alarm rate the threshold is set for.
        n_images: images in the batch.
        fitted: the batch's fitted instrument (tolerance keys, kV as a factor on the reference's).
        reference: the reference instrument in the same keys.
    """

    statistic: float
    threshold: float
    df: int
    alpha: float
    n_images: int
    fitted: dict[str, float] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)

    @property
    def alarm(self) -> bool:
        """The batch's instrument differs from the reference beyond what noise explains."""
        return self.statistic > self.threshold

    def moved(self) -> dict[str, tuple[float, float]]:
        """``{setting: (reference, fitted)}`` for each setting the fit moved."""
        return {
            key: (self.reference[key], value)
            for key, value in self.fitted.items()
            if key in self.reference and not np.isclose(value, self.reference[key])
        }


def search_range_problems(ranges: Mapping[str, Sequence[float]]) -> list[str]:
    """What is wrong with search ranges before any reference is known: a key the fit does not search (it fits
    ``FITTED_KEYS``), a low end above the high end."""
    problems = [
        f"{key}: not a fitted setting (fitted: {FITTED_KEYS})" for key in ranges if key not in FITTED_KEYS
    ]
    problems += [f"{key}: low {low} > high {high}" for key, (low, high) in ranges.items() if low > high]
    return problems


def beam_drift(
    images: np.ndarray,
    reference: SimulationConfig,
    *,
    alpha: float = 0.001,
    search_ranges: Mapping[str, Sequence[float]] | None = None,
    n_fit_images: int = 128,
) -> BeamDrift:
    """Test whether ``images`` (N, C, H, W flat-field normalised I/I0, one batch from one instrument) were taken by
    the ``reference`` instrument's beam.

    Args:
        images: the batch (C = len(reference.kv), W = reference.image_size).
        reference: the instrument the model was trained for (nominal or calibrated), as a simulator config.
        alpha: the false-alarm rate, in (0, 1).
        search_ranges: where the fit looks (keys of ``DEFAULT_DRIFT_RANGES``; default those); each range must
            contain the reference's value.
        n_fit_images: images of the batch (evenly spaced) the fit uses; the statistic uses all of them.

    Raises:
        ValueError: alpha outside (0, 1), an empty batch, an unknown or non-fitted key, or a range that does
            not contain the reference's value.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"beam_drift: alpha must be in (0, 1), got {alpha!r}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"beam_drift: expected a non-empty (N, C, H, W) batch, got shape {images.shape}")
    ranges = parse_tolerances(dict(DEFAULT_DRIFT_RANGES if search_ranges is None else search_ranges))
    start = nominal_instrument(reference)
    problems = search_range_problems(ranges)
    problems += [
        f"{key}: range {low}..{high} does not contain the reference's {start[key]}"
        for key, (low, high) in ranges.items()
        if key in start and not low <= start[key] <= high
    ]
    if problems:
        raise ValueError("beam_drift search_ranges: " + "; ".join(problems))
    estimator = PhysicsLimitEstimator(reference, tolerances=ranges, mode="joint", n_fit_images=n_fit_images)
    at_reference = estimator.batch_log_likelihood(images, start)
    fitted = estimator.fit_instrument(images)
    at_fit = estimator.batch_log_likelihood(images, fitted)
    statistic = max(0.0, 2.0 * (at_fit - at_reference))
    df = sum(1 for low, high in ranges.values() if high > low)
    result = BeamDrift(
        statistic=statistic,
        threshold=float(chi2.ppf(1.0 - alpha, df)),
        df=df,
        alpha=alpha,
        n_images=int(images.shape[0]),
        fitted={key: float(fitted[key]) for key in ranges},
        reference={key: float(start[key]) for key in ranges},
    )
    logger.info(
        "beam drift of %d image(s): statistic %.1f (threshold %.1f)%s",
        result.n_images,
        statistic,
        result.threshold,
        f", moved {result.moved()}" if result.alarm else "",
    )
    return result
