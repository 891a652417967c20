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
method in range-normalised coordinates from the best grid point. Optionally each channel's tube voltage is then
fitted on its own from that optimum, and kept where a likelihood-ratio test rejects the one-factor model (a tube
whose voltages are not in their nominal ratios). Settings measured otherwise (the flat fields' blur and noise
level, :mod:`alloy_mtl.physics.flat_field_noise`) are held, not fitted.

Uncertainties are Laplace's: the inverse of the negative log-likelihood's Hessian (central differences) at the
optimum. A setting whose 95 % interval spans more than ``identifiable_share`` of its search range, or whose
curvature is not positive, is reported as not identifiable: the data cannot tell, and the fitted value is a
point on a ridge, not a measurement. Tube voltage, filtration and scintillator all harden the spectrum, so with
one reference alloy they can trade off against each other; thickness labels and several channels break much of
that tie.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.stats import chi2

from alloy_mtl.physics.calibration_fit import (
    CALIBRATION_KEYS,
    CalibratedSetting,
    FitSpace,
    laplace_covariance,
    minimise,
)
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument import TOLERANCE_KEYS as TOLERANCE_MINIMA
from alloy_mtl.physics.instrument_fit import nominal_instrument
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

DEFAULT_SEARCH_RANGES: dict[str, tuple[float, float]] = {
    "kv_scale": (0.9, 1.1),
    "al_filter_mm": (0.0, 3.0),
    "scintillator_mm": (0.05, 0.6),
    "scatter_fraction_scale": (0.0, 5.0),
    "blur_sigma_px": (0.0, 2.0),
    "dose_scale": (0.1, 5.0),
}
_GRID_LEVELS = 5
CHANNEL_KV_ALPHA = 0.01
"""``per_channel_kv: auto`` keeps one tube-voltage factor on every channel unless the likelihood-ratio test
rejects it at this level."""


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
        channel_kv_scale: each channel's tube-voltage factor relative to ``kv_scale`` (None: one factor on all).
        channel_settings: each channel's calibrated tube voltage (kV) with its interval (with ``channel_kv_scale``).
        channel_kv_test: the likelihood-ratio test of one factor against one per channel (None: not tested).
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
    channel_kv_scale: tuple[float, ...] | None = None
    channel_settings: tuple[CalibratedSetting, ...] = ()
    channel_kv_test: dict[str, Any] | None = None

    @property
    def not_identifiable(self) -> list[str]:
        """Fitted settings (and channel tube voltages) the data cannot pin down."""
        return [s.key for s in (*self.settings, *self.channel_settings) if s.fitted and not s.identifiable]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (the ``calibrated_instrument`` dataset); ``channel_kv_scale`` (each channel's
        tube-voltage factor on top of ``kv_scale``) and ``channel_kv`` (their settings, in kV) only when each
        channel was fitted on its own."""
        record: dict[str, Any] = {
            "instrument": dict(self.instrument),
            "settings": {s.key: _setting_record(s) for s in self.settings},
            "log_likelihood": self.log_likelihood,
            "nominal_log_likelihood": self.nominal_log_likelihood,
            "n_images": self.n_images,
            "n_evaluations": self.n_evaluations,
            "rms_residual": {"nominal": self.rms_nominal, "calibrated": self.rms_calibrated},
        }
        if self.channel_kv_test is not None:
            record["channel_kv_test"] = dict(self.channel_kv_test)
        if self.channel_kv_scale is not None:
            record["channel_kv_scale"] = list(self.channel_kv_scale)
            record["channel_kv"] = {s.key: _setting_record(s) for s in self.channel_settings}
        return record


def _setting_record(s: CalibratedSetting) -> dict[str, Any]:
    return {
        "value": s.value,
        "nominal": s.nominal,
        "low": _json_float(s.low),
        "high": _json_float(s.high),
        "sd": _json_float(s.sd),
        "fitted": s.fitted,
        "given": s.given,
        "identifiable": s.identifiable,
        "at_bound": s.at_bound,
        "search_range": list(s.search_range),
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
    per_channel_kv: bool | Literal["auto"] = False,
    known: Mapping[str, float] | None = None,
    noise_variance: Sequence[float] | None = None,
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
        per_channel_kv: also fit every channel's tube voltage on its own (``kv_scale``'s search range each),
            from the one-factor fit: ``True`` keeps that fit, ``"auto"`` only where a likelihood-ratio test
            says the channels' voltages are not in their nominal ratios (``CHANNEL_KV_ALPHA``; the test is in
            ``channel_kv_test`` either way). Kept, ``kv_scale`` is the channels' geometric mean and
            ``channel_kv_scale`` each channel's factor relative to it. Needs ``kv_scale`` among ``fitted`` and
            two channels or more.
        known: settings measured otherwise (the flat fields' blur), held at these values and not fitted.
        noise_variance: per channel, the open beam's relative photon-noise variance measured on flat fields
            (``FlatFieldNoise.noise_variance``): ``dose_scale`` is then not fitted but follows every instrument
            tried (``flat_field_noise.dose_scale_for``).

    Raises:
        ValueError: naming every problem with the inputs or settings at once.
    """
    images = np.asarray(images, dtype=np.float32)
    thickness = np.asarray(thickness_mm, dtype=np.float64)
    alloys = [str(a) for a in alloys]
    held = {key: float(value) for key, value in (known or {}).items()}
    if noise_variance is not None:
        held["dose_scale"] = math.nan  # follows the instrument (_Space.point)
    ranges, problems = resolve_search_ranges(fitted, search_ranges)
    fitted = [key for key in fitted if key not in held]
    problems += _input_problems(images, alloys, thickness, config)
    problems += _setting_problems(config, fitted, held, per_channel_kv, noise_variance)
    if problems:
        raise ValueError("instrument calibration: " + "; ".join(problems))
    measured = None if noise_variance is None else tuple(float(v) for v in noise_variance)
    estimator = PhysicsLimitEstimator(config, alloys=sorted(set(alloys)))
    nominal = {key: nominal_instrument(config)[key] for key in CALIBRATION_KEYS}
    cache: dict[tuple[bool, tuple[float, ...]], float] = {}

    def objective(space: FitSpace) -> Any:
        def loss(u: Sequence[float]) -> float:
            key = (space.per_channel, tuple(round(float(np.clip(v, 0.0, 1.0)), 10) for v in u))
            if key not in cache:
                instrument, channel_scale = space.point(key[1])
                log_like, _ = estimator.labelled_fit(
                    images, alloys, thickness, thickness_sd_mm, instrument, channel_kv_scale=channel_scale
                )
                cache[key] = -float(log_like.sum())
            return cache[key]

        return loss

    space = FitSpace.build(config, fitted, ranges, nominal, held, per_channel=False, noise_variance=measured)
    loss = objective(space)
    best_u = minimise(loss, min(space.grid(_GRID_LEVELS), key=loss), space.start_coordinates())
    channel_test: dict[str, Any] | None = None
    if per_channel_kv:
        channel_space = FitSpace.build(
            config, fitted, ranges, nominal, held, per_channel=True, noise_variance=measured
        )
        channel_loss = objective(channel_space)
        channel_start = channel_space.from_one_factor(space, best_u)
        channel_u = minimise(channel_loss, channel_start, channel_start)
        channel_test = _channel_kv_test(loss(best_u), channel_loss(channel_u), len(config.kv))
        if per_channel_kv is True or channel_test["channels_differ"]:
            space, loss, best_u = channel_space, channel_loss, channel_u
        channel_test["per_channel"] = space.per_channel
    covariance = laplace_covariance(loss, best_u)
    instrument, channel_scale = space.point(best_u)
    settings, channel_settings = space.settings(best_u, covariance, identifiable_share)
    if channel_scale is not None:
        instrument["kv_scale"] = float(np.exp(np.mean(np.log(channel_scale))))
        channel_scale = channel_scale / instrument["kv_scale"]
    nominal_ll, residual_nominal = estimator.labelled_fit(images, alloys, thickness, thickness_sd_mm, nominal)
    fitted_ll, residual_fitted = estimator.labelled_fit(
        images, alloys, thickness, thickness_sd_mm, instrument, channel_kv_scale=channel_scale
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
        channel_kv_scale=None if channel_scale is None else tuple(float(v) for v in channel_scale),
        channel_settings=tuple(channel_settings),
        channel_kv_test=channel_test,
    )
    logger.info(
        "calibrated instrument from %d image(s) in %d evaluations: %s%s; not identifiable: %s",
        calibration.n_images,
        calibration.n_evaluations,
        {k: round(v, 4) for k, v in instrument.items()},
        "" if channel_scale is None else f", channel kV {[round(s.value, 2) for s in channel_settings]}",
        calibration.not_identifiable or "none",
    )
    return calibration


def _setting_problems(
    config: SimulationConfig,
    fitted: Sequence[str],
    held: Mapping[str, float],
    per_channel_kv: bool | str,
    noise_variance: Sequence[float] | None,
) -> list[str]:
    problems = [f"known: {key!r} is not a calibrated setting" for key in held if key not in CALIBRATION_KEYS]
    if not fitted:
        problems.append("every fitted setting is known: nothing left to fit")
    if per_channel_kv and ("kv_scale" not in fitted or len(config.kv) < 2):
        problems.append(
            f"per_channel_kv needs 'kv_scale' among the fitted settings and two channels or more "
            f"(fitted {list(fitted)}, kv={config.kv_label})"
        )
    values = [] if noise_variance is None else [float(v) for v in noise_variance]
    if noise_variance is not None and (len(values) != len(config.kv) or not all(v > 0 for v in values)):
        problems.append(
            f"noise_variance {values}: expected one value > 0 per channel of kv={config.kv_label}"
        )
    return problems


def _channel_kv_test(one_factor_loss: float, per_channel_loss: float, n_channels: int) -> dict[str, Any]:
    """Likelihood-ratio test of one tube-voltage factor on every channel against one per channel
    (``n_channels - 1`` more parameters): whether the channels' voltages differ from the nominal ratios."""
    statistic = max(2.0 * (one_factor_loss - per_channel_loss), 0.0)
    p_value = float(chi2.sf(statistic, n_channels - 1))
    return {
        "statistic": statistic,
        "dof": n_channels - 1,
        "p_value": p_value,
        "alpha": CHANNEL_KV_ALPHA,
        "channels_differ": p_value < CHANNEL_KV_ALPHA,
    }
