"""Calibrate the simulator's instrument to a lab's from a few radiographs of known alloy and thickness.

The alloys differ in attenuation by a few percent, so the beam decides the answer: a tube 5 % high or 1 mm more
filtration takes the physics limit from 0.99 to 0.25-0.30 macro AP when the estimator is told the nominal
instrument. A lab has a reference specimen (a step wedge of 1050, say) of known thickness; its radiographs pin
the instrument down.

The fit maximises the physics-limit estimator's likelihood of the calibration images, each under its own alloy
with its thickness held near the measured value (``PhysicsLimitEstimator.labelled_fit``), over the instrument
keys (``kv_scale``: one factor on every channel's tube voltage; ``al_filter_mm``; ``scintillator_mm``;
``scatter_fraction_scale``; ``blur_sigma_px``; ``dose_scale``: the photon noise level) inside their search
ranges: a coarse grid over tube voltage and filtration (the two settings that trade off most), then Powell's
method in range-normalised coordinates from the best grid point.

Uncertainties are Laplace's: the inverse of the negative log-likelihood's Hessian (central differences) at the
optimum. A setting whose 95 % interval spans more than ``identifiable_share`` of its search range, or whose
curvature is not positive, is reported as not identifiable: the data cannot tell, and the fitted value is a
point on a ridge, not a measurement. Tube voltage, filtration and scintillator all harden the spectrum, so with
one reference alloy they can trade off against each other; thickness labels and several channels break much of
that tie.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument import TOLERANCE_KEYS as TOLERANCE_MINIMA
from alloy_mtl.physics.instrument_fit import TOLERANCE_KEYS, nominal_instrument
from alloy_mtl.physics.simulator import SimulationConfig

__all__ = [
    "CALIBRATION_KEYS",
    "DEFAULT_SEARCH_RANGES",
    "CalibratedSetting",
    "InstrumentCalibration",
    "calibrate_instrument",
    "resolve_search_ranges",
]

logger = logging.getLogger(__name__)

CALIBRATION_KEYS: tuple[str, ...] = TOLERANCE_KEYS
"""Every instrument key of the estimator's tolerances; ``fitted`` chooses among them."""
DEFAULT_SEARCH_RANGES: dict[str, tuple[float, float]] = {
    "kv_scale": (0.9, 1.1),
    "al_filter_mm": (0.0, 3.0),
    "scintillator_mm": (0.05, 0.6),
    "scatter_fraction_scale": (0.0, 5.0),
    "blur_sigma_px": (0.0, 2.0),
    "dose_scale": (0.1, 5.0),
}
_GRID_KEYS = ("kv_scale", "al_filter_mm")
_GRID_LEVELS = 5
_HESSIAN_STEP = 2e-3
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class CalibratedSetting:
    """One instrument setting's calibration.

    Attributes:
        key: the setting (``CALIBRATION_KEYS``).
        value: fitted value (the nominal one where the setting was not fitted).
        nominal: the nominal instrument's value.
        low, high: the Laplace 95 % interval (NaN where not identifiable or not fitted).
        sd: the Laplace standard deviation (NaN where not identifiable or not fitted).
        fitted: whether the setting was fitted.
        identifiable: whether the data pin it down (see the module docstring).
        at_bound: the fitted value sits on its search range's edge (widen the range).
        search_range: the range searched.
    """

    key: str
    value: float
    nominal: float
    low: float
    high: float
    sd: float
    fitted: bool
    identifiable: bool
    at_bound: bool
    search_range: tuple[float, float]


@dataclass(frozen=True)
class InstrumentCalibration:
    """Result of :func:`calibrate_instrument`.

    Attributes:
        instrument: the calibrated instrument, every key of ``CALIBRATION_KEYS`` (factors on the nominal config
            for ``*_scale``, absolute values otherwise).
        settings: per key, the fit and its uncertainty.
        log_likelihood: the calibration images' log-likelihood under the calibrated instrument.
        nominal_log_likelihood: ... under the nominal instrument.
        n_images: calibration images used.
        n_evaluations: likelihood evaluations the fit made.
        residual_nominal, residual_calibrated: mean standardised residual profile (C, W) under each instrument.
        rms_nominal, rms_calibrated: root mean square standardised residual under each instrument (1: the noise).
    """

    instrument: dict[str, float]
    settings: tuple[CalibratedSetting, ...]
    log_likelihood: float
    nominal_log_likelihood: float
    n_images: int
    n_evaluations: int
    residual_nominal: np.ndarray = field(repr=False)
    residual_calibrated: np.ndarray = field(repr=False)
    rms_nominal: float = math.nan
    rms_calibrated: float = math.nan

    @property
    def not_identifiable(self) -> list[str]:
        """Fitted settings the data cannot pin down."""
        return [s.key for s in self.settings if s.fitted and not s.identifiable]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (the ``calibrated_instrument`` dataset)."""
        return {
            "instrument": dict(self.instrument),
            "settings": {
                s.key: {
                    "value": s.value,
                    "nominal": s.nominal,
                    "low": _json_float(s.low),
                    "high": _json_float(s.high),
                    "sd": _json_float(s.sd),
                    "fitted": s.fitted,
                    "identifiable": s.identifiable,
                    "at_bound": s.at_bound,
                    "search_range": list(s.search_range),
                }
                for s in self.settings
            },
            "log_likelihood": self.log_likelihood,
            "nominal_log_likelihood": self.nominal_log_likelihood,
            "n_images": self.n_images,
            "n_evaluations": self.n_evaluations,
            "rms_residual": {"nominal": self.rms_nominal, "calibrated": self.rms_calibrated},
        }


def _json_float(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def resolve_search_ranges(
    fitted: Sequence[str], given: Mapping[str, Sequence[float]] | None
) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """The search ranges (defaults completed by the given ones) and every problem with them or ``fitted``."""
    problems = [f"{key!r} is not a calibrated setting" for key in fitted if key not in CALIBRATION_KEYS]
    ranges = dict(DEFAULT_SEARCH_RANGES)
    for key, bounds in (given or {}).items():
        if key not in CALIBRATION_KEYS:
            problems.append(f"search_ranges: {key!r} is not a calibrated setting")
            continue
        try:
            low, high = (float(v) for v in bounds)
        except (TypeError, ValueError):
            problems.append(f"search_ranges.{key}: expected [low, high], got {bounds!r}")
            continue
        relation, minimum = TOLERANCE_MINIMA[key]
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            problems.append(f"search_ranges.{key}: expected finite low < high, got [{low:g}, {high:g}]")
        elif low < minimum or (relation == ">" and low == minimum):
            problems.append(f"search_ranges.{key}: low must be {relation} {minimum:g}, got {low:g}")
        else:
            ranges[key] = (low, high)
    if not fitted:
        problems.append(f"fitted: name at least one setting of {CALIBRATION_KEYS}")
    return ranges, problems


def _input_problems(
    images: np.ndarray, alloys: Sequence[str], thickness_mm: np.ndarray, config: SimulationConfig
) -> list[str]:
    problems = []
    n_ch, size = len(config.kv), config.image_size
    if images.ndim != 4 or images.shape[1] != n_ch or images.shape[3] != size:
        problems.append(
            f"images: expected shape (N, {n_ch}, H, {size}) for kv={config.kv_label} and image_size={size}, "
            f"got {images.shape}"
        )
    if len(alloys) != images.shape[0] or thickness_mm.shape != (images.shape[0],):
        problems.append(
            f"labels: {len(alloys)} alloys and {thickness_mm.shape} thicknesses for {images.shape[0]} images"
        )
    bad = np.flatnonzero(~(np.isfinite(thickness_mm) & (thickness_mm > 0)))
    if bad.size:
        problems.append(
            f"thickness_mm: rows {bad.tolist()[:10]} are missing or not > 0 (the thickness is needed)"
        )
    if images.shape[0] < 1:
        problems.append("no calibration images")
    return problems


def calibrate_instrument(  # noqa: PLR0913 (the fit's knobs, each documented)
    images: np.ndarray,
    alloys: Sequence[str],
    thickness_mm: Sequence[float] | np.ndarray,
    config: SimulationConfig,
    *,
    fitted: Sequence[str] = CALIBRATION_KEYS,
    search_ranges: Mapping[str, Sequence[float]] | None = None,
    thickness_sd_mm: float = 0.02,
    identifiable_share: float = 0.5,
) -> InstrumentCalibration:
    """Fit the instrument that took ``images`` by maximum likelihood (see the module docstring).

    Args:
        images: (N, C, H, W) flat-field normalised radiographs (I/I0) of the calibration specimens.
        alloys: each image's alloy (one of ``ALLOYS``).
        thickness_mm: each image's measured centre thickness (mm).
        config: the nominal simulation config (channels, geometry, noise levels).
        fitted: settings to fit; the others stay nominal.
        search_ranges: per setting, the (low, high) range searched (defaults: ``DEFAULT_SEARCH_RANGES``).
        thickness_sd_mm: uncertainty of the measured thickness.
        identifiable_share: a fitted setting whose 95 % interval spans more than this share of its search
            range is reported as not identifiable.

    Raises:
        ValueError: naming every problem with the inputs or settings at once.
    """
    images = np.asarray(images, dtype=np.float32)
    thickness = np.asarray(thickness_mm, dtype=np.float64)
    alloys = [str(a) for a in alloys]
    ranges, problems = resolve_search_ranges(fitted, search_ranges)
    problems += _input_problems(images, alloys, thickness, config)
    if problems:
        raise ValueError("instrument calibration: " + "; ".join(problems))
    estimator = PhysicsLimitEstimator(config, alloys=sorted(set(alloys)))
    nominal = {key: nominal_instrument(config)[key] for key in CALIBRATION_KEYS}
    free = [key for key in CALIBRATION_KEYS if key in fitted]
    start = {
        key: min(max(nominal[key], ranges[key][0]), ranges[key][1]) if key in free else nominal[key]
        for key in nominal
    }
    cache: dict[tuple[float, ...], float] = {}

    def instrument_at(u: Sequence[float]) -> dict[str, float]:
        point = dict(start)
        for key, value in zip(free, u, strict=True):
            low, high = ranges[key]
            point[key] = low + float(np.clip(value, 0.0, 1.0)) * (high - low)
        return point

    def loss(u: Sequence[float]) -> float:
        key = tuple(round(float(np.clip(v, 0.0, 1.0)), 10) for v in u)
        if key not in cache:
            log_like, _ = estimator.labelled_fit(
                images, alloys, thickness, thickness_sd_mm, instrument_at(key)
            )
            cache[key] = -float(log_like.sum())
        return cache[key]

    def coordinates(instrument: Mapping[str, float]) -> np.ndarray:
        return np.array([(instrument[k] - ranges[k][0]) / (ranges[k][1] - ranges[k][0]) for k in free])

    u_start = coordinates(start)
    grid_axes = [
        np.linspace(0.0, 1.0, _GRID_LEVELS) if key in _GRID_KEYS else [u_start[i]]
        for i, key in enumerate(free)
    ]
    grid_start = min(itertools.product(*grid_axes), key=loss)
    result = minimize(
        loss,
        np.array(grid_start),
        method="Powell",
        bounds=[(0.0, 1.0)] * len(free),
        options={"xtol": 1e-3, "ftol": 1e-7},
    )
    best_u = np.clip(result.x, 0.0, 1.0) if result.fun < loss(u_start) else u_start
    covariance = _laplace_covariance(loss, best_u)
    instrument = instrument_at(best_u)
    settings = []
    for key in CALIBRATION_KEYS:
        low, high = ranges[key]
        if key not in free:
            settings.append(
                CalibratedSetting(
                    key,
                    nominal[key],
                    nominal[key],
                    math.nan,
                    math.nan,
                    math.nan,
                    False,
                    True,
                    False,
                    (low, high),
                )
            )
            continue
        i = free.index(key)
        variance = covariance[i, i]
        sd = math.sqrt(variance) * (high - low) if variance > 0 else math.nan
        identifiable = math.isfinite(sd) and 2 * _Z95 * sd <= identifiable_share * (high - low)
        value = instrument[key]
        settings.append(
            CalibratedSetting(
                key,
                value,
                nominal[key],
                value - _Z95 * sd if identifiable else math.nan,
                value + _Z95 * sd if identifiable else math.nan,
                sd if identifiable else math.nan,
                True,
                identifiable,
                bool(best_u[i] < 1e-3 or best_u[i] > 1 - 1e-3),
                (low, high),
            )
        )
    nominal_ll, residual_nominal = estimator.labelled_fit(images, alloys, thickness, thickness_sd_mm, nominal)
    fitted_ll, residual_fitted = estimator.labelled_fit(
        images, alloys, thickness, thickness_sd_mm, instrument
    )
    calibration = InstrumentCalibration(
        instrument=instrument,
        settings=tuple(settings),
        log_likelihood=float(fitted_ll.sum()),
        nominal_log_likelihood=float(nominal_ll.sum()),
        n_images=int(images.shape[0]),
        n_evaluations=len(cache),
        residual_nominal=residual_nominal.mean(axis=0),
        residual_calibrated=residual_fitted.mean(axis=0),
        rms_nominal=float(np.sqrt(np.mean(residual_nominal**2))),
        rms_calibrated=float(np.sqrt(np.mean(residual_fitted**2))),
    )
    logger.info(
        "calibrated instrument from %d image(s) in %d evaluations: %s; not identifiable: %s",
        calibration.n_images,
        calibration.n_evaluations,
        {k: round(v, 4) for k, v in instrument.items()},
        calibration.not_identifiable or "none",
    )
    return calibration


def _laplace_covariance(loss: Any, u: np.ndarray) -> np.ndarray:
    """Inverse Hessian of ``loss`` at ``u`` by central differences; where it is not positive definite, infinite
    variance for the settings along the directions without positive curvature (:func:`_flat_covariance`).

    Points are kept inside [0, 1]: at an edge the difference is taken one step inwards.
    """
    k = u.size
    h = _HESSIAN_STEP
    centre = np.clip(u, h, 1.0 - h)

    def at(*moves: tuple[int, float]) -> float:
        point = centre.copy()
        for i, step in moves:
            point[i] += step
        return loss(point)

    f0 = at()
    hessian = np.zeros((k, k))
    for i in range(k):
        hessian[i, i] = (at((i, h)) - 2 * f0 + at((i, -h))) / h**2
        for j in range(i):
            value = (
                at((i, h), (j, h)) - at((i, h), (j, -h)) - at((i, -h), (j, h)) + at((i, -h), (j, -h))
            ) / (4 * h * h)
            hessian[i, j] = hessian[j, i] = value
    try:
        np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return _flat_covariance(*np.linalg.eigh(hessian))
    return np.linalg.inv(hessian)


def _flat_covariance(eigval: np.ndarray, eigvec: np.ndarray) -> np.ndarray:
    """Covariance with infinite variance along the directions without positive curvature."""
    positive = eigval > 1e-9 * max(float(eigval.max()), 1e-300)
    covariance = (eigvec[:, positive] / eigval[positive]) @ eigvec[:, positive].T
    flat = (
        np.abs(eigvec[:, ~positive]).max(axis=1) > 1e-3 if (~positive).any() else np.zeros(eigval.size, bool)
    )
    covariance[flat, flat] = np.inf
    return covariance
