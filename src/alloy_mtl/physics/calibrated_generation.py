"""``generation.instrument``: simulate with the nominal instrument or with the one calibrated to a lab's.

``kedro run --pipeline calibrate_instrument`` writes the calibrated instrument (``calibrated_instrument``
dataset, tolerance keys: ``kv_scale`` etc. relative to the nominal ``generation`` settings).
``generation.instrument``: ``auto`` (default) uses the calibrated instrument once there is one, else the nominal;
``calibrated`` requires one; ``nominal`` ignores it. With the calibrated instrument every consumer of the
``generation`` parameters (data generation, the evaluation set, the robustness suite, the physics-limit
estimator) gets them resolved by :func:`resolve_generation`: the calibrated values become the nominal ones
(channel kVs, each channel's own where the calibration fitted one per channel, filter, scintillator,
scatter, blur, dose, the exposure-to-exposure level terms the flat fields pinned down and the residual gain
pattern's level the radiographs pinned down, the dark offset the dark frames pinned down), and the declared tolerances keep their width about them
(``*_scale`` ranges are factors and stay; absolute ranges are shifted by the calibrated change, kept above their
minimum). Models trained on the resolved data read the lab's instrument as their nominal one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alloy_mtl.physics.flat_field_noise import LEVEL_FIELDS
from alloy_mtl.physics.instrument import SCALE_SUFFIX, instrument_changes
from alloy_mtl.physics.instrument import TOLERANCE_KEYS as TOLERANCE_MINIMA
from alloy_mtl.physics.instrument_fit import TOLERANCE_KEYS
from alloy_mtl.physics.simulator import SimulationConfig

__all__ = [
    "INSTRUMENT_KEY",
    "INSTRUMENTS",
    "config_instrument",
    "nominal_generation",
    "recorded_config",
    "resolve_generation",
    "simulated_instrument",
    "wants_calibrated",
]

INSTRUMENT_KEY = "instrument"
INSTRUMENTS = ("auto", "nominal", "calibrated")
DEFAULT_INSTRUMENT = "auto"
_MISSING_MESSAGE = (
    "generation.instrument is 'calibrated' but there is no calibrated instrument; run "
    "`kedro run --pipeline calibrate_instrument --params calibration.path=<folder>` first"
)


def nominal_generation(generation: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``generation`` parameters without the ``instrument`` choice (the nominal instrument's config).

    Raises:
        ValueError: ``instrument`` is neither ``nominal`` nor ``calibrated``.
    """
    params = dict(generation or {})
    choice = params.pop(INSTRUMENT_KEY, DEFAULT_INSTRUMENT)
    if choice not in INSTRUMENTS:
        raise ValueError(f"generation.instrument: expected one of {list(INSTRUMENTS)}, got {choice!r}")
    return params


def wants_calibrated(generation: Mapping[str, Any] | None) -> bool:
    """Whether ``generation`` uses a calibrated instrument where there is one (``auto`` or ``calibrated``)."""
    return (generation or {}).get(INSTRUMENT_KEY, DEFAULT_INSTRUMENT) in ("auto", "calibrated")


def resolve_generation(
    generation: Mapping[str, Any] | None, calibrated: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``generation`` with its instrument resolved (see the module docstring).

    Args:
        generation: the ``generation`` parameters, optionally with ``instrument: auto|nominal|calibrated``.
        calibrated: the ``calibrated_instrument`` record (``{"instrument": {key: value}, ...}``), or None.

    Raises:
        ValueError: a bad ``instrument`` choice, ``calibrated`` without a record, or a record without every
            instrument key.
    """
    choice = (generation or {}).get(INSTRUMENT_KEY, DEFAULT_INSTRUMENT)
    params = nominal_generation(generation)
    if choice == "nominal" or (choice == "auto" and not calibrated):
        return params
    if not calibrated or "instrument" not in calibrated:
        raise ValueError(_MISSING_MESSAGE)
    instrument = calibrated["instrument"]
    missing = [key for key in TOLERANCE_KEYS if key not in instrument]
    if missing:
        raise ValueError(f"calibrated instrument: keys {missing} missing; calibrate again")
    nominal = SimulationConfig.from_params(params)
    changes = instrument_changes(nominal, {key: float(instrument[key]) for key in TOLERANCE_KEYS})
    resolved = {**params, **changes, "kv": _channel_kv(changes["kv"], calibrated.get("channel_kv_scale"))}
    resolved |= _flat_field_levels(calibrated.get("flat_fields"))
    darks = calibrated.get("dark_frames") or {}
    if darks.get("identifiable"):
        resolved["offset_sigma"] = float(darks["offset_sigma"])
    pattern = calibrated.get("fixed_pattern") or {}
    if pattern.get("identifiable"):
        resolved["fixed_pattern_gain_sigma"] = float(pattern["gain_sigma"])
    tolerances = {}
    for key, bounds in (params.get("tolerances") or {}).items():
        low, high = (float(v) for v in bounds)
        if key in TOLERANCE_KEYS and not key.endswith(SCALE_SUFFIX):
            shift = float(instrument[key]) - float(getattr(nominal, key))
            relation, minimum = TOLERANCE_MINIMA[key]
            floor = minimum if relation == ">=" else minimum + 1e-3
            low, high = max(low + shift, floor), max(high + shift, floor)
        tolerances[key] = [low, high]
    if tolerances:
        resolved["tolerances"] = tolerances
    return resolved


def _flat_field_levels(flat_fields: Mapping[str, Any] | None) -> dict[str, float]:
    """The exposure-to-exposure level terms the flat fields pinned down (drift, gain, heel wander)."""
    levels = dict((flat_fields or {}).get("levels") or {})
    unknown = sorted(set(levels) - set(LEVEL_FIELDS))
    if unknown or not all(float(v) >= 0 for v in levels.values()):
        raise ValueError(
            f"calibrated instrument: flat_fields.levels {levels} must hold values >= 0 of {list(LEVEL_FIELDS)}; "
            "calibrate again"
        )
    return {key: float(value) for key, value in levels.items()}


def _channel_kv(kv: Sequence[float], channel_kv_scale: Sequence[float] | None) -> list[float]:
    """Each channel's calibrated tube voltage: ``kv`` (the one-factor change applied) times the calibration's
    per-channel factor, where it fitted one per channel."""
    if channel_kv_scale is None:
        return [float(v) for v in kv]
    factors = [float(f) for f in channel_kv_scale]
    if len(factors) != len(kv) or not all(f > 0 for f in factors):
        raise ValueError(
            f"calibrated instrument: channel_kv_scale {factors} does not give one factor > 0 per channel of "
            f"kv={list(kv)}; calibrate again"
        )
    return [float(v) * f for v, f in zip(kv, factors, strict=True)]


def simulated_instrument(generation: Mapping[str, Any] | None) -> dict[str, Any]:
    """The instrument a resolved ``generation`` simulates, as recorded with the models trained on it: channel kVs,
    filtration, CsI, scatter amplitude, blur, dose and the declared tolerances."""
    return config_instrument(SimulationConfig.from_params(nominal_generation(generation)))


def config_instrument(config: SimulationConfig) -> dict[str, Any]:
    """:func:`simulated_instrument` of a simulator config."""
    return {
        "kv": list(config.kv),
        "al_filter_mm": config.al_filter_mm,
        "scintillator_mm": config.scintillator_mm,
        "scatter_fraction": config.scatter_fraction,
        "blur_sigma_px": config.blur_sigma_px,
        "dose": config.dose,
        "tolerances": {key: [low, high] for key, low, high in config.tolerances},
    }


RECORDED_FIELDS = ("kv", "al_filter_mm", "scintillator_mm", "scatter_fraction", "blur_sigma_px", "dose")
"""The instrument fields :func:`simulated_instrument` records (besides the tolerances)."""


def recorded_config(
    generation: Mapping[str, Any] | None, recorded: Mapping[str, Any] | None, image_size: int | None = None
) -> SimulationConfig:
    """The simulator config of the instrument a model recorded (:func:`simulated_instrument`), the rest (geometry,
    noise, detector) from ``generation``; one unit, no tolerances. ``recorded`` None: ``generation``'s own
    instrument (a model logged before instruments were recorded). ``image_size``: the model's input size.

    Raises:
        ValueError: ``recorded`` lacks a field, or its values are not a valid instrument.
    """
    params = nominal_generation(generation)
    if recorded is not None:
        missing = [key for key in RECORDED_FIELDS if key not in recorded]
        if missing:
            raise ValueError(f"the model's recorded instrument lacks {missing}")
        params |= {key: recorded[key] for key in RECORDED_FIELDS}
        params["kv"] = [float(v) for v in recorded["kv"]]
    params |= {"instruments": 1, "tolerances": {}, "randomise": None}
    if image_size is not None:
        params["image_size"] = int(image_size)
    return SimulationConfig.from_params(params)
