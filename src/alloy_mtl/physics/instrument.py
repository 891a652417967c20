"""Instrument units and tolerances: one dataset imaged by many detectors and beams (domain randomisation).

A lab's instrument is never the nominal one: every detector unit has its own fixed pattern (per-pixel gain and
offset residuals, dead pixels), and the beam and detector settings sit somewhere inside the tolerances of their
specification. A model trained on one simulated detector at the nominal settings learns that detector; one
trained on many units, each with settings drawn inside declared tolerances, has to read the alloy.

Vocabulary (shared with the robustness suite's conditions): a tolerance or a condition names an instrument
setting of :class:`~alloy_mtl.physics.simulator.SimulationConfig` by its field (``al_filter_mm``: an absolute
value) or by ``<field>_scale`` (``kv_scale``: a factor on the nominal value; on every channel's tube voltage at
once, as a miscalibrated high-voltage divider would shift them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "SCALE_SUFFIX",
    "RECORDED_SETTINGS",
    "TOLERANCE_KEYS",
    "Tolerances",
    "detector_seed_sequence",
    "draw_settings",
    "instrument_changes",
    "parse_tolerances",
    "recorded_settings",
]

SCALE_SUFFIX = "_scale"

#: Instrument settings a tolerance may randomise, and the smallest value each may take
#: (``>``: strictly greater; ``>=``: at least).
TOLERANCE_KEYS: dict[str, tuple[str, float]] = {
    "kv_scale": (">", 0.0),
    "al_filter_mm": (">=", 0.0),
    "be_window_mm": (">=", 0.0),
    "scintillator_mm": (">", 0.0),
    "scatter_fraction_scale": (">=", 0.0),
    "blur_sigma_px": (">=", 0.0),
    "dose_scale": (">", 0.0),
}

RECORDED_SETTINGS: tuple[str, ...] = ("kv_scale", "al_filter_mm", "scintillator_mm", "scatter_fraction_scale")
"""Settings the generator records per image (metadata ``instrument_<setting>``): those that change the
spectrum a radiograph sees, which the physics-limit estimator's batch fit finds and an instrument-conditioned
model reads. Blur and dose leave the alloy's signal in place and are not recorded."""

Tolerances = tuple[tuple[str, float, float], ...]
"""Declared tolerances as ``((key, low, high), ...)`` sorted by key: hashable, so configs stay frozen."""


def parse_tolerances(tolerances: Mapping[str, Any] | Tolerances | None) -> Tolerances:
    """``{key: [low, high]}`` (or the tuple form) as :data:`Tolerances`, every problem named at once.

    Raises:
        ValueError: unknown keys, ranges that are not two finite numbers with low <= high, or values below a
            setting's minimum (a negative filter, a zero kV scale), each named.
    """
    if not tolerances:
        return ()
    items = (
        [(entry[0], entry[1:]) for entry in tolerances]
        if not isinstance(tolerances, Mapping)
        else list(tolerances.items())
    )
    problems: list[str] = []
    parsed: list[tuple[str, float, float]] = []
    for key, bounds in items:
        if key not in TOLERANCE_KEYS:
            problems.append(f"{key!r} is not an instrument tolerance (allowed: {', '.join(TOLERANCE_KEYS)})")
            continue
        try:
            low, high = (float(v) for v in bounds)
        except (TypeError, ValueError):
            problems.append(f"{key}: expected [low, high], got {bounds!r}")
            continue
        relation, minimum = TOLERANCE_KEYS[key]
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            problems.append(f"{key}: expected finite low <= high, got [{low:g}, {high:g}]")
        elif (relation == ">" and not low > minimum) or (relation == ">=" and not low >= minimum):
            problems.append(f"{key}: low must be {relation} {minimum:g}, got {low:g}")
        else:
            parsed.append((str(key), low, high))
    if problems:
        raise ValueError("tolerances: " + "; ".join(problems))
    return tuple(sorted(parsed))


def draw_settings(tolerances: Tolerances, rng: np.random.Generator) -> dict[str, float]:
    """One instrument's settings, each drawn uniformly inside its declared range."""
    return {key: float(rng.uniform(low, high)) for key, low, high in tolerances}


def instrument_changes(nominal: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``dataclasses.replace`` keyword arguments that put ``settings`` on the config ``nominal``.

    ``<field>_scale`` multiplies the nominal value (every channel of ``kv``); any other key is the field's value.
    """
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        if key.endswith(SCALE_SUFFIX):
            name = key.removesuffix(SCALE_SUFFIX)
            base = getattr(nominal, name)
            changes[name] = tuple(v * value for v in base) if name == "kv" else base * value
        else:
            changes[key] = tuple(value) if key == "kv" else value
    return changes


def detector_seed_sequence(detector_unit: int, unit: int = 0) -> np.random.SeedSequence:
    """Seed sequence of a dataset's ``unit``-th detector; unit 0 is the unit ``detector_unit`` names itself.

    Unit 0 draws exactly the fixed pattern a one-detector dataset of that ``detector_unit`` has; the others are
    seeded by ``(detector_unit, unit)``, so no unit of a pool is the unit another detector seed names.
    """
    return np.random.SeedSequence(detector_unit if unit == 0 else [detector_unit, unit])


def recorded_settings(nominal: Any, settings: Mapping[str, float]) -> dict[str, float]:
    """The :data:`RECORDED_SETTINGS` of an instrument whose drawn ``settings`` change the config ``nominal``:
    a drawn value where there is one, else the nominal (1 for a ``_scale``, the config's value otherwise)."""
    return {
        key: float(settings.get(key, 1.0 if key.endswith(SCALE_SUFFIX) else getattr(nominal, key)))
        for key in RECORDED_SETTINGS
    }
