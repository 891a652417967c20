"""The instrument fit's coordinates and uncertainties: each free setting (or each channel's tube voltage) mapped to
[0, 1] over its search range, Powell's method in them, and Laplace intervals from the Hessian there
(:func:`alloy_mtl.physics.instrument_calibration.calibrate_instrument` drives them)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from alloy_mtl.physics.flat_field_noise import dose_scale_for
from alloy_mtl.physics.instrument_fit import TOLERANCE_KEYS, instrument_config
from alloy_mtl.physics.simulator import SimulationConfig

__all__ = ["CALIBRATION_KEYS", "CalibratedSetting", "FitSpace", "laplace_covariance", "minimise"]

CALIBRATION_KEYS: tuple[str, ...] = TOLERANCE_KEYS
"""Every instrument key of the estimator's tolerances; ``fitted`` chooses among them."""
GRID_KEYS = ("kv_scale", "al_filter_mm")
"""Settings the coarse grid spans (the two that trade off most); the others start at their start values."""
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
        given: the value was measured otherwise and held (``calibrate_instrument(known=...)``: flat fields).
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
    given: bool = False


def minimise(loss: Any, start: Sequence[float], fallback: np.ndarray) -> np.ndarray:
    """Powell's method in [0, 1]^k from ``start``; ``fallback`` where it finds nothing better."""
    result = minimize(
        loss,
        np.asarray(start, dtype=float),
        method="Powell",
        bounds=[(0.0, 1.0)] * len(fallback),
        options={"xtol": 1e-3, "ftol": 1e-7},
    )
    return np.clip(result.x, 0.0, 1.0) if result.fun < loss(fallback) else np.asarray(fallback, dtype=float)


def _setting(  # noqa: PLR0913 (one row of the report)
    key: str,
    value: float,
    nominal: float,
    sd: float,
    search_range: tuple[float, float],
    *,
    u: float,
    identifiable_share: float,
) -> CalibratedSetting:
    """A fitted setting, its Laplace interval and verdict (``sd`` NaN or infinite: no positive curvature)."""
    low, high = search_range
    identifiable = bool(math.isfinite(sd) and 2 * _Z95 * sd <= identifiable_share * (high - low))
    return CalibratedSetting(
        key,
        value,
        nominal,
        value - _Z95 * sd if identifiable else math.nan,
        value + _Z95 * sd if identifiable else math.nan,
        sd if identifiable else math.nan,
        True,
        identifiable,
        bool(u < 1e-3 or u > 1 - 1e-3),
        (low, high),
    )


@dataclass(frozen=True)
class FitSpace:
    """The fit's coordinates: each free setting (or, per channel, each channel's tube-voltage factor) mapped
    to [0, 1] over its search range."""

    names: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]
    start: dict[str, float]
    nominal: dict[str, float]
    config: SimulationConfig
    per_channel: bool
    held: tuple[str, ...]
    noise_variance: tuple[float, ...] | None

    @property
    def kv(self) -> tuple[float, ...]:
        return tuple(self.config.kv)

    @staticmethod
    def build(
        config: SimulationConfig,
        fitted: Sequence[str],
        ranges: dict[str, tuple[float, float]],
        nominal: dict[str, float],
        held: dict[str, float],
        *,
        per_channel: bool,
        noise_variance: tuple[float, ...] | None = None,
    ) -> FitSpace:
        free = [key for key in CALIBRATION_KEYS if key in fitted]
        start = {
            key: min(max(nominal[key], ranges[key][0]), ranges[key][1]) if key in free else nominal[key]
            for key in nominal
        } | held
        names = list(free)
        ranges = dict(ranges)
        if per_channel:
            channels = [_channel_key(volts) for volts in config.kv]
            names[names.index("kv_scale") : names.index("kv_scale") + 1] = channels
            ranges |= dict.fromkeys(channels, ranges["kv_scale"])
            start |= dict.fromkeys(channels, start["kv_scale"])
        return FitSpace(
            tuple(names), ranges, start, nominal, config, per_channel, tuple(held), noise_variance
        )

    @property
    def channels(self) -> tuple[str, ...]:
        """The per-channel tube-voltage coordinates (none unless fitted per channel)."""
        return tuple(_channel_key(volts) for volts in self.kv) if self.per_channel else ()

    def values(self, u: Sequence[float]) -> dict[str, float]:
        point = dict(self.start)
        for name, value in zip(self.names, u, strict=True):
            low, high = self.ranges[name]
            point[name] = low + float(np.clip(value, 0.0, 1.0)) * (high - low)
        return point

    def point(self, u: Sequence[float]) -> tuple[dict[str, float], np.ndarray | None]:
        """The instrument (tolerance keys) at ``u`` and, per channel, the tube-voltage factors (or None)."""
        values = self.values(u)
        instrument = {key: values[key] for key in CALIBRATION_KEYS}
        channel_scale = None
        if self.per_channel:
            instrument["kv_scale"] = 1.0
            channel_scale = np.array([values[name] for name in self.channels])
        if self.noise_variance is not None:
            instrument["dose_scale"] = 1.0
            imaged = instrument_config(self.config, instrument, channel_scale)
            instrument["dose_scale"] = dose_scale_for(imaged, self.noise_variance)
        return instrument, channel_scale

    def from_one_factor(self, one_factor: FitSpace, u: np.ndarray) -> np.ndarray:
        """Coordinates in this per-channel space of the point ``u`` of the ``one_factor`` space (every channel at
        the one factor's coordinate)."""
        values = dict(zip(one_factor.names, u, strict=True))
        return np.array([values["kv_scale"] if n in self.channels else values[n] for n in self.names])

    def start_coordinates(self) -> np.ndarray:
        return np.array(
            [
                (self.start[n] - self.ranges[n][0]) / (self.ranges[n][1] - self.ranges[n][0])
                for n in self.names
            ]
        )

    def grid(self, levels: int) -> list[tuple[float, ...]]:
        """Coarse grid over tube voltage (every channel alike) and filtration, the rest at the start."""
        u_start = self.start_coordinates()
        grid_names = [n for n in self.names if n in GRID_KEYS]
        kv_channels = [i for i, n in enumerate(self.names) if n in self.channels]
        if kv_channels:
            grid_names.append("kv")
        axes = [np.linspace(0.0, 1.0, levels)] * len(grid_names)
        points = []
        for values in itertools.product(*axes):
            u = u_start.copy()
            for name, value in zip(grid_names, values, strict=True):
                u[kv_channels if name == "kv" else self.names.index(name)] = value
            points.append(tuple(u))
        return points

    def settings(
        self, u: np.ndarray, covariance: np.ndarray, identifiable_share: float
    ) -> tuple[list[CalibratedSetting], list[CalibratedSetting]]:
        """Every calibration key's setting and, per channel, its tube voltage (kV), with Laplace intervals."""
        values = self.values(u)
        instrument, _ = self.point(u)
        sd_u = np.sqrt(np.where(np.diag(covariance) > 0, np.diag(covariance), np.nan))
        width = {n: self.ranges[n][1] - self.ranges[n][0] for n in self.names}
        settings, channels = [], []
        for key in CALIBRATION_KEYS:
            if key in self.names:
                i = self.names.index(key)
                settings.append(
                    _setting(
                        key,
                        values[key],
                        self.nominal[key],
                        sd_u[i] * width[key],
                        self.ranges[key],
                        u=u[i],
                        identifiable_share=identifiable_share,
                    )
                )
            elif key == "kv_scale" and self.per_channel:
                settings.append(self._overall_kv(u, covariance, identifiable_share))
            else:
                low, high = self.ranges[key]
                settings.append(
                    CalibratedSetting(
                        key,
                        instrument[key],
                        self.nominal[key],
                        *[math.nan] * 3,
                        False,
                        True,
                        False,
                        (low, high),
                        given=key in self.held,
                    )
                )
        for volts in self.kv if self.per_channel else ():
            name = _channel_key(volts)
            i = self.names.index(name)
            low, high = self.ranges[name]
            channels.append(
                _setting(
                    name,
                    values[name] * volts,
                    volts,
                    sd_u[i] * width[name] * volts,
                    (low * volts, high * volts),
                    u=u[i],
                    identifiable_share=identifiable_share,
                )
            )
        return settings, channels

    def _overall_kv(
        self, u: np.ndarray, covariance: np.ndarray, identifiable_share: float
    ) -> CalibratedSetting:
        """``kv_scale`` as the channels' geometric mean, its sd by the delta method."""
        values = self.values(u)
        index = [i for i, n in enumerate(self.names) if n in self.channels]
        scales = np.array([values[self.names[i]] for i in index])
        overall = float(np.exp(np.mean(np.log(scales))))
        width = self.ranges["kv_scale"][1] - self.ranges["kv_scale"][0]
        gradient = overall * width / (len(index) * scales)
        block = covariance[np.ix_(index, index)]
        variance = float(gradient @ np.where(np.isfinite(block), block, np.inf) @ gradient)
        sd = math.sqrt(variance) if np.isfinite(variance) and variance > 0 else math.nan
        u_overall = (overall - self.ranges["kv_scale"][0]) / width
        return _setting(
            "kv_scale",
            overall,
            self.nominal["kv_scale"],
            sd,
            self.ranges["kv_scale"],
            u=u_overall,
            identifiable_share=identifiable_share,
        )


def _channel_key(volts: float) -> str:
    """The per-channel tube-voltage setting of the channel taken at ``volts`` nominal (``kv_40kv``)."""
    return f"kv_{volts:g}kv"


def laplace_covariance(loss: Any, u: np.ndarray) -> np.ndarray:
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
