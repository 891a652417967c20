"""Instrument tolerances of the physics-limit estimator: their validation and the batch fit of the instrument.

A tolerance range is an inclusive (low, high) interval per instrument key, in the vocabulary of
``alloy_mtl.evaluation.params.InstrumentOverrides``: ``kv_scale`` (one factor on every channel's kV),
``al_filter_mm`` and ``scintillator_mm`` (absolute mm), ``scatter_fraction_scale`` (factor on the nominal
scatter amplitude), ``blur_sigma_px`` (absolute px) and ``dose_scale`` (factor on the nominal dose).

The fit (``fit_instrument``) maximises a batch objective (the estimator's summed class-marginal
log-likelihood) over the box of the fitted keys by a compass (pattern) search in range-normalised
coordinates: from the start, try +-step along each key, move to the best of them if it improves, else halve
the step. It needs no gradients, which the Gauss-Newton fit inside the objective does not give cheaply.

The estimator's joint mode assumes the batch shares one instrument (a robustness condition, one lab session)
and maximises sum_i log sum_a p(a) L_i(a | instrument) over an evenly spaced subsample, labels unused. Kv,
filter and scintillator all harden the spectrum and trade off against each other (and scatter), so the fit
may land elsewhere on that ridge than the true instrument, at a nearly equal likelihood and ceiling. Blur and
dose are held at nominal (clipped into their ranges). A batch that mixes instruments should be split first.
Per-image marginalisation over a 3-level grid of the fitted keys (81 fits of every image) lets each alloy
take the beam that suits it, so alloys a harder beam turns into one another blur together (macro AP 0.57 on
200 nominal suite images, joint fit 0.99).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from alloy_mtl.physics.instrument import RECORDED_SETTINGS
from alloy_mtl.physics.simulator import SimulationConfig

__all__ = [
    "FITTED_KEYS",
    "TOLERANCE_KEYS",
    "InstrumentFit",
    "fit_instrument",
    "instrument_grid",
    "instrument_config",
    "nominal_instrument",
    "parse_tolerances",
    "start_instrument",
]

TOLERANCE_KEYS: tuple[str, ...] = (
    "kv_scale",
    "al_filter_mm",
    "scintillator_mm",
    "scatter_fraction_scale",
    "blur_sigma_px",
    "dose_scale",
)
FITTED_KEYS: tuple[str, ...] = RECORDED_SETTINGS
"""Keys the batch fit searches. Blur and dose are held at their nominal value (clipped into the range): on the
default suite, the estimator told the true blur (1.0 px) or dose (x0.5) scores as the nominal-told one does."""

_POSITIVE = ("kv_scale", "scintillator_mm", "dose_scale")
_INITIAL_STEP = 0.5
_MIN_STEP = 1.0 / 16.0


def parse_tolerances(tolerances: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]]:
    """Validated tolerance ranges ``{key: (low, high)}`` (empty for None).

    Raises:
        ValueError: naming the key, for an unknown key, a range that is not two finite numbers, low > high,
            or a value the instrument cannot take (kV, scintillator, dose factors <= 0; negative values).
    """
    if tolerances is None:
        return {}
    parsed: dict[str, tuple[float, float]] = {}
    for key, bounds in tolerances.items():
        if key not in TOLERANCE_KEYS:
            raise ValueError(f"tolerances: unknown key {key!r}; expected keys from {TOLERANCE_KEYS}")
        try:
            low, high = (float(v) for v in bounds)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"tolerances[{key!r}] must be a (low, high) pair of numbers, got {bounds!r}"
            ) from err
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"tolerances[{key!r}] must be finite, got {bounds!r}")
        if low > high:
            raise ValueError(f"tolerances[{key!r}]: low {low} > high {high}")
        if low < 0 or (key in _POSITIVE and low <= 0):
            bound = "> 0" if key in _POSITIVE else ">= 0"
            raise ValueError(f"tolerances[{key!r}] must be {bound}, got low {low}")
        parsed[key] = (low, high)
    return parsed


def nominal_instrument(config: SimulationConfig) -> dict[str, float]:
    """The nominal instrument of ``config`` in tolerance keys (factors 1, absolute values as configured)."""
    return {
        "kv_scale": 1.0,
        "al_filter_mm": config.al_filter_mm,
        "scintillator_mm": config.scintillator_mm,
        "scatter_fraction_scale": 1.0,
        "blur_sigma_px": config.blur_sigma_px,
        "dose_scale": 1.0,
    }


def start_instrument(
    config: SimulationConfig, tolerances: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """The nominal instrument with every key that has a range clipped into it."""
    instrument = nominal_instrument(config)
    for key, (low, high) in tolerances.items():
        instrument[key] = min(max(instrument[key], low), high)
    return instrument


def instrument_config(
    config: SimulationConfig,
    instrument: Mapping[str, float],
    channel_kv_scale: Sequence[float] | None = None,
) -> SimulationConfig:
    """``config`` imaged by ``instrument`` (tolerance keys; the reference kV of the absorption label stays);
    ``channel_kv_scale``: a further factor on each channel's tube voltage (one per channel of ``config.kv``).

    Raises:
        ValueError: ``channel_kv_scale`` does not give one positive factor per channel.
    """
    factors = np.ones(len(config.kv)) if channel_kv_scale is None else np.asarray(channel_kv_scale, float)
    if factors.shape != (len(config.kv),) or not bool(np.all(factors > 0)):
        raise ValueError(
            f"channel_kv_scale: expected {len(config.kv)} factors > 0 (one per channel of kv={list(config.kv)}), "
            f"got {list(np.atleast_1d(factors))}"
        )
    return dataclasses.replace(
        config,
        kv=tuple(float(k * instrument["kv_scale"] * f) for k, f in zip(config.kv, factors, strict=True)),
        al_filter_mm=instrument["al_filter_mm"],
        scintillator_mm=instrument["scintillator_mm"],
        scatter_fraction=config.scatter_fraction * instrument["scatter_fraction_scale"],
        blur_sigma_px=instrument["blur_sigma_px"],
        dose=config.dose * instrument["dose_scale"],
    )


@dataclass(frozen=True)
class InstrumentFit:
    """Result of :func:`fit_instrument`.

    Attributes:
        instrument: the instrument (all tolerance keys) with the highest objective found.
        objective: its objective value.
        n_evaluations: objective evaluations the search made.
    """

    instrument: dict[str, float]
    objective: float
    n_evaluations: int


def fit_instrument(
    objective: Callable[[dict[str, float]], float],
    tolerances: Mapping[str, tuple[float, float]],
    start: Mapping[str, float],
) -> InstrumentFit:
    """Maximise ``objective`` over the ranges of the fitted keys, by compass search from ``start``.

    Args:
        objective: instrument (all tolerance keys) -> value to maximise.
        tolerances: validated ranges (see :func:`parse_tolerances`); keys outside ``FITTED_KEYS`` or with an
            empty range (low == high) stay at ``start``.
        start: the starting instrument, inside the ranges.
    """
    free = [k for k in FITTED_KEYS if k in tolerances and tolerances[k][1] > tolerances[k][0]]
    cache: dict[tuple[float, ...], float] = {}

    def instrument_at(u: tuple[float, ...]) -> dict[str, float]:
        point = dict(start)
        for key, value in zip(free, u, strict=True):
            low, high = tolerances[key]
            point[key] = low + value * (high - low)
        return point

    def value_at(u: tuple[float, ...]) -> float:
        key = tuple(round(v, 9) for v in u)
        if key not in cache:
            cache[key] = float(objective(instrument_at(key)))
        return cache[key]

    u = tuple((start[k] - tolerances[k][0]) / (tolerances[k][1] - tolerances[k][0]) for k in free)
    best = value_at(u)
    step = _INITIAL_STEP
    while free and step >= _MIN_STEP:
        candidates = []
        for i in range(len(free)):
            for sign in (1.0, -1.0):
                moved = min(max(u[i] + sign * step, 0.0), 1.0)
                if moved != u[i]:
                    candidates.append((*u[:i], moved, *u[i + 1 :]))
        top_value, top = max(((value_at(c), c) for c in candidates), default=(-math.inf, u))
        if top_value > best:
            best, u = top_value, top
        else:
            step /= 2.0
    return InstrumentFit(instrument_at(u), best, len(cache))


def instrument_grid(
    tolerances: Mapping[str, tuple[float, float]], start: Mapping[str, float], levels: int = 3
) -> list[dict[str, float]]:
    """Instruments on a ``levels``-point grid over the range of every fitted key (others at ``start``)."""
    axes = [
        [low + (high - low) * k / (levels - 1) for k in range(levels)] if high > low else [low]
        for low, high in (tolerances[key] for key in FITTED_KEYS if key in tolerances)
    ]
    keys = [key for key in FITTED_KEYS if key in tolerances]
    return [dict(start, **dict(zip(keys, values, strict=True))) for values in itertools.product(*axes)]
